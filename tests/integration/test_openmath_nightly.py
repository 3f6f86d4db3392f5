"""openmath_nightly end to end, and its regression check on the real MLflow and S3 of the stack.

1. A registered model with the alias is re-evaluated twice through openmath_eval: the first
   night has nothing to compare with, the second is compared per problem with the first and passes.
2. The comparison step on three synthetic nights (predictions zips in S3, runs in MLflow): a night
   that differs only by a few random flips both ways passes; one that loses a real share of a
   benchmark fails, and the failure carries the report.
"""
from __future__ import annotations

import json
import random
import time
import zipfile
from pathlib import Path

import pytest

from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration

# One problem of one benchmark: the test is about the alias, the two nights and the comparison.
TINY = {"engine": "native", "data": "samples", "limit": 1, "benchmarks": ["gsm8k:0"], "batch_size": 1}


@pytest.mark.recipe  # minutes of DAG run: `make test-recipes` (CI runs it), not `make test`
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
    conf = {"alias": alias, "eval_params": TINY, "experiment": f"{name}-exp"}
    outcomes = []
    for _ in range(2):
        run = api.trigger("openmath_nightly", conf)
        final = api.wait_for_run("openmath_nightly", run["dag_run_id"], timeout=900)
        assert final["state"] == "success", api.task_instances("openmath_nightly", run["dag_run_id"])
        outcomes.append(api.xcom("openmath_nightly", run["dag_run_id"], "compare"))
    first, second = (o["models"] for o in outcomes)
    assert [m["status"] for m in first] == ["no_baseline"], outcomes[0]["report"]
    (night2,) = second
    assert night2["status"] == "pass" and night2["previous_run_id"] == first[0]["run_id"], outcomes[1]["report"]
    assert night2["paired_with_previous"] is True, outcomes[1]["report"]
    assert night2["compared"] == {f"previous nightly run {first[0]['run_id']}": ["gsm8k.greedy.correct_answer"]}
    runs = mlc.search_runs([mlc.get_experiment_by_name(f"{name}-exp").experiment_id],
                           filter_string=f"tags.`skillflow.nightly_model` = '{name}'")
    assert len(runs) == 2 and all("gsm8k.greedy.correct_answer" in r.data.metrics for r in runs)
    # The evaluation logged its benchmark file as a dataset input, with the interval beside the accuracy.
    assert [d.dataset.name for d in runs[0].inputs.dataset_inputs] == ["gsm8k"]
    assert "gsm8k.greedy.correct_answer.ci_high" in runs[0].data.metrics


def _graded(correct: list[bool], bench: str) -> str:
    return "".join(json.dumps({"question": f"{bench} problem {i}", "expected_answer": "1",
                               "predicted_answer": "1" if ok else "2", "is_correct": ok}) + "\n"
                   for i, ok in enumerate(correct))


def _log_night(mlc, s3, exp_id: str, model: str, dag_run_id: str, nights: dict[str, list[bool]], tmp: Path) -> str:
    """A finished evaluation run as openmath_eval leaves it: metrics, and a checked predictions zip in S3."""
    from operators.openmath.evaluation import metric_names
    from operators.tracking import mlflow_runs
    from operators.tracking.s3 import upload_verified
    from tasks.openmath.summarize import summarize

    results_dir = tmp / dag_run_id
    for bench, correct in nights.items():
        (results_dir / bench).mkdir(parents=True)
        (results_dir / bench / "output-greedy.jsonl").write_text(_graded(correct, bench))
    results = summarize(results_dir)
    with zipfile.ZipFile(tmp / f"{dag_run_id}.zip", "w") as zf:
        for f in results_dir.rglob("*.jsonl"):
            zf.write(f, f.relative_to(results_dir).as_posix())
    run = mlc.create_run(exp_id, tags={mlflow_runs.TAG_RUN: dag_run_id, "skillflow.nightly_model": model})
    stored = upload_verified(s3, tmp / f"{dag_run_id}.zip", "skillflow", f"selftest/nightly/{model}/{dag_run_id}.zip")
    mlflow_runs.log_metrics(mlc, run.info.run_id, metric_names(results))
    mlc.set_tag(run.info.run_id, "predictions.s3_uri", stored["uri"])
    mlc.set_tag(run.info.run_id, "predictions.sha256", stored["sha256"])
    mlc.set_terminated(run.info.run_id, "FINISHED")
    time.sleep(0.05)  # the nights are ordered by start time
    return run.info.run_id


def _flip(outcomes: list[bool], positions: list[int]) -> list[bool]:
    out = list(outcomes)
    for i in positions:
        out[i] = not out[i]
    return out


def test_noise_passes_and_a_real_loss_fails_with_the_report(stack, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from operators.openmath import nightly
    from operators.tracking import mlflow_runs
    from operators.tracking.s3 import s3_client
    from tasks.profiles import load_profile

    profile = load_profile("local")
    mlc = mlflow_runs.client(profile.mlflow_conn_id)
    s3 = s3_client(profile.aws_conn_id)
    tag = f"selftest-noise-{int(time.time())}"
    exp_id = mlflow_runs.experiment_id(mlc, tag)
    model = {"name": tag, "version": "1", "model_path": "/models/selftest"}
    rng = random.Random(21)
    gsm8k = [rng.random() < 0.8 for _ in range(1319)]
    algebra = [rng.random() < 0.6 for _ in range(222)]
    right = [i for i, ok in enumerate(gsm8k) if ok]
    wrong = [i for i, ok in enumerate(gsm8k) if not ok]

    _log_night(mlc, s3, exp_id, tag, "night1", {"gsm8k": gsm8k, "algebra222": algebra}, tmp_path)
    # Noise: 5 problems lost and 4 gained at random on gsm8k, 2 and 2 on algebra222.
    noisy = _flip(gsm8k, rng.sample(right, 5) + rng.sample(wrong, 4))
    noisy_alg = _flip(algebra, rng.sample([i for i, ok in enumerate(algebra) if ok], 2)
                      + rng.sample([i for i, ok in enumerate(algebra) if not ok], 2))
    night2 = _log_night(mlc, s3, exp_id, tag, "night2", {"gsm8k": noisy, "algebra222": noisy_alg}, tmp_path)
    out = nightly.compare([model], ["night2"], tag, mlflow_conn_id=profile.mlflow_conn_id,
                          aws_conn_id=profile.aws_conn_id)
    (outcome,) = out["models"]
    assert outcome["status"] == "pass" and outcome["paired_with_previous"], out["report"]
    assert outcome["regressions"] == [] and "lost 5, gained 4" in out["report"]

    # A real loss: 80 of the problems night2 solved are now wrong on gsm8k (about -6 points).
    lost = sorted(rng.sample([i for i, ok in enumerate(noisy) if ok], 80))
    _log_night(mlc, s3, exp_id, tag, "night3", {"gsm8k": _flip(noisy, lost), "algebra222": noisy_alg}, tmp_path)
    with pytest.raises(AirflowFailException) as info:
        nightly.compare([model], ["night3"], tag, mlflow_conn_id=profile.mlflow_conn_id,
                        aws_conn_id=profile.aws_conn_id)
    report = str(info.value)
    assert f"{tag} v1: 1 regression(s)" in report
    assert f"REGRESSION gsm8k.greedy.correct_answer" in report and f"previous nightly run {night2}" in report
    assert "lost 80, gained 0" in report and f"first lost problems {lost[:10]}" in report
    assert "ok         algebra222.greedy.correct_answer" in report
