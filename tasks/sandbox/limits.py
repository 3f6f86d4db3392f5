"""Resource limits for one sandboxed execution and the result it produces.

Both types cross a process boundary (pool -> worker -> pool, and the HTTP ``/run`` endpoint), so
they convert to and from plain dicts; unknown keys are rejected by name so that a misspelt limit
never silently falls back to a default.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Statuses an :class:`ExecResult` can carry.
STATUSES = ("ok", "error", "timeout", "output_limit", "signal", "sandbox_error")


@dataclass(frozen=True)
class Limits:
    """Limits applied to one execution.

    ``timeout_s`` is wall-clock time; ``cpu_s`` is CPU time, per process (RLIMIT_CPU) and, where
    the machine has cgroups, for all processes of the program together; it defaults to the
    timeout rounded up plus one second, as a backstop for the wall clock. ``memory_mb`` is address space
    (RLIMIT_AS), so it also counts shared libraries and thread stacks. ``max_processes`` is only
    enforced for the whole program (a cgroup) where the machine has cgroups, else per uid where
    the sandbox can give each worker its own uid (running as root), else not at all.
    ``max_output_bytes`` caps stdout and stderr each, and every file the program writes; a
    stream's size counts holes, so a sparse file is as big as its last byte.
    ``max_files`` caps the inodes (files, folders, links) of the scratch folder; with namespaces.
    """

    timeout_s: float = 10.0
    cpu_s: float | None = None
    memory_mb: int = 2048
    max_processes: int = 32
    max_output_bytes: int = 1 << 20
    max_open_files: int = 256
    max_files: int = 4096

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "max_processes", "max_output_bytes", "max_open_files", "max_files"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"sandbox limit {name} must be a positive number, got {value!r}")
        if self.cpu_s is not None and (not isinstance(self.cpu_s, (int, float)) or self.cpu_s <= 0):
            raise ValueError(f"sandbox limit cpu_s must be a positive number or null, got {self.cpu_s!r}")

    @property
    def effective_cpu_s(self) -> int:
        return int(math.ceil(self.cpu_s if self.cpu_s is not None else self.timeout_s + 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Limits":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown sandbox limit(s) {unknown}; valid names: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "Limits":
        return Limits.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


@dataclass
class ExecResult:
    """What one execution produced.

    ``status`` is one of :data:`STATUSES`: ``ok`` (exit status 0), ``error`` (non-zero exit, e.g.
    an uncaught exception whose traceback is in ``stderr``), ``timeout`` (wall clock or CPU limit),
    ``output_limit`` (stdout/stderr/a file grew past ``max_output_bytes``), ``signal`` (killed by
    another signal, e.g. SIGSEGV), ``sandbox_error`` (the sandbox itself failed; ``stderr`` says
    why). ``stdout``/``stderr`` are decoded as UTF-8 with replacement and cut at the limit.
    """

    status: str
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExecResult":
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})
