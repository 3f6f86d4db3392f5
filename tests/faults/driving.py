"""Run several Slurm triggers at once in one event loop, the way a triggerer does.

The triggers share one :class:`operators.slurm.poller.ClusterPoller` (one SSH connection), so a
fault hits all of them together, as it would in production. The operator and trigger are the
product's; only Airflow's supervisor is replaced (see tests/integration/slurm_driver.py).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

from operators.slurm.operator import SlurmJobOperator
from tests.integration.slurm_driver import TaskInstanceStandIn, context_for, submit
from tests.polling import wait_until


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def operator(job: dict, task_id: str = "job", **kw) -> SlurmJobOperator:
    kw.setdefault("poll_interval", 1.0)
    return SlurmJobOperator(task_id=task_id, job=job, profile="local", **kw)


async def _first_event(trigger):
    agen = trigger.run()
    try:
        return await agen.__anext__()
    finally:
        await agen.aclose()


def wait_all(deferrals: list, during=None, timeout: float = 180.0) -> tuple[list, dict]:
    """Events of every trigger (in order) and the shared poller's counters; ``during(poller)``
    runs concurrently (the fault), given the poller so that it can wait for what the poller saw."""
    stats: dict = {}

    async def main():
        from operators.slurm.poller import ClusterPoller

        poller = ClusterPoller.get(deferrals[0].trigger.ssh_conn_id, 1.0, "jobcomp")
        base = (poller.connections_opened, poller.polls)
        tasks = [asyncio.create_task(_first_event(d.trigger)) for d in deferrals]
        await asyncio.sleep(0)
        if during is not None:
            await during(poller)
        events = await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        stats.update(connections=poller.connections_opened - base[0], polls=poller.polls - base[1])
        return events

    t0 = time.monotonic()
    events = asyncio.run(main())
    stats["wall_s"] = time.monotonic() - t0
    return events, stats


async def until(predicate, timeout: float, what: str, interval: float = 0.1):
    """:func:`tests.polling.wait_until` from inside a fault's coroutine (the poll loop runs in a
    thread, so the triggers on the event loop keep running)."""
    return await asyncio.to_thread(wait_until, predicate, timeout, what, interval=interval)


class LogWatch(logging.Handler):
    """Sets ``event`` when ``logger`` logs a warning (or worse) whose message starts with
    ``prefix``: the code under test has met the fault. It only watches; the code still decides."""

    def __init__(self, logger: logging.Logger | str, prefix: str):
        super().__init__(logging.WARNING)
        self.event = threading.Event()
        self.prefix = prefix
        self._logger = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
        self._level, self._disabled = self._logger.level, self._logger.disabled

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(self.prefix):
            self.event.set()

    def __enter__(self):
        self._logger.addHandler(self)
        self._logger.disabled = False  # a logging config applied after the logger was made disables it
        if not self._logger.isEnabledFor(logging.WARNING):
            self._logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
        self._logger.disabled = self._disabled


def poll_failures() -> LogWatch:
    """Set once the shared Slurm poller logs that a poll failed (it has met the outage)."""
    from operators.slurm import poller

    return LogWatch(poller.log, "Slurm poll over")


def complete(op, ti: TaskInstanceStandIn, event) -> dict:
    return op.execute_complete(context_for(ti), event.payload)


__all__ = ["TaskInstanceStandIn", "submit", "operator", "unique", "wait_all", "complete", "until", "LogWatch",
           "poll_failures"]
