"""The trigger that waits for one Slurm job (or one job array) in Airflow's triggerer."""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from tasks.slurm import commands
from tasks.slurm.states import EventStatus, JobEvent, JobState, Outcome


# Airflow 3.3.2 fails a deferred task whose trigger fires within a few seconds of the deferral: the
# task is queued again before the executor reports the deferring process's exit as "success", and
# the scheduler then takes that report for a change from outside and marks the task FAILED
# (apache/airflow#67287, the queued variant of #66374). A Slurm job that ends that quickly is
# common (a failed start, a cached result), so no event leaves the trigger before this many
# seconds after the task deferred (``deferred_at``, stamped by the operator), or after the
# trigger started when the operator did not say.
SETTLE_S = 10.0


def settle_delay(deferred_at: float | None, now: float) -> float:
    """Seconds the trigger holds its first event: what is left of SETTLE_S since the deferral
    (wall clock, since worker and triggerer are separate processes), never more than SETTLE_S
    (a worker clock ahead of the triggerer's), nothing for a trigger resumed long after."""
    if deferred_at is None:
        return SETTLE_S
    return min(SETTLE_S, max(0.0, deferred_at + SETTLE_S - now))


async def _settle(loop: asyncio.AbstractEventLoop, settled_at: float) -> None:
    delay = settled_at - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


class SlurmJobTrigger(BaseTrigger):
    """Fires once, when the job (every element of an array) is terminal or cannot be tracked.

    Its state is its constructor arguments (``serialize`` returns exactly them), so a restarted
    triggerer resumes it, including the log offset already streamed.

    With ``end_from_trigger``, a job that succeeded ends its task in the triggerer
    (``TaskSuccessEvent``) instead of resuming it on a worker; any other end still resumes the
    task, so the operator judges failures. A task started in the triggerer (``start_from_trigger``)
    may pass ``job_id`` as a template; it is rendered before :meth:`run`, which checks it.
    """

    def __init__(self, *, ssh_conn_id: str, job_id: str, poll_interval: float = 10.0,
                 accounting: str = "slurmdbd", log_path: str | None = None, log_offset: int = 0,
                 stream_logs: bool = True, max_disconnected_s: float = 1800.0, end_from_trigger: bool = False,
                 wake_after_s: float | None = None, deferred_at: float | None = None):
        super().__init__()
        self.ssh_conn_id = ssh_conn_id
        self.job_id = job_id if "{{" in str(job_id) else commands.check_job_id(job_id)
        self.poll_interval = float(poll_interval)
        self.accounting = accounting
        self.log_path = log_path
        self.log_offset = int(log_offset)
        self.stream_logs = bool(stream_logs)
        self.max_disconnected_s = float(max_disconnected_s)
        # Fire a "wake" event while the job still runs, so the task can do periodic work on a
        # worker (log training curves) and defer again; None = fire only at the end.
        self.wake_after_s = float(wake_after_s) if wake_after_s else None
        self.end_from_trigger = bool(end_from_trigger)
        # When the task deferred (time.time() on the worker): see SETTLE_S.
        self.deferred_at = float(deferred_at) if deferred_at is not None else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ssh_conn_id": self.ssh_conn_id,
                "job_id": self.job_id,
                "poll_interval": self.poll_interval,
                "accounting": self.accounting,
                "log_path": self.log_path,
                "log_offset": self.log_offset,
                "stream_logs": self.stream_logs,
                "max_disconnected_s": self.max_disconnected_s,
                "end_from_trigger": self.end_from_trigger,
                "wake_after_s": self.wake_after_s,
                "deferred_at": self.deferred_at,
            },
        )

    def _poller(self):
        from operators.slurm.poller import ClusterPoller

        return ClusterPoller.get(self.ssh_conn_id, self.poll_interval, self.accounting, self.max_disconnected_s)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from operators.slurm.poller import Watch

        self.job_id = commands.check_job_id(self.job_id)
        poller = self._poller()
        # An array's elements each have their own log (…_%a.log); only a single log is streamed.
        streamed = self.log_path if self.stream_logs and self.log_path and "%" not in self.log_path else None
        watch = Watch(job_id=self.job_id, log_path=streamed, log_offset=self.log_offset)
        watch_id = poller.add(watch)
        last_state = None
        pending_text = b""
        loop = asyncio.get_running_loop()
        settled_at = loop.time() + settle_delay(self.deferred_at, time.time())
        wake_at = loop.time() + self.wake_after_s if self.wake_after_s else None
        latest: list[JobState] = []
        try:
            while True:
                try:
                    timeout = None if wake_at is None else max(wake_at - loop.time(), 0)
                    update = await asyncio.wait_for(watch.updates.get(), timeout)
                except asyncio.TimeoutError:
                    # Resume the log at the start of the unfinished line, so no text is lost.
                    await _settle(loop, settled_at)
                    yield TriggerEvent(self._event(EventStatus.WAKE, latest, watch.log_offset - len(pending_text)))
                    return
                if update.error:
                    await _settle(loop, settled_at)
                    yield TriggerEvent(self._event(EventStatus.ERROR, [], watch.log_offset, update.error))
                    return
                if update.log_bytes:
                    pending_text += update.log_bytes
                    *complete, pending_text = pending_text.split(b"\n")
                    for line in complete:
                        self.log.info("[slurm %s] %s", self.job_id, line.decode("utf-8", "replace"))
                self.log_offset = update.log_offset
                latest = update.states or latest
                summary = ",".join(sorted({s.state for s in update.states}))
                if summary and summary != last_state:
                    # A job still waiting in the queue when tracking starts is not news (the
                    # operator logged its submission); skipping that line matters at scale: the
                    # triggerer's runner writes log lines synchronously to its supervisor, and
                    # hundreds of triggers starting together used to flood that channel while
                    # the supervisor was busy sending them their workloads.
                    quiet = last_state is None and summary == "PENDING"
                    (self.log.debug if quiet else self.log.info)("Slurm job %s: %s", self.job_id, summary)
                    last_state = summary
                if update.states and all(s.terminal for s in update.states):
                    await _settle(loop, settled_at)
                    if pending_text:
                        self.log.info("[slurm %s] %s", self.job_id, pending_text.decode("utf-8", "replace"))
                    if self.end_from_trigger and all(s.outcome is Outcome.SUCCESS for s in update.states):
                        yield TaskSuccessEvent(xcoms={"slurm_job_id": self.job_id})
                        return
                    yield TriggerEvent(self._event(EventStatus.DONE, update.states, update.log_offset))
                    return
                if update.lost:
                    await _settle(loop, settled_at)
                    yield TriggerEvent(self._event(EventStatus.LOST, update.states, update.log_offset,
                                                   f"job {self.job_id} is in neither squeue nor accounting"))
                    return
        finally:
            poller.remove(watch_id)

    def _event(self, status: EventStatus, states: list[JobState], offset: int, message: str = "") -> dict[str, Any]:
        return JobEvent(status, self.job_id, tuple(states), self.log_path, offset, message).to_dict()

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel the job so no GPU keeps working for nobody."""
        self.log.info("Task killed while deferred: cancelling Slurm job %s", self.job_id)
        poller = self._poller()
        try:
            await asyncio.wait_for(poller.run(commands.cancel_command([self.job_id])), timeout=60)
        finally:
            if not poller.watches:
                poller._drop()
