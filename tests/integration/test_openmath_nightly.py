"""openmath_nightly end to end: a registered model with the alias is re-evaluated through
openmath_eval, and the second night compares with the first (equal numbers: no regression)."""
from __future__ import annotations

import time

import pytest

from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration

# One problem of one benchmark: the test is about the alias, the two nights and the comparison.
TINY = {"engine": "native", "data": "samples", "limit": 1, "benchmarks": ["gsm8k:0"], "batch_size": 1}


def test_nightly_reevaluates_aliased_model_and_compares(stack):
    from mlflow.tracking import MlflowClient

    mlc = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    name = f"selftest-smollm2-{int(time.time())}"
    alias = f"selftest{int(time.time())}"  # unique, so models left by earlier sessions are not picked
    mlc.create_registered_model(name)
    # The registry wants a remote source; the cluster path travels as a tag, as openmath_sft sets it.
    version = mlc.create_model_version(name, source="s3://skillflow/models/smollm2-135m-instruct.gguf",
                                       tags={"cluster_path": "smollm2"})
    mlc.set_registered_model_alias(name, alias, version.version)

    api = client_for(stack)
    api.wait_for_dag("openmath_nightly")
    conf = {"alias": alias, "tolerance": 1.0, "eval_params": TINY, "experiment": f"{name}-exp"}
    reports = []
    for _ in range(2):
        run = api.trigger("openmath_nightly", conf)
        final = api.wait_for_run("openmath_nightly", run["dag_run_id"], timeout=900)
        assert final["state"] == "success", api.task_instances("openmath_nightly", run["dag_run_id"])
        reports.append(api.xcom("openmath_nightly", run["dag_run_id"], "compare"))
    assert f"{name} v{version.version}: no regression" in reports[1]
    runs = mlc.search_runs([mlc.get_experiment_by_name(f"{name}-exp").experiment_id],
                           filter_string=f"tags.`skillflow.nightly_model` = '{name}'")
    assert len(runs) == 2 and all("gsm8k.greedy.correct_answer" in r.data.metrics for r in runs)
