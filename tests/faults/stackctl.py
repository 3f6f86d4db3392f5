"""Cause faults on the stack instance of this session, and always undo them.

Only processes whose pid this instance's pid files name (and their descendants) are signalled,
never anything found by name: another stack instance may share the machine. ``outage`` restores
the service and waits for its health check even when the test body fails, so the tests after a
fault case find a whole stack.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first found by their parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Faults:
    """Fault injection bound to one stack context (its layout names the pid files)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.layout = ctx.layout

    # Processes -----------------------------------------------------------------------------
    def pid(self, service: str) -> int | None:
        from devtools.stack import process

        return process.pid_alive(self.layout.pidfile(service))

    def kill(self, service: str) -> int:
        """SIGKILL the service and everything it started (a crash, not a clean stop)."""
        pid = self.pid(service)
        assert pid, f"{service} of this stack instance is not running"
        victims = [pid, *descendants(pid)]
        for p in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        from devtools.stack import process

        process.wait_for(lambda: not any(process.alive(p) for p in victims), timeout=15, interval=0.1)
        return pid

    def stop(self, service: str) -> None:
        """A clean stop (SIGTERM, then wait), as an administrator's restart does."""
        from devtools.stack import control
        from devtools.stack.services import by_name

        control.down([by_name(service)], quiet=True)

    def start(self, service: str) -> float:
        """Start the service again through the stack's own ``up``; returns seconds to healthy."""
        from devtools.stack import control
        from devtools.stack.services import by_name

        t0 = time.monotonic()
        control.up([by_name(service)], quiet=True)
        return time.monotonic() - t0

    @contextlib.contextmanager
    def outage(self, service: str):
        """Kill ``service`` on entry; on exit (even by an exception) start it and wait for health."""
        self.kill(service)
        try:
            yield
        finally:
            if not self.healthy(service):
                self.start(service)

    def healthy(self, service: str) -> bool:
        from devtools.stack.services import by_name

        return bool(self.pid(service)) and by_name(service).health(self.ctx)[0]

    # Slurm ---------------------------------------------------------------------------------
    def slurm(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(list(args), env=self.ctx.env, capture_output=True, text=True, timeout=30)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    @property
    def jobcomp(self) -> Path:
        return self.layout.slurm / "jobcomp.log"

    def jobcomp_records(self, name_prefix: str) -> list[dict[str, str]]:
        """Completion records whose job name starts with ``name_prefix`` (one per job end)."""
        if not self.jobcomp.exists():
            return []
        out = []
        for line in self.jobcomp.read_text().splitlines():
            kv = dict(tok.partition("=")[::2] for tok in line.split() if "=" in tok)
            if kv.get("Name", "").startswith(name_prefix):
                out.append(kv)
        return out

    def job_ids(self, name_prefix: str) -> set[str]:
        """Every job id Slurm knows by that name: still queued, or finished in accounting."""
        queued = self.slurm("squeue", "-h", "-o", "%i %j", check=False).split("\n")
        ids = {line.split()[0] for line in queued if len(line.split()) == 2 and line.split()[1].startswith(name_prefix)}
        return ids | {r["JobId"] for r in self.jobcomp_records(name_prefix)}

    def squeue_state(self, job_id: str) -> str:
        return self.slurm("squeue", "-h", "-j", job_id, "-o", "%T", check=False).strip()

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.squeue_state(job_id)
            if state in states:
                return state
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} never reached {states}; last state {state!r}")

    def workdir(self) -> Path:
        return self.layout.cluster / "work"
