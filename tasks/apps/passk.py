"""Unbiased pass@k (Chen et al., 2021; docs/recipes/apps_sft.md §4), per difficulty and in total.

``pass_at_k`` refuses n < k (the estimator assumes n >= k); :func:`summarise` then reports that
k as unavailable (``None``) for the affected group and lists the problems, instead of the seed's
unguarded formula, which returns 1.0 whenever n - c < k, even for c = 0. That formula is kept as
:func:`pass_at_k_unguarded` to reproduce seed numbers on purpose.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that k samples drawn without replacement from n (c correct) include a correct one.

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which equals 1 - C(n-c, k)/C(n, k) without huge
    binomials. Raises ``ValueError`` for n < k or c outside [0, n].
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n} c={c}")
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got n={n}")
    return pass_at_k_unguarded(n, c, k)


def pass_at_k_unguarded(n: int, c: int, k: int) -> float:
    """The seed's (llmkit's) version: no n >= k check, so 1.0 whenever n - c < k."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def summarise(counts: Mapping[object, tuple[int, int]], difficulty: Mapping[object, str],
              ks: Sequence[int] = (1, 5, 10)) -> dict:
    """pass@k per group (``total`` first, then difficulties in order of first appearance by id).

    ``counts`` maps problem id -> (n, c). A group's pass@k is the mean over its problems, or
    ``None`` when some problem has n < k (those ids are listed under ``short``).
    """
    order = ["total"]
    for pid in sorted(counts, key=_sort_key):
        d = difficulty.get(pid, "unknown")
        if d not in order:
            order.append(d)
    out: dict = {}
    for group in order:
        pids = [p for p in counts if group == "total" or difficulty.get(p, "unknown") == group]
        entry: dict = {"problems": len(pids), "samples": sum(counts[p][0] for p in pids),
                       "correct": sum(counts[p][1] for p in pids)}
        for k in ks:
            short = sorted((p for p in pids if counts[p][0] < k), key=_sort_key)
            if short or not pids:
                entry[f"pass@{k}"] = None
                entry[f"short@{k}"] = short[:50]
                entry[f"short@{k}_count"] = len(short)
            else:
                entry[f"pass@{k}"] = sum(pass_at_k(*counts[p], k) for p in pids) / len(pids)
        out[group] = entry
    return out


def _sort_key(pid: object) -> tuple:
    try:
        return (0, int(pid), "")
    except (TypeError, ValueError):
        return (1, 0, str(pid))


def seed_lines(summary: Mapping[str, Mapping], ks: Iterable[int] = (1, 5, 10)) -> list[dict]:
    """The seed's stdout table: one object per (k, group), k outermost."""
    return [{"difficulty": g, "k": k, "pass@k": summary[g].get(f"pass@{k}")} for k in ks for g in summary]
