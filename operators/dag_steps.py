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
