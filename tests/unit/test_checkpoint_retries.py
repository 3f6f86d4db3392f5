"""The checkpoint upload's retries (tasks/storage/checkpoints.py): a failed try is logged and tried
again after a wait; the last failure becomes an error naming the object. The S3 server killed for
real mid-upload is tests/faults/test_tracking_faults.py; here the action is a plain function, so
the count of tries and the log can be checked exactly."""
from __future__ import annotations

import pytest

from tasks.storage.checkpoints import CheckpointStoreError, _with_retries


def test_a_failed_try_is_logged_and_tried_again():
    calls, log = [], []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("connection refused")
        return "stored"

    assert _with_retries("upload x", flaky, retries=3, log=log.append) == "stored"
    assert len(calls) == 2
    assert log == ["upload x: attempt 1/3 failed (connection refused); retrying in 1s"]


def test_the_last_failure_names_the_object_and_the_tries():
    calls = []

    def down():
        calls.append(1)
        raise ConnectionError("connection refused")

    with pytest.raises(CheckpointStoreError, match=r"^HEAD s3://b/k failed after 2 attempts: connection refused$"):
        _with_retries("HEAD s3://b/k", down, retries=2, log=lambda _: None)
    assert len(calls) == 2
