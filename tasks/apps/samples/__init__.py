"""APPS problem samples shipped inside the package (see ``CREDITS.md``), for offline runs.

A sample is a folder with ``test.jsonl`` (problems to sample and evaluate) and optionally
``train.jsonl`` (problems with reference solutions, for the local stand-in of training).
"""
from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

SPLITS = ("test", "train")


def available() -> list[str]:
    root = resources.files("tasks.apps") / "samples"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _resource(name: str, split: str):
    if name not in available():
        raise ValueError(f"no shipped APPS sample {name!r} (available: {', '.join(available())})")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    res = resources.files("tasks.apps") / "samples" / name / f"{split}.jsonl"
    if not res.is_file():
        raise ValueError(f"the shipped APPS sample {name!r} has no {split} split")
    return res


def read_sample(name: str, split: str = "test") -> list[dict[str, Any]]:
    """The APPS-layout rows of one split of a shipped sample."""
    return [json.loads(line) for line in _resource(name, split).read_text(encoding="utf-8").splitlines() if line]


def copy_sample(name: str, dest: str | Path, split: str = "test") -> Path:
    """Write the sample's APPS-layout ``<split>.jsonl`` to ``dest`` (atomically); returns ``dest``."""
    res = _resource(name, split)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with resources.as_file(res) as src:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return dest
