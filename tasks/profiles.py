"""Cluster profiles: the one file that holds every fact about a cluster.

Code never hard-codes a host, partition, account, image or mount; it reads them from a profile.
Two profiles ship inside the package (``local`` and ``example-pyxis``); a user points
``SKILLFLOW_PROFILE`` or a DAG's ``profile`` param at a name or at a YAML file of their own.
``${VAR}`` in values is filled from the environment of the process that loads the profile,
which for the local profile is the environment the stack writes.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SECTIONS: dict[str, set[str]] = {
    "name": set(),
    "description": set(),
    "ssh": {"conn_id"},
    "slurm": {"partition", "multi_node_partition", "account", "max_time", "default_time", "gpus_per_node",
              "cpus_per_node", "poll_interval_s", "accounting", "extra_sbatch_args", "accelerator"},
    "container": {"runtime", "images", "mounts", "run_args", "sandbox_run_args"},
    "paths": {"workdir", "python", "skillflow", "train_python"},
    "env": None,  # free-form: variables exported into every job
    "storage": {"aws_conn_id", "bucket", "mlflow_conn_id", "cluster_env"},
    "models": None,  # free-form: short names for model paths on the cluster
}
RUNTIMES = ("none", "pyxis", "apptainer", "podman")
#: ``gpu``: the nodes' GPUs are real and steps run the recipes' own tools. ``cpu``: the GPUs Slurm
#: hands out are emulated (the local stack), so each GPU step runs its CPU stand-in instead
#: (llama.cpp's server for vLLM and TensorRT-LLM, the CPU trainer for NeMo-Aligner and OpenRLHF),
#: with or without a container runtime.
ACCELERATORS = ("gpu", "cpu")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    source: str
    ssh_conn_id: str
    partition: str | None
    account: str | None
    max_time: str | None
    default_time: str | None
    gpus_per_node: int
    cpus_per_node: int | None
    poll_interval_s: float
    accounting: str
    extra_sbatch_args: tuple[str, ...]
    runtime: str
    images: dict[str, str | None]
    mounts: tuple[str, ...]
    workdir: str
    python: str
    skillflow: str
    env: dict[str, str] = field(default_factory=dict)
    aws_conn_id: str = "aws_default"
    bucket: str = "skillflow"
    mlflow_conn_id: str = "mlflow_default"
    models: dict[str, str] = field(default_factory=dict)
    # Python of the CPU training environment (torch + transformers) of profiles without GPU images.
    train_python: str | None = None
    # Where jobs over more than one node go, when not to ``partition`` (None: the same partition).
    multi_node_partition: str | None = None
    # Variables that point jobs which write to S3 at the cluster's own credentials (names and
    # paths only, never keys); exported only into those jobs.
    storage_env: dict[str, str] = field(default_factory=dict)
    # Options the runtime's run command takes on this site (podman: --runtime, --ulimit).
    run_args: tuple[str, ...] = ()
    # More options for containers of the sandbox image, which runs model-written code (podman:
    # the capability its service needs to put each program in namespaces of its own).
    sandbox_run_args: tuple[str, ...] = ()
    accelerator: str = "gpu"

    @property
    def cpu_stand_ins(self) -> bool:
        """Whether GPU steps run their CPU stand-ins here (``slurm.accelerator: cpu``)."""
        return self.accelerator == "cpu"

    def model_path(self, ref: str) -> str:
        """A model alias of this profile (``smollm2``) or the path/URI as given."""
        if ref in self.models:
            return _expand(self.models[ref], self.source, f"models.{ref}")
        return ref

    def image(self, key: str) -> str | None:
        """The container image for a step, or None when the profile runs steps without containers."""
        if self.runtime == "none":
            return None
        try:
            image = self.images[key]
        except KeyError:
            raise ProfileError(f"{self.source}: container.images has no '{key}' "
                               f"(known: {', '.join(sorted(self.images))})") from None
        if not image:
            raise ProfileError(f"{self.source}: container.images.{key} is empty")
        return image


def builtin_profiles() -> list[str]:
    root = resources.files("tasks") / "cluster_profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _expand(value: Any, source: str, key: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            var = m.group(1)
            if var not in os.environ:
                raise ProfileError(f"{source}: {key} uses ${{{var}}}, which is not set in the environment "
                                   f"(for the local profile, run `skillflow stack up` or source var/env.sh)")
            return os.environ[var]
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, source, key) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, source, f"{key}.{k}") for k, v in value.items()}
    return value


def load_profile(name_or_path: str | None = None) -> ClusterProfile:
    """Load a profile by built-in name or YAML path (default: ``$SKILLFLOW_PROFILE`` or ``local``)."""
    ref = name_or_path or os.environ.get("SKILLFLOW_PROFILE") or "local"
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ProfileError(f"cluster profile file not found: {ref}")
        text, source = path.read_text(), str(path)
    else:
        res = resources.files("tasks") / "cluster_profiles" / f"{ref}.yaml"
        if not res.is_file():
            raise ProfileError(f"unknown cluster profile '{ref}' (built-in: {', '.join(builtin_profiles())}; "
                               "or give a path to a .yaml file)")
        text, source = res.read_text(), f"profile '{ref}'"
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from None
    return parse_profile(raw, source)


def parse_profile(raw: dict[str, Any], source: str) -> ClusterProfile:
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: expected a mapping at the top level")
    for key, value in raw.items():
        if key not in SECTIONS:
            raise ProfileError(f"{source}: unknown key '{key}' (valid: {', '.join(SECTIONS)})")
        allowed = SECTIONS[key]
        if allowed and isinstance(value, dict):
            for sub in value:
                if sub not in allowed:
                    raise ProfileError(f"{source}: unknown key '{key}.{sub}' (valid: {', '.join(sorted(allowed))})")
    # Model aliases are expanded on use, so an alias whose variable is unset only fails when used.
    models_raw = dict(raw.pop("models", None) or {})
    raw = _expand(raw, source, "profile")
    ssh, slurm = raw.get("ssh") or {}, raw.get("slurm") or {}
    container, paths = raw.get("container") or {}, raw.get("paths") or {}
    storage = raw.get("storage") or {}
    runtime = container.get("runtime", "none")
    if runtime not in RUNTIMES:
        raise ProfileError(f"{source}: container.runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
    accelerator = slurm.get("accelerator", "gpu")
    if accelerator not in ACCELERATORS:
        raise ProfileError(f"{source}: slurm.accelerator '{accelerator}' is not one of {', '.join(ACCELERATORS)}")
    for required, section, key in (("ssh.conn_id", ssh, "conn_id"), ("paths.workdir", paths, "workdir")):
        if not section.get(key):
            raise ProfileError(f"{source}: {required} is required")
    return ClusterProfile(
        name=str(raw.get("name") or source),
        source=source,
        ssh_conn_id=ssh["conn_id"],
        partition=slurm.get("partition"),
        account=slurm.get("account"),
        max_time=slurm.get("max_time"),
        default_time=slurm.get("default_time"),
        gpus_per_node=int(slurm.get("gpus_per_node") or 0),
        cpus_per_node=slurm.get("cpus_per_node"),
        poll_interval_s=float(slurm.get("poll_interval_s") or 10),
        accounting=slurm.get("accounting", "slurmdbd"),
        extra_sbatch_args=tuple(slurm.get("extra_sbatch_args") or ()),
        runtime=runtime,
        images=dict(container.get("images") or {}),
        mounts=tuple(container.get("mounts") or ()),
        workdir=paths["workdir"],
        python=paths.get("python", "python3"),
        skillflow=paths.get("skillflow", "skillflow"),
        env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
        aws_conn_id=storage.get("aws_conn_id", "aws_default"),
        bucket=storage.get("bucket", "skillflow"),
        mlflow_conn_id=storage.get("mlflow_conn_id", "mlflow_default"),
        models={str(k): str(v) for k, v in models_raw.items()},
        train_python=paths.get("train_python"),
        storage_env={str(k): str(v) for k, v in (storage.get("cluster_env") or {}).items()},
        multi_node_partition=slurm.get("multi_node_partition"),
        run_args=tuple(str(a) for a in container.get("run_args") or ()),
        sandbox_run_args=tuple(str(a) for a in container.get("sandbox_run_args") or ()),
        accelerator=accelerator,
    )
