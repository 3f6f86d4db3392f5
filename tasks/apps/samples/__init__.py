"""APPS problem samples shipped inside the package (see ``CREDITS.md``), for offline runs."""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path


def available() -> list[str]:
    root = resources.files("tasks.apps") / "samples"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def copy_sample(name: str, dest: str | Path) -> Path:
    """Write the sample's APPS-layout ``test.jsonl`` to ``dest`` (atomically); returns ``dest``."""
    if name not in available():
        raise ValueError(f"no shipped APPS sample {name!r} (available: {', '.join(available())})")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with resources.as_file(resources.files("tasks.apps") / "samples" / name / "test.jsonl") as src:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return dest
