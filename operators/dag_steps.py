"""What every skillflow DAG's Python steps share: the cluster profile of the form, its Slurm hook,
the code version, and the MLflow run of the DAG run with the form logged as params."""
from __future__ import annotations

import json
from typing import Any

# The Slurm operators' ``profile`` field: the form's value, or empty (a cleared form field arrives
# as None) so that the operator loads the deployment's profile.
PROFILE_TEMPLATE = "{{ params.profile or '' }}"


def dag_params(dag_id: str) -> dict:
    """The Airflow ``Param``s of a DAG, generated from its declared form (:mod:`tasks.forms`), in
    the form's order: what the UI shows and what ``from_params`` validates against are one list."""
    from airflow.sdk import Param

    from tasks.forms import form_of

    return {f.name: Param(f.default, **f.param_kwargs()) for f in form_of(dag_id).fields}


def profile_of(params: dict[str, Any]):
    """The profile the form names, or the deployment's when the form leaves it empty."""
    from tasks.profiles import load_profile

    return load_profile(params.get("profile") or None)


def slurm_hook(profile):
    from operators.slurm.hook import SlurmHook

    return SlurmHook(profile.ssh_conn_id, accounting=profile.accounting)


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skillflow")
    except PackageNotFoundError:
        return "unknown"


def open_tracked_run(profile, params: dict[str, Any], dag_run, tags: dict[str, str], run_name: str,
                     skip_params: tuple[str, ...] = ("mlflow_tags",)) -> tuple[Any, str]:
    """(MLflow client, run id) of this DAG run, created on first use; the form becomes its params."""
    from operators.tracking import mlflow_runs

    mlc = mlflow_runs.client(profile.mlflow_conn_id)
    run_id = mlflow_runs.run_for_dag_run(
        mlc, params["experiment"], dag_run.dag_id, dag_run.run_id,
        tags={"skillflow.profile": profile.name, "skillflow.code_version": code_version(),
              "mlflow.runName": run_name, **tags})
    mlflow_runs.log_params_once(mlc, run_id, {k: json.dumps(v) if isinstance(v, (list, dict)) else v
                                              for k, v in params.items() if k not in skip_params})
    return mlc, run_id


# ------------------------------------------------------------------ the plan step of every planned DAG

def fail(message: str):
    """The error that fails a task without retries (a bad param does not get better by retrying)."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def check_form(dag_id: str, params: dict[str, Any]) -> None:
    """Fail the run when its conf names a param the DAG's form does not declare (a misspelling
    would otherwise run with the default), naming it and listing the valid ones."""
    from tasks.forms import PlanError, form_of

    try:
        form_of(dag_id).check(params)
    except PlanError as exc:
        raise fail(f"Invalid params: {exc}") from None


def form_profile(dag_id: str, params: dict[str, Any]):
    """The first step of every DAG's first task: the form checked, then its cluster profile."""
    check_form(dag_id, params)
    return profile_of(params)


def plan_or_fail(dag_id: str, params: dict[str, Any], profile, dag_run, on_fail=None, **context: Any) -> dict:
    """The plan ``skillflow plan`` renders for this run, with its plan-time checks; a bad param
    fails the run (no retry) with the message naming it, after ``on_fail()`` when given."""
    from tasks.forms import PlanError
    from tasks.plan import PlanCheckError, plan_dag

    try:
        return plan_dag(dag_id, params, profile, run_id=dag_run.run_id, **context).details
    except (PlanError, PlanCheckError) as exc:
        if on_fail is not None:
            on_fail()
        raise fail(f"Invalid params: {exc}") from None


# ------------------------------------------------------------------ after the jobs

def read_job_json(hook, path: str, what: str) -> Any:
    """The JSON a finished job wrote on the cluster. A missing (or empty) file raises
    ``FileNotFoundError``, which Airflow retries: a shared file system can show a file late; the
    message names the path and the job that should have written it."""
    text = hook.read_text(path)
    if not text:
        raise FileNotFoundError(f"{path} is missing on the cluster: the {what} job did not write it")
    return json.loads(text)


def gpu_hours(results) -> float:
    """GPU-hours of the Slurm tasks' results (``None`` for a skipped task), rounded to 4 places."""
    return round(sum(float((r or {}).get("gpu_hours") or 0) for r in results), 4)


def registered_model(mlc, name: str, description: str):
    """The MLflow registered model ``name``, created on first use."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        return mlc.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
    return mlc.create_registered_model(name, description=description)


def version_of_run(mlc, name: str, run_id: str):
    """The version of ``name`` registered from ``run_id``, if any: a retried step reuses it."""
    return next((v for v in mlc.search_model_versions(f"name = '{name}'") if v.run_id == run_id), None)


def asset_events(asset, triggering_asset_events=None, inlet_events=None) -> list:
    """The events of ``asset`` that triggered this run, else (given ``inlet_events``) all of its
    events, oldest first."""
    events = []
    for key, evs in (triggering_asset_events or {}).items():
        if getattr(key, "name", None) == asset.name or str(key) in (asset.name, asset.uri):
            events = list(evs)
    if not events and inlet_events is not None:
        try:
            events = list(inlet_events[asset])
        except (KeyError, TypeError):
            events = []
    return events
