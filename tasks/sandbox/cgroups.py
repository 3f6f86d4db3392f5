"""Whole-program CPU and process limits with cgroup v1 controllers, where the machine allows.

RLIMIT_CPU and RLIMIT_NPROC count per process and per uid: a program that starts helpers (e.g.
with ``os.posix_spawn``) gets ``cpu_s`` per helper and every core of the machine, and starves
the programs in the other workers. A cgroup holds every process of an execution, whatever it forks:

* ``cpu``: a quota of one CPU per worker (``cfs_quota_us == cfs_period_us``), so a program gets
  one core however many processes it runs, and the CFS shares each group fairly against the others;
* ``cpuacct``: the CPU time of all its processes together, which the worker holds to ``cpu_s``;
* ``pids``: at most ``max_processes`` tasks at once, also where no uid of its own is available.

The pool (root, on the host) creates one group per worker in each hierarchy, under its own
cgroup, and removes it when the worker ends. The worker moves itself in before it forks anything,
so its children are born inside and nothing is migrated per execution (a v1 migration can cost
milliseconds). Hence the worker's own work during an execution (fork, wait, a few reads) counts
toward the program's CPU, and the worker is one of the ``pids``.

Only cgroup v1 hierarchies (the controllers mounted one by one or together, as on the project's
Debian hosts) are handled. On a cgroup v2 only host :func:`available` says so, the pool reports
``cgroups: false`` and the per-process rlimits are the only CPU and process limits.
"""
from __future__ import annotations

import itertools
import os
import time

CONTROLLERS = ("cpu", "cpuacct", "pids")
_PARENT = "skillflow-sandbox"
_PERIOD_US = 100_000
_counter = itertools.count()


def hierarchies() -> dict[str, str]:
    """``controller -> folder of this process's own group`` for each v1 controller we use."""
    mounts: dict[str, tuple[str, str]] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(tail) < 3 or tail[0] != "cgroup":
                continue
            for option in tail[2].split(","):
                if option in CONTROLLERS:
                    mounts.setdefault(option, (fields[4], fields[3]))  # mount point, root in hierarchy
    own: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                own[name] = path
    found = {}
    for controller, (mount_point, root) in mounts.items():
        path = own.get(controller)
        if path is None or not (path == root or path.startswith(root.rstrip("/") + "/")):
            continue
        found[controller] = os.path.join(mount_point, path[len(root):].lstrip("/"))
    return found


def available() -> tuple[bool, str]:
    """Whether this process can create the groups, and if not, why."""
    if os.geteuid() != 0:
        return False, "not root"
    try:
        found = hierarchies()
    except OSError as exc:
        return False, f"cannot read cgroup mounts: {exc}"
    missing = [c for c in CONTROLLERS if c not in found]
    if missing:
        return False, f"no cgroup v1 hierarchy for {missing} (cgroup v2 only hosts are not handled)"
    for folder in set(found.values()):
        if not os.access(folder, os.W_OK):
            return False, f"{folder} is not writable"
    return True, ""


def create(worker_index: int) -> dict[str, str]:
    """One group per controller for a new worker, with the one-CPU quota set; ``controller -> dir``."""
    name = f"p{os.getpid()}-{next(_counter)}-w{worker_index}"
    dirs = {}
    for controller, base in hierarchies().items():
        if controller not in CONTROLLERS:
            continue
        parent = os.path.join(base, _PARENT)
        os.makedirs(parent, exist_ok=True)
        _remove_stale(parent)
        folder = os.path.join(parent, name)
        os.makedirs(folder, exist_ok=True)
        dirs[controller] = folder
    _write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), _PERIOD_US)
    _write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), _PERIOD_US)
    return dirs


def remove(dirs: dict[str, str], wait_s: float = 5.0) -> None:
    """Remove a worker's groups; processes that are still dying get ``wait_s`` to leave them."""
    deadline = time.monotonic() + wait_s
    for folder in sorted(set(dirs.values())):
        while True:
            try:
                os.rmdir(folder)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)


def _remove_stale(parent: str) -> None:
    """Groups left by pools that died without closing (their pid is gone); empty ones only."""
    for entry in os.listdir(parent):
        owner = entry.split("-", 1)[0][1:]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            try:
                os.rmdir(os.path.join(parent, entry))
            except OSError:
                pass


def _write(path: str, value: int) -> None:
    with open(path, "w") as fh:
        fh.write(str(value))


class WorkerGroups:
    """The worker's side: join once, then reset and read per execution through open fds
    (they keep working after the worker's root is replaced)."""

    def __init__(self, dirs: dict[str, str]):
        for folder in sorted(set(dirs.values())):
            _write(os.path.join(folder, "cgroup.procs"), 0)  # 0: the writing process itself
        self._usage = os.open(os.path.join(dirs["cpuacct"], "cpuacct.usage"), os.O_RDWR | os.O_CLOEXEC)
        self._pids_max = os.open(os.path.join(dirs["pids"], "pids.max"), os.O_WRONLY | os.O_CLOEXEC)
        self._pids_set: int | None = None

    def start(self, max_processes: int) -> None:
        """Before an execution: CPU time back to zero, the process cap (+1: the worker is in it)."""
        os.pwrite(self._usage, b"0", 0)
        if max_processes != self._pids_set:
            os.pwrite(self._pids_max, str(int(max_processes) + 1).encode(), 0)
            self._pids_set = max_processes

    def cpu_seconds(self) -> float:
        """CPU time of every process in the group since :meth:`start`."""
        return int(os.pread(self._usage, 32, 0)) / 1e9
