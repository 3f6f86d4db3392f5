"""Variants of the local profile for the tests that need another runtime or other images than
`local` itself: the probe image of tests/integration/test_container_runtime.py, one image of
tests/images/, and the one end-to-end run without containers (runtime ``none``)."""
from __future__ import annotations

from pathlib import Path

import yaml

LOCAL_PROFILE = Path(__file__).resolve().parents[2] / "tasks" / "cluster_profiles" / "local.yaml"

#: What a site without a container runtime names in ``paths``: the venvs `make install` builds on
#: the node (this machine), in place of the python3 and skillflow inside the images.
NODE_PATHS = {"python": "${SKILLFLOW_ROOT}/.venv/bin/python", "skillflow": "${SKILLFLOW_ROOT}/.venv/bin/skillflow",
              "train_python": "${SKILLFLOW_ROOT}/.venv-train/bin/python"}


def local_profile() -> dict:
    return yaml.safe_load(LOCAL_PROFILE.read_text())


def write(folder: Path, *, runtime: str | None = None, images: dict[str, str] | None = None,
          paths: dict[str, str] | None = None, name: str = "local-variant") -> str:
    """A copy of local.yaml with the given runtime, images and paths; returns the file's path."""
    raw = local_profile()
    raw["name"] = name
    if runtime:
        raw["container"]["runtime"] = runtime
    raw["container"]["images"].update(images or {})
    raw["paths"].update(paths or {})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def without_containers(folder: Path) -> str:
    """The local profile as a site without a container runtime writes it: runtime ``none``, and
    the node's own venvs."""
    return write(folder, runtime="none", paths=NODE_PATHS, name="local-no-containers")
