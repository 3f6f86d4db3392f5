"""openmath_datagen through the real scheduler, triggerer, Slurm, MLflow and S3 of the local stack.

SmolLM2 labels the first shipped gsm8k train problem: 2 masked-solution runs, then 2 runs of
gsm8k and gsm8k-masked each; the SFT data file must reach S3 with the logged checksum and the
asset event must carry its URI.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.airflow_client import AirflowAPIError
from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration

DAG = "openmath_datagen"
SMOKE = {"model": "smollm2", "engine": "native", "data": "shared-sample", "limit": 1,
         "configurations": ["gsm8k", "gsm8k-masked"], "num_runs": 2, "masked_runs": 2, "throttle": 2,
         "experiment": "selftest-openmath-datagen"}


def test_form_rejects_unknown_configuration(stack):
    api = client_for(stack)
    api.wait_for_dag(DAG)
    with pytest.raises(AirflowAPIError) as info:
        api.trigger(DAG, dict(SMOKE, configurations=["gsm8k", "svamp"]))
    assert "configurations" in str(info.value) and "HTTP 400" in str(info.value)


@pytest.mark.recipe  # minutes of DAG run: `make test-recipes` (CI runs it), not `make test`
def test_smoke_run_reports_coverage_and_publishes_sft_data(stack):
    from mlflow.tracking import MlflowClient

    from tasks.storage.s3 import sha256_of_object

    api = client_for(stack)
    api.wait_for_dag(DAG)
    run_id = api.trigger(DAG, SMOKE)["dag_run_id"]
    final = api.wait_for_run(DAG, run_id, timeout=600)
    assert final["state"] == "success", api.task_instances(DAG, run_id)

    out = api.xcom(DAG, run_id, "report")
    run = MlflowClient(stack.env["MLFLOW_TRACKING_URI"]).get_run(out["mlflow_run_id"])
    metrics = run.data.metrics
    for key in ("coverage.dataset.gsm8k", "coverage.config.gsm8k", "coverage.config.gsm8k-masked",
                "questions.dataset.gsm8k", "mask.gsm8k.problems", "sft.output_entries"):
        assert key in metrics, sorted(metrics)
    assert metrics["questions.dataset.gsm8k"] == 1
    assert metrics["mask.gsm8k.problems"] == 1
    assert 0.0 <= metrics["coverage.dataset.gsm8k"] <= 1.0
    assert run.data.tags["sft_data.uri"] == out["sft_data_uri"]
    assert sha256_of_object(out["sft_data_uri"], stack.env) == out["sft_data_sha256"]
    assert metrics["sft.lines"] == metrics["sft.output_entries"]

    plan = api.xcom(DAG, run_id, "plan", key="plan")
    out_dir = Path(plan["output_dir"])
    for conf in ("gsm8k", "gsm8k-masked"):
        for seed in (0, 1):
            lines = (out_dir / "synthetic-solutions" / conf / f"output-rs{seed}.jsonl").read_text().splitlines()
            assert len(lines) == 1 and all("is_correct" in json.loads(x) for x in lines)
    masked = (out_dir / "data" / "gsm8k-masked" / "train_full.jsonl").read_text().splitlines()
    assert len(masked) == 1 and all("masked_reference_solution" in json.loads(x) for x in masked)

    events = api._request("GET", "/api/v2/assets/events?limit=50&order_by=-timestamp")["asset_events"]
    mine = [e for e in events if e.get("source_run_id") == run_id and e.get("source_dag_id") == DAG]
    assert mine and mine[0]["extra"]["uri"] == out["sft_data_uri"], events[:3]

    # Resubmission: one labeling output lost its marker, so only that configuration's array runs
    # again, over that one seed; the other outputs stay untouched.
    lost = out_dir / "synthetic-solutions" / "gsm8k-masked" / "output-rs1.jsonl.done"
    kept = out_dir / "synthetic-solutions" / "gsm8k" / "output-rs0.jsonl"
    kept_mtime = kept.stat().st_mtime_ns
    lost.unlink()
    api._request("POST", f"/api/v2/dags/{DAG}/clearTaskInstances",
                 {"dry_run": False, "dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True,
                  "include_downstream": True, "task_ids": ["pending_labeling"]})
    final = api.wait_for_run(DAG, run_id, timeout=600)
    assert final["state"] == "success", api.task_instances(DAG, run_id)
    todo = api.xcom(DAG, run_id, "pending_labeling")
    assert len(todo) == 1 and todo[0]["job"]["array"] == "1-1", todo
    assert lost.exists() and kept.stat().st_mtime_ns == kept_mtime
