"""cluster_check end to end on the real local stack: the local profile passes every check that
applies to it (and says which do not), and a deliberately broken copy of it fails exactly the
checks it breaks, each with its fix, in the table logged to MLflow; and probes that cannot start
still give a table that says so."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.markdown import markdown_rows
from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAG = "cluster_check"
# The check that does not apply where the GPUs are emulated (slurm.accelerator: cpu), and must say so.
NOT_APPLICABLE = {"GPUs visible"}
EXPECTED = {"container starts", "skillflow --version", "GPUs allocated", "GPUs visible", "workdir writable",
            "model 'smollm2'", "S3 reachable with cluster credentials", "sandbox answers /health",
            "sandbox refuses network", "partition exists", "partition is up", "max_time within the partition's",
            "default_time within max_time", "GPUs per node", "multi-node partition exists"}
#: Probes of the local profile: one per image (the sandbox's among them).
PROBES = 4


def broken_profile(folder: Path) -> Path:
    """The local profile promising 4 GPUs per node (the node has 2) and a model that is not there."""
    raw = yaml.safe_load((ROOT / "tasks" / "cluster_profiles" / "local.yaml").read_text())
    raw["name"] = "local-broken"
    raw["slurm"]["gpus_per_node"] = 4
    raw["models"] = {"smollm2": "${SKILLFLOW_VAR}/no-such-model.gguf"}
    path = folder / "local-broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def no_cli_profile(folder: Path) -> Path:
    """The local profile pointing at a skillflow CLI that is not there: no probe can start."""
    raw = yaml.safe_load((ROOT / "tasks" / "cluster_profiles" / "local.yaml").read_text())
    raw["name"] = "local-no-cli"
    raw["paths"]["skillflow"] = "${SKILLFLOW_VAR}/no-such-skillflow"
    path = folder / "local-no-cli.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def table_of(mlc, experiment: str, run_id: str) -> tuple[str, list[dict]]:
    exp = mlc.get_experiment_by_name(experiment)
    [run] = mlc.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.dag_run_id` = '{run_id}'")
    base = run.info.artifact_uri
    import mlflow.artifacts

    table = mlflow.artifacts.load_text(f"{base}/cluster_check/table.md")
    rows = mlflow.artifacts.load_dict(f"{base}/cluster_check/rows.json")["rows"]
    return table, rows


def test_local_profile_passes_and_a_broken_one_fails_the_checks_it_breaks(stack, tmp_path):
    from mlflow.tracking import MlflowClient

    mlc = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    api = client_for(stack)
    api.wait_for_dag(DAG)
    experiment = f"cluster-check-test-{int(time.time())}"
    # Both runs at once: the probes are tiny and the two profiles share the one Slurm node.
    good = api.trigger(DAG, {"profile": "local", "experiment": experiment})["dag_run_id"]
    bad = api.trigger(DAG, {"profile": str(broken_profile(tmp_path)), "experiment": experiment})["dag_run_id"]
    dead = api.trigger(DAG, {"profile": str(no_cli_profile(tmp_path)), "experiment": experiment})["dag_run_id"]

    final = api.wait_for_run(DAG, good, timeout=600)
    assert final["state"] == "success", api.task_instances(DAG, good)
    out = api.xcom(DAG, good, "report")
    statuses = {r["check"]: r["status"] for r in out["rows"]}
    # Every image's probe checks the profile's two mounts (the cluster folder, the model file).
    mounts = {c for c in statuses if c.startswith("mount ")}
    assert set(statuses) - mounts == EXPECTED and len(mounts) == 2, sorted(statuses)
    assert {c for c, s in statuses.items() if s != "PASS"} == NOT_APPLICABLE, json.dumps(out["rows"], indent=1)
    assert all(statuses[c] == "SKIP" for c in NOT_APPLICABLE)
    by_check = {r["check"]: r for r in out["rows"]}
    assert "through podman" in by_check["container starts"]["detail"]
    assert "head-bucket skillflow answered" in by_check["S3 reachable with cluster credentials"]["detail"]
    assert "connected" not in by_check["sandbox refuses network"]["detail"]
    table, rows = table_of(mlc, experiment, good)
    assert rows == out["rows"]
    passed = [r[1] for r in markdown_rows(table) if r[0] == "skillflow --version" and r[2] == "PASS"]
    assert len(passed) == PROBES and any("[nemo_skills] / debug" in t for t in passed), passed

    final = api.wait_for_run(DAG, bad, timeout=600)
    assert final["state"] == "failed"
    states = {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG, bad) if ti.get("map_index", -1) < 1}
    assert states["report"] == "failed" and states["probe"] == "success"  # the jobs ran; the checks failed
    _, rows = table_of(mlc, experiment, bad)
    failed = {r["check"]: r for r in rows if r["status"] == "FAIL"}
    assert set(failed) == {"GPUs per node", "model 'smollm2'"}, json.dumps(rows, indent=1)
    assert failed["GPUs per node"]["fix"] == "set slurm.gpus_per_node to 2, what every node of the partition has"
    assert failed["model 'smollm2'"]["fix"].startswith("copy the model to ") and \
        "no-such-model.gguf" in failed["model 'smollm2'"]["fix"]

    # Probe jobs that cannot even start: their tasks fail, the report still writes the table.
    final = api.wait_for_run(DAG, dead, timeout=600)
    assert final["state"] == "failed"
    _, rows = table_of(mlc, experiment, dead)
    failed = [r for r in rows if r["status"] == "FAIL"]
    assert [r["check"] for r in failed] == ["probe job ran"] * PROBES, json.dumps(rows, indent=1)
    assert all("no-such-skillflow" in r["detail"] and "container that cannot start" in r["fix"] for r in failed)
    assert {r["check"] for r in rows if r["status"] == "PASS"} >= {"partition exists", "GPUs per node"}
