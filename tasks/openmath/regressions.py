"""Regression checks for nightly re-evaluation: compare a run with the model's previous nightly run
and, for released models, with the published numbers.

A **regression** is a drop that is both statistically significant and large enough to matter:

* Against the previous nightly run, with per-problem data on both sides, each benchmark x mode is
  a paired test (exact McNemar, :func:`tasks.comparison.stats.mcnemar_exact`). The p-values of all of a
  model's tests are adjusted with Holm's step-down method (:func:`tasks.comparison.stats.holm`), which keeps
  the chance of any false alarm per model at ``alpha`` without assuming the tests independent. A
  metric regressed when its adjusted p-value is below ``alpha`` and it fell by more than
  ``min_effect`` points.
* Against numbers without per-problem data (published numbers, or a previous run that kept no
  predictions) there is no paired test; the run's own Wilson interval at level ``1 - alpha``
  (:func:`tasks.comparison.stats.wilson_interval`) stands in: a regression is a reference value above the
  interval's upper end and more than ``min_effect`` points above the run's accuracy. Those are
  not multiplicity-corrected (an interval is not a p-value); the report says which rule applied.

Only what both sides measured is compared. A metric the reference has and this run lacks is not
a regression (a nightly run that evaluates greedy only is not worse than a published
majority@50); it is listed in the report as "not evaluated", so nobody mistakes it for a pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from tasks.comparison.stats import holm, wilson_interval

# Published accuracies (% correct) of the released OpenMath models, greedy and majority@50
# (NeMo-Skills v0.1.1 README and the model cards; docs/recipes/openmath.md §11). Keys are our metric names.
PUBLISHED: dict[str, dict[str, float]] = {
    "nvidia/OpenMath-CodeLlama-7b-Python-hf": {"gsm8k.greedy.correct_answer": 75.9, "math.greedy.correct_answer": 43.6,
                                               "gsm8k.majority_at_50.correct_answer": 84.8,
                                               "math.majority_at_50.correct_answer": 55.6},
    "nvidia/OpenMath-Mistral-7B-v0.1-hf": {"gsm8k.greedy.correct_answer": 80.2, "math.greedy.correct_answer": 44.5,
                                           "gsm8k.majority_at_50.correct_answer": 86.9,
                                           "math.majority_at_50.correct_answer": 57.2},
    "nvidia/OpenMath-CodeLlama-13b-Python-hf": {"gsm8k.greedy.correct_answer": 78.8, "math.greedy.correct_answer": 45.5,
                                                "gsm8k.majority_at_50.correct_answer": 86.8,
                                                "math.majority_at_50.correct_answer": 57.6},
    "nvidia/OpenMath-CodeLlama-34b-Python-hf": {"gsm8k.greedy.correct_answer": 80.7, "math.greedy.correct_answer": 48.3,
                                                "gsm8k.majority_at_50.correct_answer": 88.0,
                                                "math.majority_at_50.correct_answer": 60.2},
    "nvidia/OpenMath-Llama-2-70b-hf": {"gsm8k.greedy.correct_answer": 84.7, "math.greedy.correct_answer": 46.3,
                                       "gsm8k.majority_at_50.correct_answer": 90.1,
                                       "math.majority_at_50.correct_answer": 58.3},
    "nvidia/OpenMath-CodeLlama-70b-Python-hf": {"gsm8k.greedy.correct_answer": 84.6, "math.greedy.correct_answer": 50.7,
                                                "gsm8k.majority_at_50.correct_answer": 90.8,
                                                "math.majority_at_50.correct_answer": 60.4},
}

ACCURACY = ".correct_answer"
FIRST_LOST = 10  # lost problems listed per metric in the report


@dataclass(frozen=True)
class Finding:
    """One compared metric. ``ci95`` is the interval of the difference (paired) or of the run's
    accuracy (interval rule); ``p_value``/``p_adjusted``/``gained``/``lost`` only for paired tests."""

    metric: str
    baseline: str
    before: float
    after: float
    regression: bool
    rule: str  # "paired" or "interval"
    ci: tuple[float, float]
    p_value: float | None = None
    p_adjusted: float | None = None
    gained: int | None = None
    lost: int | None = None
    first_lost: tuple[int, ...] = ()

    @property
    def diff(self) -> float:
        return self.after - self.before


@dataclass
class Verdict:
    """Everything the nightly report says about one model against one baseline."""

    baseline: str
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: list[str] = field(default_factory=list)  # the baseline has it, this run does not

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]


def metric_name(benchmark: str, mode: str) -> str:
    """``math.majority_at_50.correct_answer``, the MLflow name of a results.json accuracy."""
    return f"{benchmark}.{mode.replace('@', '_at_')}{ACCURACY}"


def published_for(model_name: str) -> dict[str, float] | None:
    """Published numbers when ``model_name`` ends with a released model's id (with or without -hf)."""
    for name, values in PUBLISHED.items():
        short = name.split("/", 1)[1]
        if model_name.rstrip("/").endswith((short, short.removesuffix("-hf"))):
            return values
    return None


