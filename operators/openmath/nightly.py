"""Steps of ``openmath_nightly``: which models to re-evaluate, and how their numbers moved.

The statistics live in :mod:`tasks.openmath.regressions` and :mod:`tasks.openmath.compare`; this module finds the
runs in MLflow, brings their predictions back from S3 and turns the verdicts into a task result
(or a failure with the whole report).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tasks.openmath.regressions import Verdict, interval_verdict, metric_name, paired_verdict, published_for, format_report

NIGHTLY_TAG = "skillflow.nightly_model"


def models_with_alias(alias: str, mlflow_conn_id: str | None) -> list[dict[str, str]]:
    """Registered model versions that carry ``alias``; the version's source is the cluster path.

    The alias is read from each registered model's own alias table, so no lookup is expected to
    fail: a registry that cannot be read fails the task instead of looking like "no models"."""
    from operators.tracking import mlflow_runs

    mlc = mlflow_runs.client(mlflow_conn_id)
    found = []
    for registered in _registered_models(mlc):
        version_no = (registered.aliases or {}).get(alias)
        if version_no is None:
            continue
        version = mlc.get_model_version(registered.name, str(version_no))
        path = (version.tags or {}).get("cluster_path") or version.source
        found.append({"name": registered.name, "version": str(version.version), "model_path": path})
    return found


def _registered_models(mlc):
    token = None
    while True:
        page = mlc.search_registered_models(max_results=100, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def eval_run_id(nightly_run_id: str, index: int) -> str:
    """The openmath_eval run id the nightly DAG gives its ``index``-th model (see the DAG)."""
    return f"nightly__{nightly_run_id}__m{index}"


def eval_confs(models: list[dict[str, str]], overrides: dict[str, Any], experiment: str) -> list[dict[str, Any]]:
    return [{**overrides, "model": m["model_path"], "experiment": experiment,
             "mlflow_tags": {NIGHTLY_TAG: m["name"], "skillflow.model_version": m["version"]}} for m in models]


def compare(models: list[dict[str, str]], triggered_run_ids: list[str], experiment: str, *, alpha: float = 0.05,
            min_effect: float = 1.0, mlflow_conn_id: str | None, aws_conn_id: str | None = None) -> dict[str, Any]:
    """Compare each model's new run with its previous nightly run and the published numbers.

    Returns ``{"models": [per-model outcome], "report": text}``; each outcome has a ``status``:
    ``pass``, ``regressed``, ``no_metrics`` (the evaluation logged nothing) or ``no_baseline``
    (first night and no published numbers: nothing was compared). Raises with the whole report
    when any model regressed or logged no metrics.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from operators.tracking import mlflow_runs

    mlc = mlflow_runs.client(mlflow_conn_id)
    exp_id = mlflow_runs.experiment_id(mlc, experiment)
    outcomes, reports = [], []
    s3 = _LazyS3(aws_conn_id)
    for model, dag_run_id in zip(models, triggered_run_ids):
        label = f"{model['name']} v{model['version']}"
        runs = mlc.search_runs([exp_id], filter_string=f"tags.`{mlflow_runs.TAG_RUN}` = '{dag_run_id}'", max_results=1)
        if not runs or not runs[0].data.metrics:
            reports.append(f"{label}: evaluation run {dag_run_id} logged no metrics")
            outcomes.append({"name": model["name"], "version": model["version"], "status": "no_metrics",
                             "dag_run_id": dag_run_id})
            continue
        current = runs[0]
        previous = _previous_run(mlc, exp_id, model["name"], current)
        verdicts, notes = [], []
        if previous is not None:
            verdicts.append(_against_previous(current, previous, s3, alpha, min_effect, notes,
                                              log_to=(mlc, exp_id, label)))
        paired = bool(verdicts) and any(f.rule == "paired" for f in verdicts[0].findings)
        published = published_for(model["model_path"])
        if published:
            verdicts.append(interval_verdict(current.data.metrics, published, "published numbers",
                                             alpha=alpha, min_effect=min_effect))
        if not verdicts:
            status = "no_baseline"
            text = f"{label}: nothing to compare with (first nightly run, no published numbers)"
        else:
            status = "regressed" if any(v.regressions for v in verdicts) else "pass"
            text = format_report(label, verdicts, alpha=alpha, min_effect=min_effect)
        reports.append("\n".join([text] + [f"  note: {n}" for n in notes]))
        outcomes.append({
            "name": model["name"], "version": model["version"], "status": status, "run_id": current.info.run_id,
            "previous_run_id": previous.info.run_id if previous is not None else None,
            "paired_with_previous": paired,
            "compared": {v.baseline: [f.metric for f in v.findings] for v in verdicts},
            "regressions": [{"metric": f.metric, "baseline": f.baseline, "before": f.before, "after": f.after,
                             "ci": list(f.ci), "p_value": f.p_value, "p_adjusted": f.p_adjusted,
                             "lost": f.lost, "gained": f.gained, "first_lost": list(f.first_lost)}
                            for v in verdicts for f in v.regressions],
            "not_evaluated": {v.baseline: v.not_evaluated for v in verdicts if v.not_evaluated},
            "notes": notes})
    text = "\n".join(reports) if reports else "no model carries the alias; nothing evaluated"
    print(text)
    if any(o["status"] in ("regressed", "no_metrics") for o in outcomes):
        raise AirflowFailException("Nightly regressions:\n" + text)
    return {"models": outcomes, "report": text}


