"""Security on the real stack: secrets stay out of everything a user or a job can read, and
hostile text in params never becomes a shell command on the login node.

The secrets are the stack's own: the SSH client key, the S3 secret key of the Airflow
connection, the Airflow JWT and API secrets, the Fernet key, the admin password and a live API
token. One real ``skillflow_demo`` run (a Slurm job over SSH, an MLflow run, an S3 artifact) is
then searched: its rendered sbatch scripts, the Slurm job log, every task log file, every
XCom, every rendered template field, and the MLflow run's params and tags.
"""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from operators.slurm.hook import SlurmHook
from tests.faults.driving import unique
from tests.integration.airflow_api import client_for

SECTION = "Security"


def stack_secrets(stack, api) -> dict[str, str]:
    from devtools.stack.config import load_secrets

    found = {f"secrets.json:{k}": v for k, v in load_secrets(stack.layout).items()}
    key_lines = (stack.layout.ssh / "client_ed25519").read_text().strip().splitlines()[1:-1]
    # The first base64 line is the same header in every OpenSSH key; the rest is this key.
    for i, line in enumerate(key_lines[1:], start=2):
        found[f"ssh private key line {i}"] = line
    found["s3 secret key"] = json.loads(stack.env["AIRFLOW_CONN_S3_LOCAL"])["password"]
    found["airflow API token"] = api.token()
    return {k: v for k, v in found.items() if len(v) >= 6}


def leaks(secrets: dict[str, str], where: str, text: str) -> list[str]:
    return [f"{name} in {where}" for name, value in secrets.items() if value in text]


@pytest.mark.reliability(section=SECTION, case="secrets in scripts, logs, XComs and MLflow",
                         promise="no SSH key, S3 key, Airflow secret or token appears in a rendered sbatch "
                                 "script, a Slurm job log, a task log, an XCom, a rendered template field or an "
                                 "MLflow param or tag")
def test_no_secret_reaches_scripts_logs_xcoms_or_mlflow(stack, measured):
    api = client_for(stack)
    api.wait_for_dag("skillflow_demo")
    secrets = stack_secrets(stack, api)
    run_id = api.trigger("skillflow_demo", {"n": 1000, "experiment": "skillflow-faults"})["dag_run_id"]
    final = api.wait_for_run("skillflow_demo", run_id, timeout=300, interval=2.0)
    assert final["state"] == "success"
    found: list[str] = []
    searched = {"scripts": 0, "task logs": 0, "xcoms": 0, "rendered fields": 0, "mlflow values": 0}

    from operators.slurm.operator import _safe  # the operator's own folder naming

    safe = _safe(run_id)
    script_root = stack.layout.cluster / "work" / ".skillflow" / "scripts" / "skillflow_demo"
    scripts = list(script_root.glob(f"{safe}/**/*.sbatch"))
    assert scripts, "no rendered script found for the run"
    for path in scripts:
        searched["scripts"] += 1
        found += leaks(secrets, str(path), path.read_text())
    slurm_log = api.xcom("skillflow_demo", run_id, "slurm_job", key="slurm_log")
    found += leaks(secrets, "the Slurm job log", SlurmHook("slurm_local", accounting="jobcomp").read_text(slurm_log))

    logs = list((stack.layout.airflow_home / "logs" / "dag_id=skillflow_demo" / f"run_id={run_id}").rglob("*.log"))
    assert logs, "no task log files found"
    for path in logs:
        searched["task logs"] += 1
        found += leaks(secrets, str(path), path.read_text(errors="replace"))

    base = f"/api/v2/dags/skillflow_demo/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
    for ti in api._request("GET", base)["task_instances"]:
        task = urllib.parse.quote(ti["task_id"])
        entries = api._request("GET", f"{base}/{task}/xcomEntries")["xcom_entries"]
        for entry in entries:
            value = api._request("GET", f"{base}/{task}/xcomEntries/{urllib.parse.quote(entry['key'])}")["value"]
            searched["xcoms"] += 1
            found += leaks(secrets, f"XCom {ti['task_id']}.{entry['key']}", json.dumps(value))
        rendered = api._request("GET", f"{base}/{task}").get("rendered_fields") or {}
        searched["rendered fields"] += len(rendered)
        found += leaks(secrets, f"rendered fields of {ti['task_id']}", json.dumps(rendered))

    from mlflow.tracking import MlflowClient

    record = api.xcom("skillflow_demo", run_id, "record")
    data = MlflowClient(stack.env["MLFLOW_TRACKING_URI"]).get_run(record["mlflow_run_id"]).data
    values = {**data.params, **data.tags}
    searched["mlflow values"] = len(values)
    found += leaks(secrets, "MLflow params/tags", json.dumps(values))
    assert not found, found
    measured(f"{len(secrets)} secret values searched for in {searched['scripts']} sbatch script(s), 1 job log, "
             f"{searched['task logs']} task log file(s), {searched['xcoms']} XComs, "
             f"{searched['rendered fields']} rendered fields, {searched['mlflow values']} MLflow params/tags: "
             f"0 found")


@pytest.mark.reliability(section=SECTION, case="params cannot inject shell into SSH commands",
                         promise="hostile paths and job ids sent to the login node stay data: no command runs")
def test_hostile_paths_and_job_ids_stay_data_over_ssh(stack, measured):
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    marker = Path(stack.layout.cluster / "work" / f"{unique('pwned')}.marker")
    payloads = [f"x$(touch {marker})", f"x`touch {marker}`", f"x; touch {marker}", f"x' ; touch {marker}; '",
                f"x\ntouch {marker}"]
    work = f"{stack.layout.cluster}/work"
    for payload in payloads:
        path = f"{work}/{payload}.jsonl"
        hook.files_complete([path])
        hook.read_text(path)
        hook.tail(path, 0)
        hook.last_lines(path, 5)
        hook.write_text(f"{work}/{unique('inject')}.txt", payload)
    from tasks.slurm.commands import check_job_id

    refused = 0
    for job_id in (f"1; touch {marker}", "1 && id", "$(id)", "1\n2"):
        with pytest.raises(ValueError):
            check_job_id(job_id)
        refused += 1
    assert not marker.exists(), "a payload ran as a command on the login node"
    measured(f"{len(payloads)} payloads through files_complete, read_text, tail, last_lines and write_text over real "
             f"SSH: no marker file; {refused} hostile job ids refused before reaching a shell")