def paired_verdict(rows: dict[str, dict[str, dict[str, Any]]], flips: dict[str, dict[str, dict[str, list[int]]]],
                   baseline: str, *, alpha: float = 0.05, min_effect: float = 1.0,
                   not_evaluated: list[str] | None = None) -> Verdict:
    """Findings from ``skillflow compare`` rows (A = the baseline run, B = tonight's run), Holm-adjusted."""
    keys = [(bench, mode) for bench, modes in rows.items() for mode in modes]
    adjusted = holm([rows[b][m]["p_value"] for b, m in keys])
    verdict = Verdict(baseline, not_evaluated=sorted(not_evaluated or []))
    for (bench, mode), p_adj in zip(keys, adjusted):
        r = rows[bench][mode]
        lost = flips.get(bench, {}).get(mode, {}).get("lost", [])
        regression = r["diff"] < 0 and p_adj < alpha and -r["diff"] > min_effect
        verdict.findings.append(Finding(
            metric_name(bench, mode), baseline, r["a"], r["b"], regression, "paired", tuple(r["ci95"]),
            r["p_value"], p_adj, r["gained"], r["lost"], tuple(lost[:FIRST_LOST])))
    return verdict


def interval_verdict(current: dict[str, float], reference: dict[str, float], baseline: str, *,
                     alpha: float = 0.05, min_effect: float = 1.0) -> Verdict:
    """Findings against bare numbers, by the run's own interval (see the module docstring).

    ``current`` holds MLflow metrics: ``<metric>`` and ``<metric without .correct_answer>.num_entries``
    give the interval (at level 1 - alpha, recomputed, so any level works)."""
    verdict = Verdict(baseline)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    for metric, expected in sorted(reference.items()):
        if not metric.endswith(ACCURACY):
            continue
        observed = current.get(metric)
        entries = current.get(metric[:-len(ACCURACY)] + ".num_entries")
        if observed is None or _nan(observed) or not entries:
            verdict.not_evaluated.append(metric)
            continue
        n = int(entries)
        low, high = wilson_interval(round(observed * n / 100.0), n, z=z)
        ci = (100.0 * low, 100.0 * high)
        regression = expected > ci[1] and expected - observed > min_effect
        verdict.findings.append(Finding(metric, baseline, float(expected), float(observed), regression,
                                        "interval", ci))
    return verdict


def _nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def format_report(model: str, verdicts: list[Verdict], *, alpha: float, min_effect: float) -> str:
    """The readable block of one model: per baseline, every compared metric, the regressions marked."""
    regressions = sum(len(v.regressions) for v in verdicts)
    rule = (f"significant drop (paired McNemar, Holm-corrected, alpha={alpha:g}; or reference outside the "
            f"run's {100 * (1 - alpha):g}% interval) larger than {min_effect:g} points")
    head = (f"{model}: {regressions} regression(s)" if regressions else f"{model}: no regression") + f" [{rule}]"
    lines = [head]
    for v in verdicts:
        lines.append(f"  vs {v.baseline}:")
        if not v.findings:
            lines.append("    nothing measured on both sides")
        for f in v.findings:
            mark = "REGRESSION" if f.regression else "ok"
            if f.rule == "paired":
                lines.append(f"    {mark:<10} {f.metric}: before {f.before:.2f}, after {f.after:.2f}, "
                             f"diff {f.diff:+.2f} [{f.ci[0]:+.2f}, {f.ci[1]:+.2f}], p={f.p_value:.3g} "
                             f"(Holm {f.p_adjusted:.3g}), lost {f.lost}, gained {f.gained}"
                             + (f"; first lost problems {list(f.first_lost)}" if f.regression and f.first_lost else ""))
            else:
                lines.append(f"    {mark:<10} {f.metric}: reference {f.before:.2f}, this run {f.after:.2f} "
                             f"(its {100 * (1 - alpha):g}% interval [{f.ci[0]:.2f}, {f.ci[1]:.2f}])")
        if v.not_evaluated:
            lines.append(f"    not evaluated by this run (not compared): {', '.join(v.not_evaluated)}")
    return "\n".join(lines)
