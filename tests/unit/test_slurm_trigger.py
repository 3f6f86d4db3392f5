"""SlurmJobTrigger's state is its constructor arguments: serialize() must round-trip exactly."""
from __future__ import annotations

import asyncio
import importlib

import pytest
from airflow.triggers.base import TaskSuccessEvent

from operators.slurm.poller import Update
from operators.slurm.trigger import SlurmJobTrigger
from tasks.slurm.states import JobState


def test_serialize_round_trip():
    trigger = SlurmJobTrigger(ssh_conn_id="slurm_local", job_id="123", poll_interval=3, accounting="jobcomp",
                              log_path="/w/logs/x-123.log", log_offset=17, stream_logs=False,
                              max_disconnected_s=60, wake_after_s=300)
    path, kwargs = trigger.serialize()
    assert path == "operators.slurm.trigger.SlurmJobTrigger"
    assert kwargs == {"ssh_conn_id": "slurm_local", "job_id": "123", "poll_interval": 3.0, "accounting": "jobcomp",
                      "log_path": "/w/logs/x-123.log", "log_offset": 17, "stream_logs": False,
                      "max_disconnected_s": 60.0, "end_from_trigger": False,
                      "wake_after_s": 300.0}
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_trigger_rejects_a_job_id_that_is_not_one():
    with pytest.raises(ValueError):
        SlurmJobTrigger(ssh_conn_id="c", job_id="1;reboot")


def test_operator_rejects_unknown_retry_outcome():
    from operators.slurm.operator import SlurmJobOperator

    with pytest.raises(ValueError, match="NODEFAIL"):
        SlurmJobOperator(task_id="t", job={"name": "x", "command": "true"}, retry_on=("NODEFAIL",))


class _FakePoller:
    """Answers the first poll of every watch with the given states."""

    def __init__(self, states):
        self.states = states
        self.watches = {}

    def add(self, watch):
        self.watches[1] = watch
        watch.updates.put_nowait(Update(states=self.states))
        return 1

    def remove(self, watch_id):
        self.watches.pop(watch_id, None)


def _first_event(trigger, states):
    trigger._poller = lambda: _FakePoller(states)

    async def first():
        async for event in trigger.run():
            return event

    return asyncio.run(first())


def test_end_from_trigger_ends_the_task_only_when_the_job_succeeded():
    done = [JobState(job_id="7", state="COMPLETED", exit_code=0)]
    failed = [JobState(job_id="8", state="FAILED", exit_code=3)]
    ends = _first_event(SlurmJobTrigger(ssh_conn_id="c", job_id="7", end_from_trigger=True), done)
    assert isinstance(ends, TaskSuccessEvent) and ends.xcoms == {"slurm_job_id": "7"}
    # A failure resumes the task on a worker, where the operator judges it.
    resumes = _first_event(SlurmJobTrigger(ssh_conn_id="c", job_id="8", end_from_trigger=True), failed)
    assert not isinstance(resumes, TaskSuccessEvent) and resumes.payload["status"] == "done"
    # The default is unchanged: every end resumes the task.
    default = _first_event(SlurmJobTrigger(ssh_conn_id="c", job_id="7"), done)
    assert not isinstance(default, TaskSuccessEvent) and default.payload["states"][0]["state"] == "COMPLETED"


def test_templated_job_id_is_checked_once_rendered():
    template = "{{ dag_run.conf['jobs'][ti.map_index] }}"
    trigger = SlurmJobTrigger(ssh_conn_id="c", job_id=template)
    assert trigger.serialize()[1]["job_id"] == template
    trigger.job_id = "1;reboot"  # what a bad conf would render to
    with pytest.raises(ValueError, match="not a Slurm job id"):
        _first_event(trigger, [])
