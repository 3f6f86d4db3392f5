"""The Airflow-side helpers every DAG's Python steps share (operators/dag_steps.py), against a real
MLflow registry (SQLite, in process) and real Asset objects."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from operators import dag_steps


@pytest.fixture
def mlc(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def test_registered_model_is_created_once_and_found_after(mlc):
    first = dag_steps.registered_model(mlc, "sft-model", description="made by the test")
    again = dag_steps.registered_model(mlc, "sft-model", description="not used")
    assert first.name == again.name == "sft-model"
    assert mlc.get_registered_model("sft-model").description == "made by the test"
    assert [m.name for m in mlc.search_registered_models()] == ["sft-model"]


def test_registry_errors_other_than_a_missing_model_are_raised(mlc):
    """Only RESOURCE_DOES_NOT_EXIST means "create it"; a bad name is the caller's error."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as err:
        dag_steps.registered_model(mlc, "", description="x")
    assert err.value.error_code != "RESOURCE_DOES_NOT_EXIST"
    assert mlc.search_registered_models() == []


def test_version_of_run_finds_the_version_a_run_registered(mlc):
    dag_steps.registered_model(mlc, "m", description="d")
    exp = mlc.create_experiment("e")
    run = mlc.create_run(exp).info.run_id
    other = mlc.create_run(exp).info.run_id
    assert dag_steps.version_of_run(mlc, "m", run) is None
    made = mlc.create_model_version("m", "s3://bucket/m", run_id=run)
    assert dag_steps.version_of_run(mlc, "m", run).version == made.version
    assert dag_steps.version_of_run(mlc, "m", other) is None


def test_gpu_hours_totals_results_and_skips_skipped_tasks():
    assert dag_steps.gpu_hours([{"gpu_hours": 1.23456}, None, {"gpu_hours": None}, {"gpu_hours": "0.5"}, {}]) == 1.7346


def test_asset_events_of_the_trigger_else_of_the_inlets():
    from operators.assets import SFT_CHECKPOINT, SFT_DATA

    mine, theirs = SimpleNamespace(extra={"n": 1}), SimpleNamespace(extra={"n": 2})
    triggering = {SFT_DATA: [theirs], SFT_CHECKPOINT: [mine]}
    assert dag_steps.asset_events(SFT_CHECKPOINT, triggering) == [mine]
    assert dag_steps.asset_events(SFT_DATA, {}, {SFT_DATA: [theirs, mine]}) == [theirs, mine]
    assert dag_steps.asset_events(SFT_DATA, None) == []
    # Triggered by another asset: the inlets of this one are read.
    assert dag_steps.asset_events(SFT_DATA, {SFT_CHECKPOINT: [mine]}, {SFT_DATA: [theirs]}) == [theirs]
