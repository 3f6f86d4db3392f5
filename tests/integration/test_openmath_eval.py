"""openmath_eval through the real scheduler, triggerer, Slurm, MLflow and S3 of the local stack.

SmolLM2 on two CPU cores: a handful of problems per benchmark keeps a run to a few minutes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from devtools.airflow_client import AirflowAPIError
from tests.integration import profile_variants
from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration

SMOKE = {"model": "smollm2", "engine": "native", "data": "samples", "limit": 2,
         "benchmarks": ["gsm8k:2", "asdiv:0", "math:2"], "seed_chunk_size": 1, "batch_size": 4,
         "experiment": "selftest-openmath"}


def test_form_rejects_bad_value_naming_the_param(stack):
    api = client_for(stack)
    api.wait_for_dag("openmath_eval")
    with pytest.raises(AirflowAPIError) as info:
        api.trigger("openmath_eval", dict(SMOKE, benchmarks=["gsm8k:fifty"]))
    assert "benchmarks" in str(info.value) and "HTTP 400" in str(info.value)
    with pytest.raises(AirflowAPIError) as info:
        api.trigger("openmath_eval", dict(SMOKE, batch_size=0))
    assert "batch_size" in str(info.value)


def _mapped_count(api, run_id: str, task_id: str) -> int:
    return len([t for t in api.task_instances("openmath_eval", run_id) if t["task_id"] == task_id
                and t.get("map_index", -1) >= 0 and t.get("state") == "success"])


def test_smoke_run_logs_metrics_and_verified_zip_then_resume_skips_finished_chunks(stack):
    from mlflow.tracking import MlflowClient

    from tasks.storage.s3 import sha256_of_object

    api = client_for(stack)
    api.wait_for_dag("openmath_eval")
    run = api.trigger("openmath_eval", SMOKE)
    run_id = run["dag_run_id"]
    final = api.wait_for_run("openmath_eval", run_id, timeout=900)
    assert final["state"] == "success", api.task_instances("openmath_eval", run_id)
    out = api.xcom("openmath_eval", run_id, "report")
    metrics = MlflowClient(stack.env["MLFLOW_TRACKING_URI"]).get_run(out["mlflow_run_id"]).data.metrics
    for key in ("gsm8k.greedy.correct_answer", "gsm8k.majority_at_2.correct_answer", "math.pass_at_2.no_answer",
                "asdiv.greedy.num_entries"):
        assert key in metrics, sorted(metrics)
    assert metrics["asdiv.greedy.num_entries"] == 2
    assert sha256_of_object(out["predictions_uri"], stack.env) == out["predictions_sha256"]
    assert _mapped_count(api, run_id, "sampling") == 2
    # Greedy decoding is one job per benchmark (a 34B+ model may not do all in one walltime).
    assert _mapped_count(api, run_id, "greedy") == 3
    # In the images: the sandbox sidecar started as upstream starts its image, beside llama.cpp.
    log = Path(api.xcom("openmath_eval", run_id, "greedy", map_index=0)["log"]).read_text()
    assert "skillflow sandbox image: skillflow CLI ok" in log and "model server is ready" in log, log

    # A chunk whose job died before finishing has no .done marker: take one away, re-run the
    # DAG run, and only that chunk runs again while the other chunk's file stays untouched.
    plan = api.xcom("openmath_eval", run_id, "plan", key="plan")
    out_dir = Path(plan["output_dir"])
    lost = out_dir / "gsm8k" / "output-rs1.jsonl.done"
    kept = out_dir / "gsm8k" / "output-rs0.jsonl"
    kept_mtime = kept.stat().st_mtime_ns
    lost.unlink()
    path = "/api/v2/dags/openmath_eval/clearTaskInstances"
    api._request("POST", path, {"dry_run": False, "dag_run_id": run_id, "only_failed": False,
                                "reset_dag_runs": True, "include_downstream": True,
                                "task_ids": ["pending_chunks"]})
    final = api.wait_for_run("openmath_eval", run_id, timeout=900)
    assert final["state"] == "success"
    assert _mapped_count(api, run_id, "sampling") == 1
    assert lost.exists() and kept.stat().st_mtime_ns == kept_mtime


def test_model_given_as_s3_uri_is_staged_on_the_cluster(stack):
    from tasks.storage.s3 import client

    key = "models/selftest/SmolLM2-135M-Instruct.Q4_1.gguf"
    client(stack.env).upload_file(stack.env["SKILLFLOW_SMOLLM2_GGUF"], "skillflow", key)
    api = client_for(stack)
    api.wait_for_dag("openmath_eval")
    conf = dict(SMOKE, model=f"s3://skillflow/{key}", benchmarks=["gsm8k:0"], limit=1)
    run = api.trigger("openmath_eval", conf)
    final = api.wait_for_run("openmath_eval", run["dag_run_id"], timeout=600)
    assert final["state"] == "success", api.task_instances("openmath_eval", run["dag_run_id"])
    plan = api.xcom("openmath_eval", run["dag_run_id"], "plan", key="plan")
    staged = Path(plan["model"])
    assert staged.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and "/models/" in str(staged)
    assert staged.stat().st_size == Path(stack.env["SKILLFLOW_SMOLLM2_GGUF"]).stat().st_size


def test_a_profile_without_containers_runs_the_same_run_on_the_nodes(stack):
    """`container.runtime: none` stays for sites without a runtime: the same smoke run with the
    node's own venvs (tests/integration/profile_variants.py) succeeds, and no step started an
    image."""
    api = client_for(stack)
    api.wait_for_dag("openmath_eval")
    folder = Path(stack.env["SKILLFLOW_VAR"]) / "test-profiles"
    folder.mkdir(parents=True, exist_ok=True)
    conf = dict(SMOKE, benchmarks=["gsm8k:0"], experiment="selftest-openmath-no-containers",
                profile=profile_variants.without_containers(folder))
    run_id = api.trigger("openmath_eval", conf)["dag_run_id"]
    final = api.wait_for_run("openmath_eval", run_id, timeout=900)
    assert final["state"] == "success", api.task_instances("openmath_eval", run_id)
    log = Path(api.xcom("openmath_eval", run_id, "greedy", map_index=0)["log"]).read_text()
    assert "model server is ready" in log and "sandbox: listening" in log, log
    assert "skillflow sandbox image" not in log, log
