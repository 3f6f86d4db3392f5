"""Runs through the real Airflow scheduler, triggerer and REST API of the local stack."""
from __future__ import annotations

import subprocess
import urllib.parse

import pytest

from tests.integration.airflow_api import client_for
from tests.polling import wait_until

pytestmark = pytest.mark.integration


def test_demo_dag_end_to_end_logs_to_mlflow_and_s3(stack):
    from devtools.demo import s3_objects_under

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


def test_the_execution_api_runs_in_a_process_of_its_own(stack):
    """On SQLite the workers' execution API must not share the core API's event loop (why:
    devtools/stack/services.py, _execution_api_start): the core server does not serve it, the
    second one does, and the workers are sent there; the run above succeeding went through it."""
    import urllib.error
    import urllib.request

    if stack.layout.topology() != "local":
        pytest.skip("the team topology (PostgreSQL) keeps one api-server, as docker/compose.yaml does")
    ports = stack.layout.ports

    def serves_execution_api(port: int) -> bool:
        # The core server answers any unknown path with its UI page (200, HTML); only the
        # execution API stamps its version on the answer.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/execution/health/ping", timeout=10) as reply:
                return reply.headers.get("airflow-api-version") is not None
        except urllib.error.HTTPError:
            return False

    assert (serves_execution_api(ports.airflow), serves_execution_api(ports.airflow_execution)) == (False, True)
    assert stack.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == \
        f"http://127.0.0.1:{ports.airflow_execution}/execution/"


def test_a_misspelt_param_fails_the_run_before_any_job(stack):
    """The form is declared once (tasks/forms.py): a conf key it lacks fails the first task at
    once, no retry, no Slurm job, and the task log names the key and the valid ones."""
    api = client_for(stack)
    api.wait_for_dag("skillflow_demo")
    run_id = api.trigger("skillflow_demo", {"nn": 5, "experiment": "selftest-typo"})["dag_run_id"]
    final = api.wait_for_run("skillflow_demo", run_id, timeout=300)
    assert final["state"] == "failed"
    ti = _ti(api, "skillflow_demo", run_id, "slurm_job")
    assert ti["state"] == "failed" and ti["try_number"] == 1, ti
    with pytest.raises(Exception):  # pushed only once a job is submitted
        api.xcom("skillflow_demo", run_id, "slurm_job", key="slurm_job_id")
    logs = list((stack.layout.airflow_home / "logs" / "dag_id=skillflow_demo" / f"run_id={run_id}").rglob("*.log"))
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "unknown param(s) 'nn'" in text and "valid: n, experiment, profile" in text, text[-3000:]


def _squeue_has(job_id: str, env) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING", "-o", "%i"],
                         capture_output=True, text=True, env=env)
    return job_id in out.stdout.split()


def _ti(api, dag_id: str, run_id: str, task_id: str = "job") -> dict:
    return api._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}")


def _deferred_job(api, stack, dag_id: str, command: str, name: str) -> tuple[str, str]:
    """Trigger a one-job selftest DAG; (run id, Slurm job id) once its task is deferred."""
    api.wait_for_dag(dag_id)
    run_id = api.trigger(dag_id, {"command": command, "name": name})["dag_run_id"]
    wait_until(lambda: _ti(api, dag_id, run_id)["state"] == "deferred", 120, "the task to defer")
    job_id = str(api.xcom(dag_id, run_id, "job", key="slurm_job_id"))
    assert _squeue_has(job_id, stack.env)
    return run_id, job_id


def _mark_failed(api, dag_id: str, run_id: str) -> None:
    api._request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/job",
                 {"new_state": "failed"})


def test_task_killed_while_deferred_cancels_the_job(stack):
    """Killed while its trigger runs: the triggerer calls the trigger's on_kill."""
    api = client_for(stack)
    run_id, job_id = _deferred_job(api, stack, "selftest_slurm", "sleep 600", "selftest-kill")
    # The event that matters: a triggerer has taken the trigger (before that, see the next test).
    wait_until(lambda: (_ti(api, "selftest_slurm", run_id).get("trigger") or {}).get("triggerer_id"), 60,
               "a triggerer to pick the trigger up")
    _mark_failed(api, "selftest_slurm", run_id)
    wait_until(lambda: not _squeue_has(job_id, stack.env), 90, f"job {job_id} to leave the queue after the kill")


