"""Tracking-side faults: the S3 server and the MLflow server die while a task uses them.

The product code under test is operators/tracking (``upload_verified``, ``log_metrics``) with
real boto3 and MLflow clients against the stack's s3rver and MLflow server. The end state is
re-read from the servers after the fault: the object's SHA-256 from a fresh S3 client, the
metric's full history from MLflow.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from operators.tracking import mlflow_runs
from operators.tracking.s3 import s3_client, sha256_file, stored_sha256, upload_verified
from tests.faults.driving import LogWatch, unique

SECTION = "Faults"


class CountingClient:
    """The real boto3 client, with the start and end of each ``upload_file`` call noted, so the
    test can prove the server died while an upload was in flight, and with an event set when a
    request of the upload fails (the client has met the outage)."""

    def __init__(self, client):
        self._client = client
        self.calls: list[list[float]] = []
        self.started = threading.Event()
        self.outage_met = threading.Event()
        # botocore announces each attempt's outcome on "needs-retry"; this handler only watches
        # (returns None), the client's own retry handler still decides.
        client.meta.events.register("needs-retry.s3", self._attempt_done)

    def _attempt_done(self, caught_exception=None, **_):
        if caught_exception is not None:
            self.outage_met.set()

    def upload_file(self, *args, **kwargs):
        self.calls.append([time.monotonic(), 0.0])
        self.started.set()
        try:
            return self._client.upload_file(*args, **kwargs)
        finally:
            self.calls[-1][1] = time.monotonic()

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.reliability(section=SECTION, case="the S3 server down during an upload",
                         promise="the upload is retried and succeeds once S3 is back; the stored object's "
                                 "SHA-256, re-read from S3, equals the local file's")
def test_s3_down_during_upload(faults, measured, tmp_path):
    path = tmp_path / "predictions.bin"
    path.write_bytes(os.urandom(40 << 20))  # multipart (8 MiB parts): the kill lands mid-transfer
    client = CountingClient(s3_client("s3_local"))
    key = f"faults/{unique('upload')}/predictions.bin"
    outcome: dict = {}

    def upload():
        t0 = time.monotonic()
        try:
            outcome["result"] = upload_verified(client, path, "skillflow", key)
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - t0

    worker = threading.Thread(target=upload)
    worker.start()
    assert client.started.wait(30)
    try:
        killed_at = time.monotonic()
        faults.kill("s3")
        # S3 stays down until the upload has met the outage (a request of it failed).
        met = client.outage_met.wait(120)
        down_s = time.monotonic() - killed_at
    finally:
        restart_s = faults.start("s3")
    assert met, "no request of the upload failed in 120 s with S3 down"
    worker.join(120)
    assert not worker.is_alive(), "upload_verified still running 120 s after S3 came back"
    assert "error" not in outcome, outcome.get("error")
    first_start, first_end = client.calls[0]
    assert first_start <= killed_at and (first_end == 0.0 or first_end > killed_at), \
        "the first upload finished before S3 was killed: the fault did not hit an upload"
    local = sha256_file(path)
    fresh = s3_client("s3_local")
    assert outcome["result"]["sha256"] == local
    assert stored_sha256(fresh, "skillflow", key) == local
    head = fresh.head_object(Bucket="skillflow", Key=key)
    assert head["ContentLength"] == path.stat().st_size and head["Metadata"]["sha256"] == local
    measured(f"S3 killed mid-upload, back after {down_s + restart_s:.1f} s; {len(client.calls)} upload attempt(s), "
             f"verified after {outcome['seconds']:.1f} s; 40 MiB object's SHA-256 re-read from S3 matches")


@pytest.mark.reliability(section=SECTION, case="the MLflow server down",
                         promise="with retries off the call fails naming the server; with MLflow's default "
                                 "retries it waits for the server; a retried task logs no metric twice")
def test_mlflow_down(faults, measured, monkeypatch):
    mlc = mlflow_runs.client("mlflow_local")
    run_id = mlflow_runs.run_for_dag_run(mlc, "skillflow-faults", "faults", unique("mlflow-down"))
    uri = mlflow_runs.tracking_uri("mlflow_local")
    outcome: dict = {}
    try:
        faults.kill("mlflow")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        t0 = time.monotonic()
        with pytest.raises(Exception) as info:
            mlflow_runs.log_metrics(mlc, run_id, {"gsm8k.greedy.correct_answer": 0.25})
        fail_s = time.monotonic() - t0
        assert uri.split("//")[1] in str(info.value), f"the error does not name the server {uri}: {info.value}"
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")

        def log():
            t = time.monotonic()
            try:
                mlflow_runs.log_metrics(mlc, run_id, {"gsm8k.greedy.correct_answer": 0.25})
                outcome["seconds"] = time.monotonic() - t
            except Exception as exc:
                outcome["error"] = exc

        # urllib3 logs each retry of a request (what MLflow's client does, through requests, when
        # its server refuses connections).
        retried = LogWatch("urllib3.connectionpool", "Retrying")
        worker = threading.Thread(target=log)
        with retried:
            worker.start()
            # MLflow stays down until the call has met the outage: its HTTP layer logged a retry.
            met = retried.event.wait(120)
    finally:
        restart_s = faults.start("mlflow")
    assert met, "the MLflow call made no retry in 120 s with the server down"
    worker.join(180)
    assert not worker.is_alive() and "error" not in outcome, outcome
    # Airflow retries the task: it logs the same metric again.
    mlflow_runs.log_metrics(mlc, run_id, {"gsm8k.greedy.correct_answer": 0.25})
    history = mlc.get_metric_history(run_id, "gsm8k.greedy.correct_answer")
    assert [m.value for m in history] == [0.25], history
    measured(f"retries off: failed in {fail_s:.1f} s naming {uri}; default retries: logged "
             f"{outcome['seconds']:.1f} s after the call (MLflow back in {restart_s:.1f} s); "
             f"metric history length {len(history)} after a retried log")
