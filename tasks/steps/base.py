"""Pieces every recipe builder shares: the result type, path mapping, checks, shell snippets.

Safety model: values that reach ``#SBATCH`` lines or container mounts are checked by
:meth:`JobSpec.validate`; every value that reaches the step's command text goes through
:func:`q` (``shlex.quote``), so a param is always one literal shell word and can never become
a command. Shell syntax in the command text comes only from constants in these modules.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from tasks.profiles import ClusterProfile
from tasks.slurm import durations
from tasks.slurm.spec import JobSpec

_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


class RecipeError(ValueError):
    """A recipe param that cannot be used; the message names the param."""


@dataclass(frozen=True)
class KnownFix:
    """A place where a recipe deliberately renders something other than its seed document; each
    recipe's ``steps`` module lists its own in ``KNOWN_FIXES``."""

    key: str
    steps: tuple[str, ...]
    upstream: str
    fix: str
    ref: str


@dataclass(frozen=True)
class JobOptions:
    """Per-submission Slurm choices a DAG may override; unset values come from the profile."""

    time: str | None = None
    partition: str | None = None
    account: str | None = None
    dependency: tuple[str, ...] = ()
    extra_sbatch_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecipeJob:
    """A built step: the job, what it reads, what it writes, and what must exist before ``sbatch``.

    ``dirs`` are host directories to create (``mkdir -p``) before submission: container runtimes
    refuse to mount a source that does not exist yet, exactly why NeMo-Skills' wrappers create
    the output folder on the login node before calling sbatch. ``outputs`` are the files a
    sensor checks afterwards; exit codes are not trusted (docs/recipes/openmath.md §12.1). ``inputs`` are the
    host paths (files or folders) the step reads: each must be written by an earlier job of the
    same plan or be a declared input of the form or profile (``tasks.plan`` checks the flow).
    """

    spec: JobSpec
    outputs: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()


class PathMap:
    """Where a cluster path appears inside the step.

    With a container runtime, host paths are bind-mounted at fixed in-container paths (``/code``,
    ``/model``, ``/results`` as in NeMo-Skills), and the command uses the in-container path. With
    runtime ``none`` the command uses the host path itself and nothing is mounted.
    """

    def __init__(self, profile: ClusterProfile) -> None:
        self.containerized = profile.runtime != "none"
        self._mounts: dict[str, str] = {}

    def bind(self, host: str, inside: str) -> str:
        if not self.containerized:
            return host
        previous = self._mounts.get(inside)
        if previous is not None and previous != host:
            raise RecipeError(f"two different paths ({previous}, {host}) would both be mounted at {inside}")
        self._mounts[inside] = host
        return inside

    @property
    def mounts(self) -> tuple[str, ...]:
        return tuple(f"{host}:{inside}" for inside, host in self._mounts.items())


def same_path_mounts(profile: ClusterProfile, *folders: str | None) -> tuple[str, ...]:
    """Mounts that make each host folder visible at its own path inside a container.

    CPU steps of the ``skillflow`` CLI name host paths in their commands (they are planned
    without a :class:`PathMap`); a folder already visible at the same path through one of the
    profile's own mounts needs nothing more. Without a container runtime there is nothing to mount.
    """
    if profile.runtime == "none":
        return ()
    visible = []
    for mount in profile.mounts:
        parts = mount.split(":")
        src, dst = parts[0].rstrip("/"), (parts[1] if len(parts) > 1 and parts[1] not in ("ro", "rw") else parts[0])
        if src == dst.rstrip("/"):
            visible.append(src)
    out: list[str] = []
    for folder in folders:
        if not folder:
            continue
        folder = folder.rstrip("/") or "/"
        if any(folder == v or folder.startswith(v + "/") for v in visible):
            continue
        out.append(f"{folder}:{folder}")
    return tuple(dict.fromkeys(out))


def q(value: Any) -> str:
    """One shell word holding ``value`` literally."""
    return shlex.quote(str(value))


def words(*items: Any) -> str:
    """Quote and join; ``None`` items are dropped (optional flags)."""
    return " ".join(q(i) for i in items if i is not None)


def abs_path(param: str, value: str) -> str:
    """An absolute cluster path without a trailing slash; relative paths would depend on the job's cwd."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise RecipeError(f"{param}={value!r} must be an absolute path on the cluster")
    if "\n" in value or "\0" in value:
        raise RecipeError(f"{param}={value!r} contains a newline or NUL byte")
    return value.rstrip("/") or "/"


def ident(param: str, value: str) -> str:
    """A name used as a folder or file name (benchmark, dataset): letters, digits, ``. _ + -``."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise RecipeError(f"{param}={value!r} must be 1-128 characters of letters, digits and . _ + -")
    return value


def positive(param: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RecipeError(f"{param}={value!r} must be an integer >= {minimum}")
    return value


def slug(text: str, limit: int = 80) -> str:
    """A job-name-safe rendering of free text (a model folder name)."""
    out = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "x"
    return out[:limit]


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def parent(path: str) -> str:
    head = path.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def slurm_time_seconds(value: str) -> int:
    """Seconds in a job's finite walltime (the grammar of :mod:`tasks.slurm.durations`); a
    RecipeError names the value when it is no Slurm time or is UNLIMITED."""
    try:
        seconds = durations.slurm_time_seconds(value or "")
    except ValueError:
        raise RecipeError(f"time={value!r} is not a Slurm time") from None
    if seconds is None:
        raise RecipeError(f"time={value!r}: a job's time budget needs a finite walltime")
    return seconds


def make_spec(opts: JobOptions, *, extra_sbatch_args: Iterable[str] = (), **fields: Any) -> JobSpec:
    """A validated :class:`JobSpec` with the submission options applied."""
    spec = JobSpec(time=opts.time, partition=opts.partition, account=opts.account,
                   dependency=tuple(opts.dependency),
                   extra_sbatch_args=tuple(extra_sbatch_args) + tuple(opts.extra_sbatch_args), **fields)
    return spec.validate()


# Ports for servers we start ourselves: derived from the job id so that two jobs sharing a node
# (the local profile, or a non-exclusive partition) do not collide, and identical in every step
# of one job, so a sidecar and the main step agree without talking to each other.
SERVER_PORT_EXPR = "$((20000 + (SLURM_JOB_ID % 20000) * 2))"
SANDBOX_PORT_EXPR = "$((20001 + (SLURM_JOB_ID % 20000) * 2))"

# Polls an HTTP URL until it answers, failing early when the watched process has died and after a
# time limit otherwise -- a server that crashes during start-up must end the job, not hang it.
# SKILLFLOW_POLL_S (default 5 s) sets the polling interval.
WAIT_HTTP_FUNCTION = """\
skillflow_wait_http() {  # URL WHAT SECONDS [PID]
  local deadline=$((SECONDS + $3))
  until "$SKILLFLOW_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" >/dev/null 2>&1; do
    if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
      echo "skillflow: $2 exited before answering $1" >&2; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "skillflow: $2 did not answer $1 within $3 s" >&2; return 1
    fi
    sleep "${SKILLFLOW_POLL_S:-5}"
  done
  echo "skillflow: $2 is ready at $1"
}
"""
