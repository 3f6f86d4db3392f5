"""Downsampling of the shuffled SFT list to ``num_output_samples`` (docs/recipes/openmath.md §9.1), on group ids only.

Both functions take the question group id of every entry *in shuffled order* and return the
indices of the entries to write, in the order to write them, so the caller never holds the
entries themselves.

- ``random``: the first N entries of the shuffled list (the shuffle is the randomness).
- ``fair``: round-robin over questions in the order they first appear in the shuffled list:
  solution #0 of every question, then #1 of every question that has one, and so on until N are
  taken. The output is in that round-robin order and is not shuffled again (v0.1.1 behaviour;
  NeMo shuffles at train time).

Downsampling happens only when there are more entries than N; otherwise all are kept in shuffled
order.
"""
from __future__ import annotations

from typing import Sequence

METHODS = ("fair", "random", "none")


def random_select(num_entries: int, num_output_samples: int) -> list[int]:
    """Indices ``0 .. min(num_entries, N) - 1``: the head of the already shuffled list."""
    return list(range(min(num_entries, num_output_samples)))


def fair_select(groups: Sequence[int], num_output_samples: int) -> list[int]:
    """Indices into ``groups`` chosen round-robin per group, in round-robin output order.

    Entry ``i`` has rank r (the r-th entry of its group so far) and its group has first-appearance
    order g; the round-robin output order is the sort by ``(r, g)``, and the selection is its
    first N. The key packs ``(r, g)`` into one int, which keeps memory to two ints per entry.
    """
    if num_output_samples >= len(groups):
        # v0.1.1 skips downsampling here and keeps the shuffled order, not the round-robin one.
        return list(range(len(groups)))
    rank_of_group: dict[int, int] = {}
    order_of_group: dict[int, int] = {}
    keys = [0] * len(groups)
    for i, g in enumerate(groups):
        rank = rank_of_group.get(g, 0)
        rank_of_group[g] = rank + 1
        order = order_of_group.setdefault(g, len(order_of_group))
        keys[i] = (rank << 32) | order
    if len(order_of_group) >= 1 << 32:  # pragma: no cover - four billion questions
        raise ValueError("too many questions for fair downsampling")
    chosen = sorted(range(len(groups)), key=keys.__getitem__)
    del chosen[num_output_samples:]
    return chosen


def select(method: str, groups: Sequence[int], num_output_samples: int | None) -> list[int]:
    """Dispatch on ``method`` (fair | random | none); ``none`` or a small list keeps everything."""
    if method not in METHODS:
        raise ValueError(f"downsampling method must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "none" or num_output_samples is None or num_output_samples >= len(groups):
        return list(range(len(groups)))
    if method == "random":
        return random_select(len(groups), num_output_samples)
    return fair_select(groups, num_output_samples)
