"""The local profile with the podman runtime, for the tests that run jobs in containers before
`local` itself uses one (tests/integration/test_container_runtime.py, tests/images/)."""
from __future__ import annotations

from pathlib import Path

import yaml

LOCAL_PROFILE = Path(__file__).resolve().parents[2] / "tasks" / "cluster_profiles" / "local.yaml"


def local_profile() -> dict:
    return yaml.safe_load(LOCAL_PROFILE.read_text())


def write(stack_env: dict[str, str], folder: Path, *, images: dict[str, str] | None = None,
          paths: dict[str, str] | None = None) -> str:
    """A copy of local.yaml with runtime podman and the cluster's work folder mounted at the same
    path, plus the given images and paths; returns the file's path."""
    raw = local_profile()
    work = f"{stack_env['SKILLFLOW_VAR']}/cluster/work"
    raw["container"].update(runtime="podman", mounts=[f"{work}:{work}"])
    raw["container"]["images"].update(images or {})
    raw["paths"].update(paths or {})
    path = folder / "local-podman.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)
