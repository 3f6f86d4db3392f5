"""Runs through the real Airflow scheduler, triggerer and REST API of the local stack."""
from __future__ import annotations

import subprocess
import time
import urllib.parse

import pytest

from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration


def test_demo_dag_end_to_end_logs_to_mlflow_and_s3(stack):
    from tasks.demo import s3_objects_under

    api = client_for(stack)
    api.wait_for_dag("skillflow_demo")
    run = api.trigger("skillflow_demo", {"n": 12345, "experiment": "selftest-demo"})
    final = api.wait_for_run("skillflow_demo", run["dag_run_id"], timeout=300)
    assert final["state"] == "success"
    out = api.xcom("skillflow_demo", run["dag_run_id"], "record")
    assert out["result"]["n"] == 12345
    objects = dict(s3_objects_under(out["artifact_uri"], stack.env))
    assert any(k.endswith("demo/result.json") for k in objects), objects

    import mlflow
    from mlflow.tracking import MlflowClient

    mlc = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    data = mlc.get_run(out["mlflow_run_id"]).data
    assert data.params["n"] == "12345"
    assert data.metrics["basel_abs_error"] == pytest.approx(1 / 12345, rel=1e-3)
    assert data.tags["airflow.dag_run_id"] == run["dag_run_id"]
    del mlflow


def _squeue_has(job_id: str, env) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING", "-o", "%i"],
                         capture_output=True, text=True, env=env)
    return job_id in out.stdout.split()


def test_task_killed_while_deferred_cancels_the_job(stack):
    api = client_for(stack)
    api.wait_for_dag("selftest_slurm")
    run = api.trigger("selftest_slurm", {"command": "sleep 600", "name": "selftest-kill"})
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tis = api.task_instances("selftest_slurm", run_id)
        if tis and tis[0]["state"] == "deferred":
            break
        time.sleep(1)
    else:
        pytest.fail(f"task never deferred: {tis}")
    job_id = str(api.xcom("selftest_slurm", run_id, "job", key="slurm_job_id"))
    assert _squeue_has(job_id, stack.env)
    # Airflow calls a trigger's on_kill only once the triggerer runs it; the triggerer picks up
    # new triggers on its heartbeat (5 s). A kill before that leaves the job running: see the
    # limitation noted in docs/reliability.md.
    time.sleep(12)
    path = (f"/api/v2/dags/selftest_slurm/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/job")
    api._request("PATCH", path, {"new_state": "failed"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _squeue_has(job_id, stack.env):
        time.sleep(1)
    assert not _squeue_has(job_id, stack.env), f"job {job_id} still queued after the task was killed"
