"""APPS base vs SFT, paired per problem, in total and per difficulty.

Each problem's pass@1 is its share of passing samples (c / n). For each group (``total``, then
each difficulty) the row holds ``n`` (paired problems), ``a``/``b`` (mean pass@1, percent, base
and SFT), ``diff`` (points), ``ci95`` (paired bootstrap over problems, 10,000 resamples, fixed
seed), ``p_value`` -- an exact two-sided **sign test** on the problems whose share changed (ties
dropped; :func:`tasks.comparison.stats.sign_test`), chosen over a permutation test because it is exact and
deterministic and assumes nothing about the size of the changes -- and ``gained``/``lost``
(problems whose share rose/fell). ``a_ci``/``b_ci`` are each side's own bootstrap interval.

Rows come out as ``{"apps.<group>": {"pass@1": row}}`` so :mod:`tasks.comparison.tracking` logs them
like any other comparison.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.comparison.stats import paired_bootstrap_ci, sign_test
from tasks.tables import table


class PairingError(ValueError):
    """Base and SFT were not evaluated on the same problems."""


def problem_counts(results_jsonl: Path | str) -> dict[str, tuple[int, int]]:
    """``{problem_id: (samples, passed)}`` from an ``apps eval`` results.jsonl."""
    counts: dict[str, list[int]] = {}
    with open(results_jsonl, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                entry = counts.setdefault(str(rec["problem_id"]), [0, 0])
                entry[0] += 1
                entry[1] += int(bool(rec["passed"]))
    return {pid: (n, c) for pid, (n, c) in counts.items()}


def paired_apps(base: dict[str, tuple[int, int]], sft: dict[str, tuple[int, int]],
                difficulty: dict[str, str]) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, Any]]:
    """Comparison rows and flipped problems (ids whose share rose/fell) per group."""
    if set(base) != set(sft):
        only = sorted(set(base) ^ set(sft))
        raise PairingError(f"benchmark 'apps': base and SFT were evaluated on different problems "
                           f"({len(only)} differ, e.g. {only[:5]})")
    ids = sorted(base, key=_sort_key)
    groups = ["total"] + list(dict.fromkeys(difficulty.get(p, "unknown") for p in ids))
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    flips: dict[str, Any] = {}
    for group in groups:
        members = [p for p in ids if group == "total" or difficulty.get(p, "unknown") == group]
        a = [base[p][1] / base[p][0] for p in members]
        b = [sft[p][1] / sft[p][0] for p in members]
        low, high = paired_bootstrap_ci(a, b)
        p_value, up, down = sign_test(a, b)
        zeros = [0.0] * len(members)
        a_ci, b_ci = paired_bootstrap_ci(zeros, a), paired_bootstrap_ci(zeros, b)
        mean_a, mean_b = 100 * sum(a) / len(a), 100 * sum(b) / len(b)
        key = f"apps.{group}"
        rows[key] = {"pass@1": {"n": len(members), "a": mean_a, "b": mean_b, "diff": mean_b - mean_a,
                                "ci95": [100 * low, 100 * high], "p_value": p_value, "gained": up, "lost": down,
                                "a_ci": [100 * a_ci[0], 100 * a_ci[1]], "b_ci": [100 * b_ci[0], 100 * b_ci[1]]}}
        flips[key] = {"pass@1": {"gained": [p for p, x, y in zip(members, a, b) if y > x],
                                 "lost": [p for p, x, y in zip(members, a, b) if y < x]}}
    return rows, flips


def format_rows(rows: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A markdown table of the paired comparison (appended to the apps_sft comparison artifact)."""
    header = ("Group", "Problems", "Base", "SFT", "Diff (points)", "95% CI", "p (sign test)", "Rose", "Fell")
    cells = []
    for key, modes in rows.items():
        r = modes["pass@1"]
        cells.append([key.split(".", 1)[1], str(r["n"]), f"{r['a']:.2f}", f"{r['b']:.2f}", f"{r['diff']:+.2f}",
                      f"[{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}]", f"{r['p_value']:.3g}", str(r["gained"]),
                      str(r["lost"])])
    out = ["## SFT vs base, paired per problem (pass@1 share; bootstrap CI; exact sign test)", "",
           table(header, cells)]
    return "\n".join(out) + "\n"


def _sort_key(pid: str) -> tuple:
    try:
        return (0, int(pid), "")
    except ValueError:
        return (1, 0, pid)
