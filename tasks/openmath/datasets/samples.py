"""The credited 20-problem samples shipped inside the package (``samples/``), for offline runs.

Every benchmark has ``test.jsonl``; gsm8k and math also have ``train_full.jsonl`` (the first 20
problems of the prepared train_full split, with ``reference_solution``) for data-generation smoke runs.
"""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path


def available() -> list[str]:
    root = resources.files("tasks.openmath.datasets") / "samples"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))


def copy_samples(benchmarks: list[str], out_dir: str | Path, split: str = "test") -> list[Path]:
    """Write ``out_dir/<benchmark>/<split>.jsonl`` for each benchmark; returns the written files."""
    known = available()
    unknown = [b for b in benchmarks if b not in known]
    if unknown:
        raise ValueError(f"no shipped sample for {', '.join(unknown)} (available: {', '.join(known)})")
    root = resources.files("tasks.openmath.datasets") / "samples"
    lacking = [b for b in benchmarks if not (root / b / f"{split}.jsonl").is_file()]
    if lacking:
        have = sorted({p.name[:-6] for b in known for p in (root / b).iterdir() if p.name.endswith(".jsonl")})
        raise ValueError(f"no shipped {split!r} sample for {', '.join(lacking)} (splits shipped: {', '.join(have)}; "
                         "train_full only for gsm8k and math)")
    written = []
    for name in benchmarks:
        src = root / name / f"{split}.jsonl"
        dest = Path(out_dir) / name / f"{split}.jsonl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".jsonl.tmp")
        with resources.as_file(src) as path:
            shutil.copyfile(path, tmp)
        tmp.replace(dest)
        written.append(dest)
    return written
