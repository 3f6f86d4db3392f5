"""One MLflow run per DAG run, found again by its tags so a retried task reuses it.

The tracking URI comes from the profile's MLflow connection (``AIRFLOW_CONN_MLFLOW_LOCAL`` on the
local stack) or ``MLFLOW_TRACKING_URI``. mlflow is imported inside the functions: DAG files
import this module and must stay cheap to parse.
"""
from __future__ import annotations

import os
from typing import Any

TAG_DAG = "airflow.dag_id"
TAG_RUN = "airflow.dag_run_id"


def tracking_uri(conn_id: str | None) -> str:
    if conn_id:
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:
            conn = None
        if conn is not None and conn.host:
            schema = conn.schema or "http"
            port = f":{conn.port}" if conn.port else ""
            return f"{schema}://{conn.host}{port}"
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RuntimeError(f"No MLflow server: connection '{conn_id}' is not defined and MLFLOW_TRACKING_URI is unset")
    return uri


def client(conn_id: str | None):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(conn_id)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlc, name: str) -> str:
    exp = mlc.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlc.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return mlc.create_experiment(name)
    except Exception:
        # Another task created it between our lookup and create.
        return mlc.get_experiment_by_name(name).experiment_id


def run_for_dag_run(mlc, experiment: str, dag_id: str, dag_run_id: str, tags: dict[str, str] | None = None,
                    run_name: str | None = None) -> str:
    """The MLflow run id of this DAG run, creating it on first use."""
    exp_id = experiment_id(mlc, experiment)
    quoted = dag_run_id.replace("'", "\\'")
    found = mlc.search_runs([exp_id], filter_string=f"tags.`{TAG_DAG}` = '{dag_id}' and tags.`{TAG_RUN}` = '{quoted}'",
                            max_results=1)
    if found:
        return found[0].info.run_id
    all_tags = {TAG_DAG: dag_id, TAG_RUN: dag_run_id, **(tags or {})}
    run = mlc.create_run(exp_id, tags=all_tags, run_name=run_name)
    return run.info.run_id


def log_params_once(mlc, run_id: str, params: dict[str, Any]) -> None:
    """MLflow refuses to change a logged param; a retry logs only what is new."""
    existing = mlc.get_run(run_id).data.params
    from mlflow.entities import Param

    new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
    if new:
        mlc.log_batch(run_id, params=new)


def log_metrics(mlc, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log metrics; a retried task that logs the same value at the same step adds no duplicate."""
    from mlflow.entities import Metric
    import time

    have = mlc.get_run(run_id).data.metrics
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if have.get(k) != float(v) or step != 0]
    if batch:
        mlc.log_batch(run_id, metrics=batch)


def run_url(mlc, run_id: str) -> str:
    run = mlc.get_run(run_id)
    base = tracking_uri(None) if not getattr(mlc, "tracking_uri", None) else mlc.tracking_uri
    return f"{base.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
