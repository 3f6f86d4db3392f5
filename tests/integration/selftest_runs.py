"""Runs of the selftest DAGs (tests/dags) through the stack's real scheduler, triggerer and
worker, judged from what Airflow's API and the cluster's job records say."""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

from tests.integration.airflow_api import client_for
from tests.polling import wait_until


def ended_run(api, run_id: str, dag: str, task: str, timeout: float = 300, watch=None) -> dict:
    """The ended run: its state, task instance, Slurm job id, returned value and the task's log as
    the API serves it (the lines the trigger streamed in the triggerer, the worker's error)."""
    def ended():
        if watch is not None:
            watch()
        run = api.dag_run(dag, run_id)
        return run if run["state"] in ("success", "failed") else None

    final = wait_until(ended, timeout, f"run {run_id} of {dag} to end")
    base = f"/api/v2/dags/{dag}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task}"
    ti = api._request("GET", base)
    log = api._request("GET", f"{base}/logs/{ti['try_number']}?full_content=true")
    return {"state": final["state"], "ti": ti, "job_id": str(api.xcom(dag, run_id, task, key="slurm_job_id")),
            "result": api.xcom(dag, run_id, task) if final["state"] == "success" else None,
            "log": json.dumps(log)}


TRAINING = "selftest_slurm_training"


TRAINING_RETRIED = "selftest_slurm_training_retried"


def run_training(stack, conf: dict, timeout: float = 300, watch=None, dag: str = TRAINING) -> dict:
    """One run of a selftest training DAG to its end (see :func:`ended_run`), with its run id."""
    api = client_for(stack)
    api.wait_for_dag(dag)
    run_id = api.trigger(dag, conf)["dag_run_id"]
    return {**ended_run(api, run_id, dag, "train", timeout=timeout, watch=watch), "run_id": run_id}


def chain_records(stack, dag: str, run_id: str, task: str = "train") -> list[str]:
    """The job ids a run's training chain recorded on the cluster, one per link, oldest first."""
    from operators.slurm.operator import _safe

    folder = Path(stack.env["SKILLFLOW_VAR"]) / "cluster" / "work" / ".skillflow" / "jobs" / _safe(dag) / _safe(run_id)
    records = sorted(folder.glob(f"{task}.c*.jobid"), key=lambda r: int(r.name.split(".")[1][1:]))
    return [r.read_text().strip().splitlines()[-1] for r in records]
