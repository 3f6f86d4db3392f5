"""Accuracy per benchmark with 95% interval bars, as a PNG for the MLflow UI (one run, or A beside B).

The MLflow UI shows PNG artifacts inline, so a user sees the intervals next to the numbers
without downloading anything. matplotlib comes with mlflow; it is imported inside, with the
non-interactive Agg backend, so workers without a display can draw.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.comparison.stats import wilson_interval

# (accuracy %, low %, high %) per "benchmark mode" label, per series (run)
Series = dict[str, tuple[float, float, float]]


def series_from_results(results: dict[str, dict[str, dict[str, Any]]]) -> Series:
    """One run's accuracies and Wilson intervals from its results.json (intervals recomputed when absent)."""
    out: Series = {}
    for bench, modes in results.items():
        for mode, m in modes.items():
            acc, n = float(m["correct_answer"]), int(m["num_entries"])
            if "correct_answer.ci_low" in m:
                low, high = float(m["correct_answer.ci_low"]), float(m["correct_answer.ci_high"])
            else:
                lo, hi = wilson_interval(round(acc * n / 100), n)
                low, high = 100 * lo, 100 * hi
            out[f"{bench} {mode}"] = (acc, low, high)
    return out


def series_from_comparison(rows: dict[str, dict[str, dict[str, Any]]]) -> tuple[Series, Series]:
    """Both sides of a comparison, each with its own interval: ``a_ci``/``b_ci`` when the row has
    them (APPS' mean shares), else the Wilson interval of the accuracy."""
    a: Series = {}
    b: Series = {}
    for bench, modes in rows.items():
        for mode, r in modes.items():
            n = int(r["n"])
            for side, acc, given in ((a, r["a"], r.get("a_ci")), (b, r["b"], r.get("b_ci"))):
                if given:
                    side[f"{bench} {mode}"] = (acc, given[0], given[1])
                    continue
                lo, hi = wilson_interval(round(acc * n / 100), n)
                side[f"{bench} {mode}"] = (acc, 100 * lo, 100 * hi)
    return a, b


TITLE_POINTS = 10


def wrap_title(title: str, figure_width_in: float, points: float = TITLE_POINTS) -> str:
    """The title broken into lines that fit the figure's width: run and model names make long
    titles, and matplotlib clips a title wider than its figure instead of wrapping it."""
    import textwrap

    # A character of the default font averages about 0.6 em; keep a margin on both sides.
    chars = max(16, int(0.9 * figure_width_in * 72 / (0.6 * points)))
    return "\n".join(textwrap.wrap(title, chars)) or title


def accuracy_figure(series: dict[str, Series], title: str):
    """The matplotlib figure of :func:`accuracy_plot` (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(label for s in series.values() for label in s))
    width = 0.8 / max(1, len(series))
    fig_width = max(4.0, 1.2 * len(labels) * max(1, len(series)) ** 0.5 + 2)
    fig, ax = plt.subplots(figsize=(fig_width, 4.2))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j, label in enumerate(labels) if label in values]
        present = [label for label in labels if label in values]
        acc = [values[label][0] for label in present]
        err = [[values[label][0] - values[label][1] for label in present],
               [values[label][2] - values[label][0] for label in present]]
        ax.bar(xs, acc, width, yerr=err, capsize=4, label=name)
        for x, v in zip(xs, acc):
            ax.annotate(f"{v:.1f}", (x, v), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel("accuracy, % (bars: 95% Wilson interval)")
    ax.set_ylim(0, 105)
    ax.set_title(wrap_title(title, fig_width), fontsize=TITLE_POINTS)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_plot(series: dict[str, Series], path: Path | str, title: str) -> Path:
    """Grouped bars (one group per benchmark and mode, one bar per series) with interval whiskers."""
    import matplotlib.pyplot as plt

    fig = accuracy_figure(series, title)
    out = Path(path)
    try:
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
