"""The credited 20-problem test samples shipped inside the package (``samples/``), for offline runs."""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path


def available() -> list[str]:
    root = resources.files("tasks.datasets") / "samples"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))


def copy_samples(benchmarks: list[str], out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/<benchmark>/test.jsonl`` for each benchmark; returns the written files."""
    known = available()
    unknown = [b for b in benchmarks if b not in known]
    if unknown:
        raise ValueError(f"no shipped sample for {', '.join(unknown)} (available: {', '.join(known)})")
    written = []
    for name in benchmarks:
        src = resources.files("tasks.datasets") / "samples" / name / "test.jsonl"
        dest = Path(out_dir) / name / "test.jsonl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".jsonl.tmp")
        with resources.as_file(src) as path:
            shutil.copyfile(path, tmp)
        tmp.replace(dest)
        written.append(dest)
    return written
