"""SlurmJobTrigger's state is its constructor arguments: serialize() must round-trip exactly."""
from __future__ import annotations

import asyncio
import importlib

import pytest

from operators.slurm.trigger import SlurmJobTrigger
from tasks.slurm.states import JobState


def test_serialize_round_trip():
    trigger = SlurmJobTrigger(ssh_conn_id="slurm_local", job_id="123", poll_interval=3, accounting="jobcomp",
                              log_path="/w/logs/x-123.log", log_offset=17, stream_logs=False,
                              max_disconnected_s=60, wake_after_s=300, deferred_at=1765000000.5)
    path, kwargs = trigger.serialize()
    assert path == "operators.slurm.trigger.SlurmJobTrigger"
    assert kwargs == {"ssh_conn_id": "slurm_local", "job_id": "123", "poll_interval": 3.0, "accounting": "jobcomp",
                      "log_path": "/w/logs/x-123.log", "log_offset": 17, "stream_logs": False,
                      "max_disconnected_s": 60.0, "end_from_trigger": False,
                      "wake_after_s": 300.0, "deferred_at": 1765000000.5}
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_first_event_waits_out_what_is_left_of_the_settle_time_since_the_deferral():
    """Airflow 3.3.2 fails a task whose trigger fires before the scheduler saw its worker exit
    (operators/slurm/trigger.py SETTLE_S); the wait counts from the deferral, not the trigger's start."""
    from operators.slurm.trigger import SETTLE_S, settle_delay

    assert settle_delay(None, 1000.0) == SETTLE_S                      # no deferral time: the whole wait
    assert settle_delay(1000.0, 1003.0) == SETTLE_S - 3                # picked up 3 s after the deferral
    assert settle_delay(1000.0, 1000.0 + SETTLE_S + 60) == 0           # resumed by a restarted triggerer
    assert settle_delay(1000.0 + 30, 1000.0) == SETTLE_S               # a worker clock ahead: capped


def test_trigger_rejects_a_job_id_that_is_not_one():
    with pytest.raises(ValueError):
        SlurmJobTrigger(ssh_conn_id="c", job_id="1;reboot")


def test_operator_rejects_unknown_retry_outcome():
    from operators.slurm.operator import SlurmJobOperator

    with pytest.raises(ValueError, match="NODEFAIL"):
        SlurmJobOperator(task_id="t", job={"name": "x", "command": "true"}, retry_on=("NODEFAIL",))


def test_worst_outcome_of_mixed_array_elements_decides_the_retry():
    """Infrastructure outcomes rank first: they decide whether a retry can help."""
    from tasks.slurm.states import Outcome, worst as worst_outcome

    def worst(*states):
        return worst_outcome(JobState(job_id=str(i), state=s).outcome for i, s in enumerate(states))

    assert worst("FAILED", "NODE_FAIL", "CANCELLED") is Outcome.NODE_FAIL
    assert worst("FAILED", "TIMEOUT") is Outcome.TIMEOUT
    assert worst("CANCELLED", "FAILED") is Outcome.CANCELLED
    assert worst("FAILED", "OUT_OF_MEMORY", "PREEMPTED") is Outcome.PREEMPTED
    assert worst("FAILED", "BOOT_FAIL") is Outcome.NODE_FAIL
    assert worst("FAILED", "FAILED") is Outcome.FAILED
    assert worst("FAILED", "SOMETHING_NEW") is Outcome.FAILED  # an unknown state counts as LOST, ranked last
    assert worst("SOMETHING_NEW") is Outcome.LOST


def test_templated_job_id_is_checked_once_rendered():
    template = "{{ dag_run.conf['jobs'][ti.map_index] }}"
    trigger = SlurmJobTrigger(ssh_conn_id="c", job_id=template)
    assert trigger.serialize()[1]["job_id"] == template
    trigger.job_id = "1;reboot"  # what a bad conf would render to

    async def first():
        async for event in trigger.run():
            return event

    # Checked before any poller or connection is made.
    with pytest.raises(ValueError, match="not a Slurm job id"):
        asyncio.run(first())
