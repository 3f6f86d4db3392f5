"""apps_sft through the real scheduler, triggerer, Slurm, MLflow and S3 of the local stack.

SmolLM2 (llama.cpp, two CPU cores) samples 3 shipped MapCoder problems twice each with a short
token budget; the real evaluator runs the programs. The model is too small to solve them, so the
test checks the plumbing and the numbers' consistency, not their size.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration

SMOKE = {"model": "smollm2", "data": "mapcoder-sample", "limit": 3, "n_samples": 2, "max_tokens": 256,
         "concurrency": 2, "experiment": "selftest-apps-sft"}


def _states(api, run_id: str) -> dict[str, str]:
    return {t["task_id"]: t.get("state") for t in api.task_instances("apps_sft", run_id)}


def test_local_run_reports_pass_at_k_and_results_and_refuses_training(stack, tmp_path):
    from mlflow.tracking import MlflowClient

    from tasks.s3_check import sha256_of_object

    api = client_for(stack)
    api.wait_for_dag("apps_sft")
    started = time.monotonic()
    run_id = api.trigger("apps_sft", SMOKE)["dag_run_id"]
    refused_id = api.trigger("apps_sft", dict(SMOKE, train=True))["dag_run_id"]

    refused = api.wait_for_run("apps_sft", refused_id, timeout=300)
    assert refused["state"] == "failed"
    assert _states(api, refused_id)["plan"] == "failed"

    final = api.wait_for_run("apps_sft", run_id, timeout=600)
    assert final["state"] == "success", api.task_instances("apps_sft", run_id)
    print(f"apps_sft smoke run: {time.monotonic() - started:.0f}s")
    states = _states(api, run_id)
    assert states["train"] == "skipped" and states["sample_sft"] == "skipped" and states["eval_sft"] == "skipped"
    assert states["sample_base"] == "success" and states["eval_base"] == "success"

    out = api.xcom("apps_sft", run_id, "report")
    assert list(out["runs"]) == ["base"]
    base = out["runs"]["base"]
    mlc = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    run = mlc.get_run(base["mlflow_run_id"])
    metrics = run.data.metrics
    for group in ("total", "introductory", "interview", "competition"):
        assert 0.0 <= metrics[f"{group}.pass_at_1"] <= 1.0, sorted(metrics)
        assert metrics[f"{group}.samples"] == (6 if group == "total" else 2)
        assert f"{group}.pass_at_5" not in metrics  # 2 samples per problem: pass@5 is not estimated
    assert metrics["total.problems"] == 3
    assert metrics["total.pass_at_1"] == pytest.approx(metrics["total.correct"] / 6)
    assert run.data.params["n_samples"] == "2" and run.data.tags["skillflow.apps_side"] == "base"
    assert run.info.status == "FINISHED"

    local = mlc.download_artifacts(base["mlflow_run_id"], "results/results.jsonl", str(tmp_path))
    rows = [json.loads(x) for x in open(local).read().splitlines()]
    assert len(rows) == 6 and {str(r["problem_id"]) for r in rows} == {"4276", "1647", "2012"}
    assert all({"passed", "status", "codes"} <= set(r) for r in rows)
    assert sum(bool(r["passed"]) for r in rows) == metrics["total.correct"]
    table = open(mlc.download_artifacts(base["mlflow_run_id"], "comparison/comparison.md", str(tmp_path))).read()
    assert "Note: this run did not train" in table and "| Difficulty" in table and "n/a (n<5)" in table
    assert sha256_of_object(base["samples_uri"], stack.env) == base["samples_sha256"]
