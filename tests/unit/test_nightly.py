"""operators.openmath.nightly against a real MLflow tracking store and registry (SQLite, in process).

The paired path (predictions zips in S3) is exercised on the real stack in
tests/integration/test_openmath_nightly.py; here the runs keep no predictions, so the previous
night is compared by this run's interval, as for any run without per-problem data.
"""
from __future__ import annotations

import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from operators.openmath import nightly
from operators.tracking import mlflow_runs


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def mlc(tracking_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return MlflowClient(tracking_uri)


def _night(mlc, experiment: str, model: str, dag_run_id: str, metrics: dict[str, float]) -> str:
    exp_id = mlflow_runs.experiment_id(mlc, experiment)
    run = mlc.create_run(exp_id, tags={mlflow_runs.TAG_RUN: dag_run_id, nightly.NIGHTLY_TAG: model})
    if metrics:
        mlflow_runs.log_metrics(mlc, run.info.run_id, metrics)
    mlc.set_terminated(run.info.run_id, "FINISHED")
    time.sleep(0.01)  # distinct start times order the nights
    return run.info.run_id


def _gsm8k(acc: float, n: int = 1319) -> dict[str, float]:
    return {"gsm8k.greedy.correct_answer": acc, "gsm8k.greedy.num_entries": n}


MODEL = {"name": "m", "version": "1", "model_path": "/models/my-model"}


def test_zero_models_is_an_explicit_nothing_evaluated(mlc):
    out = nightly.compare([], [], "exp-zero", mlflow_conn_id=None)
    assert out == {"models": [], "report": "no model carries the alias; nothing evaluated"}


def test_evaluation_that_logged_no_metrics_fails_naming_the_run(mlc):
    _night(mlc, "exp-nometrics", "m", "nightly__a__m0", {})
    with pytest.raises(AirflowFailException, match="m v1: evaluation run nightly__a__m0 logged no metrics"):
        nightly.compare([MODEL], ["nightly__a__m0"], "exp-nometrics", mlflow_conn_id=None)
    with pytest.raises(AirflowFailException, match="nightly__never__m0 logged no metrics"):
        nightly.compare([MODEL], ["nightly__never__m0"], "exp-nometrics", mlflow_conn_id=None)


def test_first_night_has_nothing_to_compare_and_says_so(mlc):
    _night(mlc, "exp-first", "m", "nightly__1__m0", _gsm8k(80.0))
    out = nightly.compare([MODEL], ["nightly__1__m0"], "exp-first", mlflow_conn_id=None)
    assert out["models"][0]["status"] == "no_baseline"
    assert "no regression" not in out["report"] and "nothing to compare with" in out["report"]


def test_real_drop_against_previous_night_fails_with_report(mlc):
    first = _night(mlc, "exp-drop", "m", "nightly__1__m0", _gsm8k(80.0))
    _night(mlc, "exp-drop", "m", "nightly__2__m0", _gsm8k(79.5))
    out = nightly.compare([MODEL], ["nightly__2__m0"], "exp-drop", mlflow_conn_id=None)
    (outcome,) = out["models"]
    assert outcome["status"] == "pass" and outcome["previous_run_id"] == first
    assert outcome["compared"] == {f"previous nightly run {first}": ["gsm8k.greedy.correct_answer"]}
    _night(mlc, "exp-drop", "m", "nightly__3__m0", _gsm8k(70.0))
    with pytest.raises(AirflowFailException) as info:
        nightly.compare([MODEL], ["nightly__3__m0"], "exp-drop", mlflow_conn_id=None)
    text = str(info.value)
    assert "m v1: 1 regression(s)" in text and "REGRESSION gsm8k.greedy.correct_answer: reference 79.50" in text
    assert "kept no predictions zip" in text


def test_released_model_evaluated_greedy_only_is_not_a_regression(mlc):
    """Issue 23: published numbers include majority@50, the default nightly evaluates greedy only.

    Before the fix this failed every night with "missing vs 86.90"; now only what both sides
    measured is compared and the report lists the published metrics that were not evaluated."""
    model = {"name": "mistral", "version": "3", "model_path": "/models/OpenMath-Mistral-7B-v0.1-hf"}
    _night(mlc, "exp-published", "mistral", "nightly__1__m0",
           {**_gsm8k(80.0), "math.greedy.correct_answer": 44.1, "math.greedy.num_entries": 5000})
    out = nightly.compare([model], ["nightly__1__m0"], "exp-published", mlflow_conn_id=None)
    (outcome,) = out["models"]
    assert outcome["status"] == "pass", out["report"]
    assert outcome["compared"]["published numbers"] == ["gsm8k.greedy.correct_answer", "math.greedy.correct_answer"]
    assert outcome["not_evaluated"]["published numbers"] == ["gsm8k.majority_at_50.correct_answer",
                                                             "math.majority_at_50.correct_answer"]
    assert "not evaluated by this run (not compared)" in out["report"] and "missing" not in out["report"]


def test_models_with_alias_lists_only_aliased_versions(mlc):
    for name, alias in (("with-alias", "nightly"), ("other-alias", "prod"), ("no-alias", None)):
        mlc.create_registered_model(name)
        version = mlc.create_model_version(name, source="s3://b/models/x", tags={"cluster_path": f"/c/{name}"})
        if alias:
            mlc.set_registered_model_alias(name, alias, version.version)
    assert nightly.models_with_alias("nightly", None) == [
        {"name": "with-alias", "version": "1", "model_path": "/c/with-alias"}]
    assert nightly.models_with_alias("absent", None) == []


def test_registry_error_fails_instead_of_looking_like_no_models(mlc, monkeypatch):
    """The old code swallowed every exception of the alias lookup, so a registry that failed
    mid-way looked like "no model carries the alias" and the night passed. A transient server
    error on one call cannot be caused on demand, so a wrapper around the real client raises it."""
    mlc.create_registered_model("flaky")
    version = mlc.create_model_version("flaky", source="s3://b/models/y")
    mlc.set_registered_model_alias("flaky", "nightly-flaky", version.version)

    class FailingRegistry:
        def __getattr__(self, name):
            return getattr(mlc, name)

        def get_model_version(self, *args, **kwargs):
            raise ConnectionError("registry unavailable")

        get_model_version_by_alias = get_model_version

    monkeypatch.setattr(mlflow_runs, "client", lambda conn_id: FailingRegistry())
    with pytest.raises(ConnectionError):
        nightly.models_with_alias("nightly-flaky", None)
