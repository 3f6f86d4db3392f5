"""The environment the stack would export, at fixed paths, for unit tests that load the `local`
profile without a stack (its ``${...}`` values come from here)."""
from __future__ import annotations

import dataclasses

from tasks.profiles import ClusterProfile

LOCAL_ENV = {"SKILLFLOW_ROOT": "/opt/skillflow", "SKILLFLOW_VAR": "/var/lib/skillflow",
             "SKILLFLOW_SMOLLM2_GGUF": "/opt/skillflow/.venv/models/smollm2.gguf",
             "SKILLFLOW_IMAGE_TAG": "checkout-test"}


def without_containers(profile: ClusterProfile) -> ClusterProfile:
    """``profile`` as a site without a container runtime has it: steps on the node, from the
    project's venvs, so commands name host paths (what the plan tests below read back)."""
    root = LOCAL_ENV["SKILLFLOW_ROOT"]
    return dataclasses.replace(profile, runtime="none", python=f"{root}/.venv/bin/python",
                               skillflow=f"{root}/.venv/bin/skillflow", train_python=f"{root}/.venv-train/bin/python")
