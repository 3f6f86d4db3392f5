"""Drive SlurmJobOperator and SlurmJobTrigger directly against the real local cluster.

The scheduler and triggerer are not involved here (the REST-driven tests cover them); what is
under test is our operator, trigger, poller and hook against real sshd and Slurm. Airflow's
runtime task instance is replaced by :class:`TaskInstanceStandIn`, which records XComs and
carries the identity fields the operator reads: a test double for the Airflow supervisor,
which cannot run outside a scheduler.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from airflow.sdk.exceptions import TaskDeferred


@dataclass
class TaskInstanceStandIn:
    dag_id: str = "selftest_direct"
    task_id: str = "job"
    run_id: str = field(default_factory=lambda: f"test__{uuid.uuid4().hex[:12]}")
    map_index: int = -1
    try_number: int = 1
    xcoms: dict = field(default_factory=dict)

    def xcom_push(self, key: str, value) -> None:
        self.xcoms[key] = value


def context_for(ti: TaskInstanceStandIn) -> dict:
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id}


def submit(op, ti: TaskInstanceStandIn) -> TaskDeferred:
    """Run execute() up to its deferral and return the deferral (trigger inside)."""
    try:
        op.execute(context_for(ti))
    except TaskDeferred as deferred:
        return deferred
    raise AssertionError("operator finished without deferring")


async def _first_event(trigger, timeout: float):
    agen = trigger.run()
    try:
        return await asyncio.wait_for(agen.__anext__(), timeout)
    finally:
        await agen.aclose()


def run_trigger(trigger, timeout: float = 120.0, during=None):
    """Run the trigger to its single event; ``during(loop)`` may act (e.g. restart sshd) meanwhile."""

    async def main():
        task = asyncio.create_task(_first_event(trigger, timeout))
        if during is not None:
            await during()
        return await task

    return asyncio.run(main())


def finish(op, ti: TaskInstanceStandIn, deferred: TaskDeferred, timeout: float = 120.0, during=None):
    event = run_trigger(deferred.trigger, timeout, during)
    return op.execute_complete(context_for(ti), event.payload)
