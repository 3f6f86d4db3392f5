"""One async poll loop per cluster connection, shared by every Slurm trigger in a triggerer.

Hundreds of deferred tasks must not mean hundreds of SSH connections and squeue calls: each
trigger registers the jobs it waits for, and one loop per (event loop, connection id) sends a
single batched command per interval (states of all jobs, accounting for jobs that left the
queue, new bytes of streamed logs) and hands each trigger its part.

The loop reconnects with jittered exponential backoff when SSH drops (sshd restart, network
blip) and gives up only after ``max_disconnected_s`` without a working connection, failing its
watchers with a message instead of leaving tasks deferred forever.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from tasks.slurm import commands
from tasks.slurm.states import JobState

log = logging.getLogger(__name__)

# A job must be missing from squeue and accounting this many polls in a row to be LOST: a
# freshly submitted job can miss one squeue answer while slurmctld restarts.
MISSING_POLLS_BEFORE_LOST = 5


@dataclass
class Watch:
    """What one trigger waits for; the poller fills ``updates``."""

    job_id: str
    log_path: str | None = None
    log_offset: int = 0
    updates: asyncio.Queue = field(default_factory=asyncio.Queue)
    missing_polls: int = 0


@dataclass
class Update:
    states: list[JobState]
    log_bytes: bytes = b""
    log_offset: int = 0
    error: str | None = None
    lost: bool = False


class ClusterPoller:
    _registry: dict[tuple[int, str], "ClusterPoller"] = {}

    def __init__(self, conn_id: str, interval: float, accounting: str, max_disconnected_s: float):
        self.conn_id = conn_id
        self.interval = interval
        self.accounting = accounting
        self.max_disconnected_s = max_disconnected_s
        self.watches: dict[int, Watch] = {}
        self._conn = None
        self._task: asyncio.Task | None = None
        self._next_id = 0
        # Counters the scale benchmark reads.
        self.connections_opened = 0
        self.polls = 0

    @classmethod
    def get(cls, conn_id: str, interval: float, accounting: str, max_disconnected_s: float = 1800.0
            ) -> "ClusterPoller":
        loop = asyncio.get_running_loop()
        key = (id(loop), conn_id)
        poller = cls._registry.get(key)
        if poller is None:
            poller = cls._registry[key] = cls(conn_id, interval, accounting, max_disconnected_s)
        poller.interval = min(poller.interval, interval)
        return poller

    def add(self, watch: Watch) -> int:
        self._next_id += 1
        self.watches[self._next_id] = watch
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"slurm-poller-{self.conn_id}")
        return self._next_id

    def remove(self, watch_id: int) -> None:
        self.watches.pop(watch_id, None)

    async def _connect(self):
        from airflow.providers.ssh.hooks.ssh import SSHHookAsync

        self._conn = await SSHHookAsync(ssh_conn_id=self.conn_id).get_conn()
        self.connections_opened += 1
        return self._conn

    async def run(self, command: str, timeout: float = 120.0) -> tuple[int, str, str]:
        """Run one command on the shared connection (opened on demand)."""
        conn = self._conn or await self._connect()
        result = await conn.run(command, check=False, timeout=timeout)
        return result.exit_status or 0, result.stdout or "", result.stderr or ""

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def _command(self, watches: list[Watch]) -> str:
        ids = [w.job_id for w in watches]
        parts = [commands.squeue_poll_command(ids)]
        missing = [w.job_id for w in watches if w.missing_polls]
        if missing:
            parts.append(commands.accounting_command(missing, self.accounting))
        for w in watches:
            if w.log_path:
                parts.append(commands.tail_command(w.log_path, w.log_offset))
        return "; ".join(parts)

    async def _loop(self) -> None:
        backoff = 1.0
        down_since: float | None = None
        while self.watches:
            watches = list(self.watches.values())
            try:
                _, out, _ = await self.run(self._command(watches))
                self.polls += 1
                backoff, down_since = 1.0, None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._drop()
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since > self.max_disconnected_s:
                    for w in watches:
                        w.updates.put_nowait(Update(states=[], error=f"cannot reach the cluster over SSH "
                                                                     f"'{self.conn_id}' for {now - down_since:.0f}s: {exc}"))
                    return
                log.warning("Slurm poll over %s failed (%s); retrying in %.1fs", self.conn_id, exc, backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 30.0)
                continue
            self._dispatch(watches, out)
            await asyncio.sleep(self.interval)
        self._drop()

    def _dispatch(self, watches: list[Watch], out: str) -> None:
        squeue_ok = f"{commands.SQUEUE_RC_MARK} 0" in out
        squeue_text = out.split(commands.SQUEUE_RC_MARK, 1)[0]
        states = commands.parse_squeue(squeue_text)
        if commands.ACCT_MARK in out:
            acct_text = out[out.index(commands.ACCT_MARK):]
            acct_text = acct_text.split(commands.LOG_MARK, 1)[0]
            states += commands.parse_accounting(acct_text)
        tails = commands.parse_tails(out)
        by_job: dict[str, list[JobState]] = {}
        for s in states:
            by_job.setdefault(s.array_job_id or s.job_id, []).append(s)
        for w in watches:
            mine = by_job.get(w.job_id.split("_")[0], [])
            size, data = tails.get(w.log_path, (-1, b"")) if w.log_path else (-1, b"")
            w.log_offset += len(data)
            if not mine and squeue_ok:
                w.missing_polls += 1
            elif mine:
                w.missing_polls = 0
            lost = w.missing_polls >= MISSING_POLLS_BEFORE_LOST
            w.updates.put_nowait(Update(states=mine, log_bytes=data, log_offset=w.log_offset, lost=lost))
