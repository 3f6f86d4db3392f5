"""Steps of ``openmath_nightly``: which models to re-evaluate, and how their numbers moved."""
from __future__ import annotations

from typing import Any

from tasks.regressions import find_regressions, format_report, published_for

NIGHTLY_TAG = "skillflow.nightly_model"


def models_with_alias(alias: str, mlflow_conn_id: str | None) -> list[dict[str, str]]:
    """Registered model versions that carry ``alias``; the version's source is the cluster path."""
    from operators.tracking import mlflow_runs

    mlc = mlflow_runs.client(mlflow_conn_id)
    found = []
    for registered in mlc.search_registered_models():
        try:
            version = mlc.get_model_version_by_alias(registered.name, alias)
        except Exception:  # no such alias on this model
            continue
        path = (version.tags or {}).get("cluster_path") or version.source
        found.append({"name": registered.name, "version": str(version.version), "model_path": path})
    return found


def eval_run_id(nightly_run_id: str, index: int) -> str:
    """The openmath_eval run id the nightly DAG gives its ``index``-th model (see the DAG)."""
    return f"nightly__{nightly_run_id}__m{index}"


def eval_confs(models: list[dict[str, str]], overrides: dict[str, Any], experiment: str) -> list[dict[str, Any]]:
    return [{**overrides, "model": m["model_path"], "experiment": experiment,
             "mlflow_tags": {NIGHTLY_TAG: m["name"], "skillflow.model_version": m["version"]}} for m in models]


def compare(models: list[dict[str, str]], triggered_run_ids: list[str], experiment: str, tolerance: float,
            mlflow_conn_id: str | None) -> str:
    """Compare each model's new run with its previous nightly run and the published numbers.

    Raises with the whole report when any model regressed or its evaluation produced no run.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from operators.tracking import mlflow_runs

    mlc = mlflow_runs.client(mlflow_conn_id)
    exp_id = mlflow_runs.experiment_id(mlc, experiment)
    reports, failed = [], False
    for model, dag_run_id in zip(models, triggered_run_ids):
        runs = mlc.search_runs([exp_id], filter_string=f"tags.`{mlflow_runs.TAG_RUN}` = '{dag_run_id}'", max_results=1)
        if not runs or not runs[0].data.metrics:
            reports.append(f"{model['name']}: evaluation run {dag_run_id} logged no metrics")
            failed = True
            continue
        current = runs[0]
        previous = mlc.search_runs(
            [exp_id], filter_string=f"tags.`{NIGHTLY_TAG}` = '{model['name']}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=5)
        previous = [r for r in previous if r.info.run_id != current.info.run_id]
        prev_metrics = previous[0].data.metrics if previous else None
        regressions = find_regressions(current.data.metrics, previous=prev_metrics,
                                       previous_label=f"previous nightly run {previous[0].info.run_id}" if previous else "",
                                       published=published_for(model["model_path"]), tolerance=tolerance)
        reports.append(format_report(f"{model['name']} v{model['version']}", regressions, tolerance))
        failed = failed or bool(regressions)
    text = "\n".join(reports) if reports else "no model carries the alias; nothing evaluated"
    print(text)
    if failed:
        raise AirflowFailException("Nightly regressions:\n" + text)
    return text
