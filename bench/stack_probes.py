"""What the triggerer benchmark reads from the running stack, each from the service that knows it:
SSH connections from sshd's own log, Slurm queries from slurmctld's RPC counters (``sdiag``), job
end times from Slurm's job completion log, CPU and memory of a process tree from ``/proc``.

Nothing here asks the code under test to count itself, so the same probes measure our triggerer
and the blocking peer.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

_CLK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def started_at(pid: int) -> float:
    """When the process started, as a Unix time."""
    boot = float(next(line.split()[1] for line in open("/proc/stat") if line.startswith("btime")))
    return boot + int(_stat(pid)[19]) / _CLK


def tree(pid: int) -> list[int]:
    """``pid`` and every living descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                children.setdefault(int(st[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the tree, including children it has reaped."""
    total = 0
    for p in tree(pid):
        st = _stat(p)
        if st:
            total += sum(int(x) for x in st[11:15])  # utime stime cutime cstime
    return total / _CLK


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        st = _stat(p)
        if st:
            total += int(st[21]) * _PAGE
    return total / 2**20


class PeakRss:
    """Samples the tree's resident memory every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.pid, self.interval = pid, interval
        self.peak = self.first = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def sshd_accepts(log: Path) -> int:
    """Connections sshd has authenticated since its log began."""
    try:
        return sum(1 for line in log.open(errors="replace") if "Accepted publickey" in line)
    except FileNotFoundError:
        return 0


def slurm_rpcs(env: dict[str, str]) -> dict[str, int]:
    """slurmctld's RPC counts by message type; ``REQUEST_JOB_INFO`` is one ``squeue``."""
    out = subprocess.run(["sdiag"], env=env, capture_output=True, text=True, timeout=30, check=True).stdout
    section = out.split("by message type", 1)[1].split("by user", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+)\s+\(\s*\d+\)\s+count:(\d+)", section)}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def job_end_times(jobcomp_log: Path, job_ids: set[str]) -> dict[str, datetime]:
    """End time of each job (of the last element, for an array) from Slurm's completion log.

    Slurm writes local time with one-second resolution, truncated: a delay measured from it is
    up to one second longer than the true one.
    """
    ends: dict[str, datetime] = {}
    for line in jobcomp_log.open(errors="replace"):
        kv = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        array = kv.get("ArrayJobId")
        key = array if array not in (None, "", "0", "4294967294") else kv.get("JobId")
        if key in job_ids and kv.get("EndTime", "Unknown") != "Unknown":
            end = datetime.strptime(kv["EndTime"], "%Y-%m-%dT%H:%M:%S").astimezone(timezone.utc)
            ends[key] = max(end, ends.get(key, end))
    return ends


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class QueryRate:
    """Reads slurmctld's squeue counters every ``interval`` seconds in a thread, so the busiest
    poll interval shows, not only the average (jobs that end early thin out an average)."""

    TYPES = ("REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE")

    def __init__(self, env: dict[str, str], interval: float):
        self.env, self.interval = env, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        rpcs = slurm_rpcs(self.env)
        return sum(rpcs.get(t, 0) for t in self.TYPES)

    def _run(self) -> None:
        self.samples.append(self._count())
        while not self._stop.wait(self.interval):
            self.samples.append(self._count())

    @property
    def peak(self) -> int:
        """Most squeue calls slurmctld answered within one interval."""
        return max((b - a for a, b in zip(self.samples, self.samples[1:])), default=0)

    def __enter__(self) -> "QueryRate":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
