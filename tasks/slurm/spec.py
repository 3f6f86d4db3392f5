"""A Slurm job described as data, validated before anything is rendered.

Values that end up on ``#SBATCH`` lines are checked against strict patterns (sbatch reads those
lines itself, without a shell, so quoting cannot protect them); values that end up in the
script body are shell-quoted by the renderer. Together these make it impossible for a DAG
param to inject a command.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tasks.slurm.durations import is_slurm_time

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
_MEM = re.compile(r"^\d+[KMGT]?$")
_ARRAY = re.compile(r"^\d+(-\d+)?(:\d+)?(,\d+(-\d+)?(:\d+)?)*$")
_DEPENDENCY = re.compile(r"^(after|afterok|afternotok|afterany|aftercorr|singleton)(:\d+(_\d+)?(\+\d+)?)*$")
_PARTITION = re.compile(r"^[A-Za-z0-9_.,-]{1,128}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIGNAL = re.compile(r"^(B:)?[A-Z0-9]{2,8}(@\d+)?$")
_EXTRA_ARG = re.compile(r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:/@%+=-]*)?$")
_MOUNT = re.compile(r"^[^\s,:'\"`$;&|<>()]+(:[^\s,:'\"`$;&|<>()]+)?(:(ro|rw))?$")


class JobSpecError(ValueError):
    """A job spec value that is not allowed; the message names the field."""


@dataclass(frozen=True)
class Sidecar:
    """A helper process started on every node beside the main step (e.g. the code sandbox)."""

    name: str
    command: str
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Seconds to wait after starting it before the main step runs (a server's warm-up).
    warmup_s: int = 0


@dataclass(frozen=True)
class JobSpec:
    """What to run and with which resources; cluster facts (runtime, mounts) come from the profile."""

    name: str
    command: str
    image: str | None = None
    nodes: int = 1
    ntasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    exclusive: bool = False
    array: str | None = None
    array_throttle: int | None = None
    dependency: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    workdir: str | None = None
    output: str | None = None
    extra_sbatch_args: tuple[str, ...] = ()
    sidecars: tuple[Sidecar, ...] = ()
    master_port: int = 29500
    # e.g. "USR1@120": a signal before walltime so training can checkpoint.
    signal: str | None = None
    requeue: bool | None = None
    kill_on_invalid_dep: bool = True
    # Launch the step through srun (one copy per task). False runs it directly in the batch
    # script, which only makes sense on one node without a container.
    use_srun: bool = True
    comment: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        """Build from plain data (DAG params, YAML); unknown keys fail listing the valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise JobSpecError(f"unknown job spec field(s) {', '.join(unknown)} (valid: {', '.join(sorted(valid))})")
        data = dict(data)
        for key in ("dependency", "mounts", "extra_sbatch_args"):
            if key in data and data[key] is not None:
                data[key] = tuple(data[key])
        if "sidecars" in data:
            data["sidecars"] = tuple(s if isinstance(s, Sidecar) else Sidecar(**s) for s in data["sidecars"])
        return cls(**data)

    def with_(self, **changes: Any) -> "JobSpec":
        return replace(self, **changes)

    @property
    def is_array(self) -> bool:
        return self.array is not None

    def validate(self) -> "JobSpec":
        def bad(field_name: str, value: Any, why: str) -> JobSpecError:
            return JobSpecError(f"job spec '{self.name}': {field_name}={value!r} {why}")

        if not _NAME.match(self.name or ""):
            raise bad("name", self.name, "must be 1-128 characters of letters, digits and . _ : + -")
        if not self.command or not self.command.strip():
            raise bad("command", self.command, "is empty")
        for name in ("nodes", "ntasks_per_node"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise bad(name, value, "must be a positive integer")
        for name in ("gpus_per_node", "cpus_per_task", "array_throttle"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise bad(name, value, "must be a non-negative integer")
        if self.time is not None and not is_slurm_time(self.time):
            raise bad("time", self.time, "is not a Slurm time ([D-]HH:MM:SS, MM, ...)")
        if self.mem is not None and not _MEM.match(str(self.mem)):
            raise bad("mem", self.mem, "is not a Slurm memory size (e.g. 64G, 0)")
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value is not None and not _PARTITION.match(value):
                raise bad(name, value, "has characters Slurm does not allow")
        if self.array is not None and not _ARRAY.match(self.array):
            raise bad("array", self.array, "is not an index list like 0-127 or 1,3,5")
        if self.array_throttle is not None and self.array is None:
            raise bad("array_throttle", self.array_throttle, "needs array")
        for dep in self.dependency:
            if not _DEPENDENCY.match(dep):
                raise bad("dependency", dep, "is not like afterok:123 or afterany:123:456")
        for key in self.env:
            if not _ENV_KEY.match(key):
                raise bad("env", key, "is not a valid environment variable name")
        for sidecar in self.sidecars:
            if not _NAME.match(sidecar.name):
                raise bad("sidecars.name", sidecar.name, "must be letters, digits and . _ : + -")
            for key in sidecar.env:
                if not _ENV_KEY.match(key):
                    raise bad("sidecars.env", key, "is not a valid environment variable name")
        for mount in self.mounts:
            if not _MOUNT.match(mount):
                raise bad("mounts", mount, "must be SRC[:DST[:ro|rw]] without spaces or shell characters")
        if self.signal is not None and not _SIGNAL.match(self.signal):
            raise bad("signal", self.signal, "is not like USR1@120 or B:USR1@120")
        for arg in self.extra_sbatch_args:
            if not _EXTRA_ARG.match(arg):
                raise bad("extra_sbatch_args", arg, "must be one --option or --option=value without spaces "
                                                    "or shell characters")
        if not 1 <= self.master_port <= 65535:
            raise bad("master_port", self.master_port, "is not a TCP port")
        if not self.use_srun and (self.nodes > 1 or self.image):
            raise bad("use_srun", self.use_srun, "must be True for multi-node or container jobs")
        return self
