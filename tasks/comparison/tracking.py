"""A comparison as an MLflow run of its own, so it is found, linked and looked at in the MLflow UI.

The run is tagged with both compared run ids (``skillflow.compare.run_a`` / ``run_b``) and holds:
per benchmark and mode the metrics ``<bench>.<mode>.diff``, ``.ci_low``, ``.ci_high``,
``.p_value``, ``.gained``, ``.lost`` (mode ``@`` written ``_at_`` as MLflow requires); the table
as an MLflow table artifact (``comparison_table.json``, shown as a table in the UI) and as text;
the flipped problems (``flips.json``); and ``plots/accuracy_a_vs_b.png``, accuracy per benchmark
with 95% interval bars, A beside B.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

TAG_KIND = "skillflow.kind"
TAG_A, TAG_B = "skillflow.compare.run_a", "skillflow.compare.run_b"


def comparison_metrics(rows: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for bench, modes in rows.items():
        for mode, r in modes.items():
            key = f"{bench}.{mode.replace('@', '_at_')}"
            metrics.update({f"{key}.diff": r["diff"], f"{key}.ci_low": r["ci95"][0], f"{key}.ci_high": r["ci95"][1],
                            f"{key}.p_value": r["p_value"], f"{key}.gained": r["gained"], f"{key}.lost": r["lost"],
                            f"{key}.a": r["a"], f"{key}.b": r["b"]})
    return metrics


def existing_comparison(mlc, experiment_id: str, run_a: str, run_b: str) -> str | None:
    """The finished comparison run of these two runs, if one was logged (a retried task reuses it)."""
    def quoted(text: str) -> str:
        return text.replace("'", "\\'")

    found = mlc.search_runs([experiment_id], filter_string=(
        f"tags.`{TAG_KIND}` = 'comparison' and tags.`{TAG_A}` = '{quoted(run_a)}' and tags.`{TAG_B}` = '{quoted(run_b)}' "
        "and attributes.status = 'FINISHED'"), max_results=1)
    return found[0].info.run_id if found else None


def log_comparison(mlc, experiment_id: str, rows: dict[str, dict[str, dict[str, Any]]],
                   flips: dict[str, Any], table: str, *, run_a: str, run_b: str, label_a: str = "A",
                   label_b: str = "B", tags: dict[str, str] | None = None) -> str:
    """Create the comparison run (finished) and return its id; an earlier finished one is reused."""
    from mlflow.entities import Metric

    earlier = existing_comparison(mlc, experiment_id, run_a, run_b)
    if earlier:
        return earlier
    from tasks.comparison.plots import accuracy_plot, series_from_comparison

    run = mlc.create_run(experiment_id, run_name=f"compare {label_a} vs {label_b}"[:250],
                         tags={TAG_KIND: "comparison", TAG_A: run_a, TAG_B: run_b, **(tags or {})})
    run_id = run.info.run_id
    try:
        metrics = [Metric(k, float(v), 0, 0) for k, v in comparison_metrics(rows).items()]
        for start in range(0, len(metrics), 900):  # MLflow takes at most 1,000 metrics per batch
            mlc.log_batch(run_id, metrics=metrics[start:start + 900])
        table_rows = [{"benchmark": bench, "mode": mode, "n": r["n"], "a": r["a"], "b": r["b"], "diff": r["diff"],
                       "ci_low": r["ci95"][0], "ci_high": r["ci95"][1], "p_value": r["p_value"],
                       "gained": r["gained"], "lost": r["lost"]}
                      for bench, modes in rows.items() for mode, r in modes.items()]
        mlc.log_table(run_id, data={k: [row[k] for row in table_rows] for k in table_rows[0]},
                      artifact_file="comparison_table.json")
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
            Path(tmp, "flips.json").write_text(json.dumps(flips, indent=1) + "\n")
            Path(tmp, "comparison.txt").write_text(table)
            plots = Path(tmp, "plots")
            plots.mkdir()
            a, b = series_from_comparison(rows)
            accuracy_plot({label_a: a, label_b: b}, plots / "accuracy_a_vs_b.png",
                          f"{label_a} vs {label_b}: accuracy per benchmark")
            mlc.log_artifacts(run_id, tmp)
    except Exception:
        mlc.set_terminated(run_id, "FAILED")
        raise
    mlc.set_terminated(run_id, "FINISHED")
    return run_id