def _previous_run(mlc, exp_id: str, model_name: str, current):
    quoted = model_name.replace("'", "\\'")
    found = mlc.search_runs([exp_id], filter_string=f"tags.`{NIGHTLY_TAG}` = '{quoted}' and attributes.status = 'FINISHED'",
                            order_by=["attributes.start_time DESC"], max_results=5)
    found = [r for r in found if r.info.run_id != current.info.run_id
             and r.info.start_time <= current.info.start_time and r.data.metrics]
    return found[0] if found else None


def _against_previous(current, previous, s3, alpha: float, min_effect: float, notes: list[str],
                      log_to: tuple | None = None) -> Verdict:
    """Paired per problem when both runs kept their predictions; otherwise by the run's interval.

    A paired comparison is also logged as its own MLflow run (``log_to``: client, experiment id,
    model label), tagged with both run ids, so the night's table and plot are in the UI."""
    from tasks.comparison.tracking import log_comparison
    from tasks.openmath.compare import CompareError, compare_outcomes, format_comparison, load_results_dir
    from tasks.openmath.run_sources import RunSourceError, has_predictions, fetch_predictions

    label = f"previous nightly run {previous.info.run_id}"
    if has_predictions(current) and has_predictions(previous):
        with tempfile.TemporaryDirectory(prefix="nightly-compare-") as tmp:
            try:
                before = load_results_dir(fetch_predictions(previous, s3.client, Path(tmp, "a")))
                after = load_results_dir(fetch_predictions(current, s3.client, Path(tmp, "b")))
                comparison = compare_outcomes(before, after)
            except (CompareError, RunSourceError) as exc:
                notes.append(f"no paired comparison with {previous.info.run_id}: {exc}; "
                             "compared its numbers against this run's interval instead")
            else:
                if log_to is not None:
                    mlc, exp_id, model_label = log_to
                    names = (f"previous {previous.info.run_id[:8]}", f"tonight {current.info.run_id[:8]}")
                    run_id = log_comparison(mlc, exp_id, comparison.rows, comparison.flips,
                                            format_comparison(comparison, *names), run_a=previous.info.run_id,
                                            run_b=current.info.run_id, label_a=names[0], label_b=names[1],
                                            tags={"skillflow.nightly_comparison": model_label})
                    notes.append(f"paired comparison logged as MLflow run {run_id}")
                return paired_verdict(comparison.rows, comparison.flips, label, alpha=alpha, min_effect=min_effect,
                                      not_evaluated=[metric_name(b, m) for b, m in comparison.only_in_a])
    else:
        notes.append(f"run {previous.info.run_id} or this run kept no predictions zip: compared by this run's interval")
    return interval_verdict(current.data.metrics, previous.data.metrics, label, alpha=alpha, min_effect=min_effect)


class _LazyS3:
    """The S3 client, made on first use: runs without predictions need no AWS connection."""

    def __init__(self, aws_conn_id: str | None):
        self.aws_conn_id, self._client = aws_conn_id, None

    @property
    def client(self):
        if self._client is None:
            from operators.tracking.s3 import s3_client

            self._client = s3_client(self.aws_conn_id)
        return self._client
