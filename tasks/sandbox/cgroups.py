"""Whole-program CPU and process limits with cgroup v1 controllers, where the machine allows.

RLIMIT_CPU and RLIMIT_NPROC count per process and per uid: a program that starts helpers (e.g.
with ``os.posix_spawn``) gets ``cpu_s`` per helper and every core of the machine, and starves
the programs in the other workers. A cgroup holds every process of an execution, whatever it forks:

* ``cpu``: a quota of one CPU per worker (``cfs_quota_us == cfs_period_us``) and one fair share
  for the group, so a program gets one core however many processes it runs and cannot starve the
  programs in the other workers;
* ``cpuacct``: the CPU time of all its processes together, which the worker holds to ``cpu_s``;
* ``pids``: at most ``max_processes`` tasks at once, also where no uid of its own is available.

The pool (root, on the host) creates one group per worker in each hierarchy, under its own
cgroup, and removes it when the worker ends. The worker moves itself into the ``cpuacct`` and
``pids`` groups before it forks anything, so its children are born inside and nothing is
migrated per execution; its own work during an execution (fork, wait, a few reads) counts toward
the program's CPU, and it is one of the ``pids``.

The ``cpu`` group is joined lazily: the worker moves a program's processes into it as soon as it
sees the program run more than one task (it looks every :data:`WATCH_S`). A single-process
program, which has no one to share a core with, stays out, because on a loaded host (autogroup
scheduling, load 6-8 on 2 cores) membership of a long-lived cpu group cut the throughput of
trivial snippets on 2 workers from about 260 to about 140 per second (measured side by side). A
program whose helpers end within
one look is not grouped; it cannot take more than that look's worth of CPU from the others.

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
#: How often the worker looks at a running program: CPU time (cpu_s) and task count (cpu group).
WATCH_S = 0.05
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
    """The worker's side: join once, then reset, read and group per execution through fds
    opened at start (they keep working after the worker's root is replaced)."""

    def __init__(self, dirs: dict[str, str]):
        self._dir = {c: os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for c, d in dirs.items()}
        self._cpu_apart = dirs["cpu"] not in (dirs["cpuacct"], dirs["pids"])
        for controller in sorted({"cpuacct", "pids"} | (set() if self._cpu_apart else {"cpu"})):
            self._write("cgroup.procs", controller, b"0")  # 0: the writing process itself
        self._usage = os.open("cpuacct.usage", os.O_RDWR | os.O_CLOEXEC, dir_fd=self._dir["cpuacct"])
        self._pids_current = os.open("pids.current", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir["pids"])
        self._pids_max = os.open("pids.max", os.O_WRONLY | os.O_CLOEXEC, dir_fd=self._dir["pids"])
        self._pids_set: int | None = None
        self.grouped = False

    def _write(self, name: str, controller: str, data: bytes) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=self._dir[controller])
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _tasks(self, controller: str) -> set[int]:
        fd = os.open("cgroup.procs", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir[controller])
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return {int(x) for x in b"".join(chunks).split()}

    def start(self, max_processes: int) -> None:
        """Before an execution: CPU time back to zero, the process cap (+1: the worker is in it)."""
        os.pwrite(self._usage, b"0", 0)
        if max_processes != self._pids_set:
            os.pwrite(self._pids_max, str(int(max_processes) + 1).encode(), 0)
            self._pids_set = max_processes
        self.grouped = not self._cpu_apart

    def cpu_seconds(self) -> float:
        """CPU time of every process in the group since :meth:`start`."""
        return int(os.pread(self._usage, 32, 0)) / 1e9

    def watch(self) -> None:
        """Move the program into the cpu group once it runs more than one task (see module doc)."""
        if self.grouped or int(os.pread(self._pids_current, 32, 0)) <= 2:  # the worker and one task
            return
        me = os.getpid()
        for _ in range(20):  # tasks forked by not yet moved parents are born outside: go again
            outside = self._tasks("pids") - self._tasks("cpu") - {me}
            if not outside:
                break
            for pid in outside:
                try:
                    self._write("cgroup.procs", "cpu", str(pid).encode())
                except OSError:  # ESRCH: it exited meanwhile
                    pass
        self.grouped = True
