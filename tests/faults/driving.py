"""Run several Slurm triggers at once in one event loop, the way a triggerer does.

The triggers share one :class:`operators.slurm.poller.ClusterPoller` (one SSH connection), so a
fault hits all of them together, as it would in production. The operator and trigger are the
product's; only Airflow's supervisor is replaced (see tests/integration/slurm_driver.py).
"""
from __future__ import annotations

import asyncio
import time
import uuid

from operators.slurm.operator import SlurmJobOperator
from tests.integration.slurm_driver import TaskInstanceStandIn, context_for, submit


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
    """Events of every trigger (in order) and the shared poller's counters; ``during()`` runs
    concurrently (the fault)."""
    stats: dict = {}

    async def main():
        from operators.slurm.poller import ClusterPoller

        poller = ClusterPoller.get(deferrals[0].trigger.ssh_conn_id, 1.0, "jobcomp")
        base = (poller.connections_opened, poller.polls)
        tasks = [asyncio.create_task(_first_event(d.trigger)) for d in deferrals]
        await asyncio.sleep(0)
        if during is not None:
            await during()
        events = await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        stats.update(connections=poller.connections_opened - base[0], polls=poller.polls - base[1])
        return events

    t0 = time.monotonic()
    events = asyncio.run(main())
    stats["wall_s"] = time.monotonic() - t0
    return events, stats


def complete(op, ti: TaskInstanceStandIn, event) -> dict:
    return op.execute_complete(context_for(ti), event.payload)


__all__ = ["TaskInstanceStandIn", "submit", "operator", "unique", "wait_all", "complete"]
