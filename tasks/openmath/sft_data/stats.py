"""Small statistics helpers shared by the sft-data steps, and the stats-file writer.

The stats dicts are nested for people; :func:`flatten_metrics` gives MLflow the numeric leaves
as ``a.b.c`` keys (MLflow metric names allow dots and slashes).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from tasks.storage.jsonl import atomic_writer


def distribution(counts: Iterable[int]) -> dict[str, float]:
    """Mean, population std (as numpy's default, which v0.1.1 logged), min and max of ``counts``."""
    values = list(counts)
    if not values:
        return {"n": 0, "mean": 0.0, "std": 0.0, "min": 0, "max": 0}
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return {"n": len(values), "mean": mean, "std": math.sqrt(var), "min": min(values), "max": max(values)}


def flatten_metrics(stats: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested stats dict as ``{"a.b": value}``; strings, lists and None are skipped."""
    out: dict[str, float] = {}
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def default_stats_path(output: os.PathLike | str) -> Path:
    """``dir/name.jsonl`` -> ``dir/name.stats.json`` (beside the output, so the two travel together)."""
    out = Path(output)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.stats.json")


def write_stats(path: os.PathLike | str, stats: Mapping[str, Any]) -> None:
    """Write ``stats`` as indented JSON, atomically."""
    with atomic_writer(path) as fh:
        json.dump(stats, fh, indent=2, sort_keys=False)
        fh.write("\n")