def test_task_killed_before_the_triggerer_picks_it_up_cancels_the_job(stack):
    """The window right after a deferral: no triggerer runs the trigger yet, so no on_kill can run.
    The triggerer is held (SIGSTOP, as a triggerer busy or slow to heartbeat is) for the whole
    window, so the kill lands in it for certain; the API server's listener
    (operators/slurm/listener.py) must cancel the job."""
    import os
    import signal

    from devtools.stack import process

    api = client_for(stack)
    api.wait_for_dag("selftest_slurm")
    triggerer = process.pid_alive(stack.layout.pidfile("airflow-triggerer"))
    assert triggerer, "the stack's triggerer is not running"
    os.kill(triggerer, signal.SIGSTOP)
    try:
        run_id, job_id = _deferred_job(api, stack, "selftest_slurm", "sleep 600", "selftest-kill-early")
        assert (_ti(api, "selftest_slurm", run_id).get("trigger") or {}).get("triggerer_id") is None
        _mark_failed(api, "selftest_slurm", run_id)
        wait_until(lambda: not _squeue_has(job_id, stack.env), 60,
                   f"job {job_id} to leave the queue while the triggerer is held")
    finally:
        os.kill(triggerer, signal.SIGCONT)


def test_deferral_that_passes_wait_timeout_cancels_its_job(stack):
    """The scheduler ends a deferral past its timeout (the triggerer cancels the trigger without
    on_kill); the worker resumes the task with the timeout, and the task must cancel the job."""
    api = client_for(stack)
    run_id, job_id = _deferred_job(api, stack, "selftest_slurm_timeout", "sleep 600", "selftest-timeout")
    final = api.wait_for_run("selftest_slurm_timeout", run_id, timeout=180)
    assert final["state"] == "failed"
    ti = _ti(api, "selftest_slurm_timeout", run_id)
    assert ti["state"] == "failed" and ti["try_number"] == 1
    wait_until(lambda: not _squeue_has(job_id, stack.env), 30, f"job {job_id} to be cancelled after the timeout")
    from operators.slurm.hook import SlurmHook

    states = SlurmHook("slurm_local", accounting="jobcomp").states([job_id])
    assert [s.state for s in states] == ["CANCELLED"]


def test_non_deferrable_task_waits_on_the_worker(stack):
    """deferrable=False: the worker polls (``_wait_inline``) to the job's end, success and failure."""
    api = client_for(stack)
    api.wait_for_dag("selftest_slurm_inline")
    ok = api.trigger("selftest_slurm_inline", {"command": "sleep 2; echo inline-ok", "name": "selftest-inline"})
    bad = api.trigger("selftest_slurm_inline", {"command": "exit 5", "name": "selftest-inline-bad"})
    assert api.wait_for_run("selftest_slurm_inline", ok["dag_run_id"], timeout=180)["state"] == "success"
    assert api.wait_for_run("selftest_slurm_inline", bad["dag_run_id"], timeout=180)["state"] == "failed"
    result = api.xcom("selftest_slurm_inline", ok["dag_run_id"], "job")
    assert list(result["states"].values()) == ["COMPLETED"]
    # It never deferred: no trigger ever ran for it.
    assert _ti(api, "selftest_slurm_inline", ok["dag_run_id"])["trigger"] is None


def test_task_killed_on_the_worker_cancels_the_job(stack):
    """deferrable=False: the task polls on the worker. Marked failed, its supervisor SIGTERMs the
    task process, which calls the operator's on_kill: the job must be cancelled."""
    api = client_for(stack)
    api.wait_for_dag("selftest_slurm_inline")
    run_id = api.trigger("selftest_slurm_inline", {"command": "sleep 600", "name": "selftest-inline-kill"})["dag_run_id"]

    def running_job():
        if _ti(api, "selftest_slurm_inline", run_id)["state"] != "running":
            return None
        try:
            job_id = str(api.xcom("selftest_slurm_inline", run_id, "job", key="slurm_job_id"))
        except Exception:  # not pushed yet
            return None
        return job_id if _squeue_has(job_id, stack.env) else None

    job_id = wait_until(running_job, 120, "the task to run and its job to be queued")
    _mark_failed(api, "selftest_slurm_inline", run_id)
    wait_until(lambda: not _squeue_has(job_id, stack.env), 90, f"job {job_id} to leave the queue after the kill")
    assert _ti(api, "selftest_slurm_inline", run_id)["state"] == "failed"
