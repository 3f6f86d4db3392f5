"""SlurmJobTrigger's state is its constructor arguments: serialize() must round-trip exactly."""
from __future__ import annotations

import importlib

import pytest

from operators.slurm.trigger import SlurmJobTrigger


def test_serialize_round_trip():
    trigger = SlurmJobTrigger(ssh_conn_id="slurm_local", job_id="123", poll_interval=3, accounting="jobcomp",
                              log_path="/w/logs/x-123.log", log_offset=17, stream_logs=False,
                              max_disconnected_s=60)
    path, kwargs = trigger.serialize()
    assert path == "operators.slurm.trigger.SlurmJobTrigger"
    assert kwargs == {"ssh_conn_id": "slurm_local", "job_id": "123", "poll_interval": 3.0, "accounting": "jobcomp",
                      "log_path": "/w/logs/x-123.log", "log_offset": 17, "stream_logs": False,
                      "max_disconnected_s": 60.0}
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_trigger_rejects_a_job_id_that_is_not_one():
    with pytest.raises(ValueError):
        SlurmJobTrigger(ssh_conn_id="c", job_id="1;reboot")


def test_operator_rejects_unknown_retry_outcome():
    from operators.slurm.operator import SlurmJobOperator

    with pytest.raises(ValueError, match="NODEFAIL"):
        SlurmJobOperator(task_id="t", job={"name": "x", "command": "true"}, retry_on=("NODEFAIL",))
