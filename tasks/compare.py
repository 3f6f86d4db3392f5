"""Paired comparison of two evaluation runs on the same problems (``skillflow compare A B``).

Both runs answered the same benchmark problems, so the question a user asks -- did B get better
than A? -- is answered per problem, not by subtracting two percentages: for every benchmark and
mode present in both (``greedy``, ``majority@k``, ``pass@k``, named as in ``results.json``) the
result holds ``n`` (paired problems), ``a`` and ``b`` (accuracy, percent), ``diff`` (b - a,
points), ``ci95`` (paired bootstrap interval of the difference over problems, 10,000 resamples,
fixed seed), ``p_value`` (exact two-sided McNemar on the discordant pairs), ``gained`` (wrong in
A, right in B) and ``lost`` (right in A, wrong in B). See :mod:`tasks.stats` for the methods.

Problems pair by position in the benchmark file; every position must hold the same question on
both sides (:func:`tasks.metrics.problem_identity`) and both sides the same number of problems,
or the comparison stops with an error naming the benchmark. Flipped problems are listed by their
0-based position in the benchmark file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.stats import mcnemar_exact, paired_bootstrap_ci
from tasks.summarize import BenchmarkOutcomes, load_benchmark


class CompareError(ValueError):
    """The two runs cannot be compared; the message names the benchmark (and position)."""


@dataclass
class Comparison:
    """``rows``: {benchmark: {mode: statistics}}; ``flips``: {benchmark: {mode: {gained, lost}}}."""

    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    flips: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def paired_statistics(a: list[bool], b: list[bool]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The comparison row of two per-problem correctness vectors, and the flipped positions."""
    n = len(a)
    gained = [i for i in range(n) if b[i] and not a[i]]
    lost = [i for i in range(n) if a[i] and not b[i]]
    acc_a, acc_b = 100.0 * sum(a) / n, 100.0 * sum(b) / n
    low, high = paired_bootstrap_ci(a, b)
    row = {"n": n, "a": acc_a, "b": acc_b, "diff": acc_b - acc_a, "ci95": [100.0 * low, 100.0 * high],
           "p_value": mcnemar_exact(len(gained), len(lost)), "gained": len(gained), "lost": len(lost)}
    return row, {"gained": gained, "lost": lost}


def check_paired(name: str, a: BenchmarkOutcomes, b: BenchmarkOutcomes) -> None:
    """Refuse two benchmarks whose problems do not line up position by position."""
    if len(a.identities) != len(b.identities):
        raise CompareError(f"benchmark '{name}': A has {len(a.identities)} problems, B has {len(b.identities)}; "
                           "problems pair by position, so both runs must use the same benchmark file")
    for i, (x, y) in enumerate(zip(a.identities, b.identities)):
        if x != y:
            raise CompareError(f"benchmark '{name}': problem {i} (0-based line of the benchmark file) differs "
                               f"between A and B ({x[:60]!r} vs {y[:60]!r}); the runs used different or "
                               "reordered benchmark files")


def compare_outcomes(a: dict[str, BenchmarkOutcomes], b: dict[str, BenchmarkOutcomes]) -> Comparison:
    """Compare every benchmark and mode present on both sides; what only one side has is noted."""
    result = Comparison()
    for side, mine, other in (("A", a, b), ("B", b, a)):
        only = sorted(set(mine) - set(other))
        if only:
            result.notes.append(f"only in {side} (not compared): {', '.join(only)}")
    for name in sorted(set(a) & set(b)):
        check_paired(name, a[name], b[name])
        for mode in a[name].correct:
            if mode not in b[name].correct:
                result.notes.append(f"{name}: mode {mode} only in A (not compared)")
                continue
            row, flips = paired_statistics(a[name].correct[mode], b[name].correct[mode])
            result.rows.setdefault(name, {})[mode] = row
            result.flips.setdefault(name, {})[mode] = flips
        for mode in b[name].correct:
            if mode not in a[name].correct:
                result.notes.append(f"{name}: mode {mode} only in B (not compared)")
    if not result.rows:
        raise CompareError("the two runs share no benchmark and mode to compare")
    return result


def load_results_dir(results_dir: os.PathLike | str, *, allow_incomplete: bool = False) -> dict[str, BenchmarkOutcomes]:
    """Every benchmark folder of a results folder, as ``skillflow summarize`` reads it."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        outcomes = load_benchmark(folder, allow_incomplete=allow_incomplete)
        if outcomes is not None:
            found[folder.name] = outcomes
    if not found:
        raise FileNotFoundError(f"{root}: no <benchmark>/output-greedy.jsonl or output-rs*.jsonl found")
    return found


def format_comparison(comparison: Comparison, label_a: str = "A", label_b: str = "B") -> str:
    """The printed table: one row per benchmark and mode, then the notes."""
    header = ["benchmark", "mode", "n", label_a[:24], label_b[:24], "diff", "ci95", "p_value", "gained", "lost"]
    rows = [header]
    for bench, modes in comparison.rows.items():
        for mode, r in modes.items():
            rows.append([bench, mode, str(r["n"]), f"{r['a']:.2f}", f"{r['b']:.2f}", f"{r['diff']:+.2f}",
                         f"[{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}]", _p(r["p_value"]), str(r["gained"]),
                         str(r["lost"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines + [f"note: {n}" for n in comparison.notes]) + "\n"


def _p(value: float) -> str:
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"
