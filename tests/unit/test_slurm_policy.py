"""The Slurm outcome policy as data (tasks/slurm/states.py) and the typed event between the
trigger and the operators."""
from __future__ import annotations

import json

import pytest

from tasks.slurm.states import (CONTINUE_AFTER, DEFAULT_RETRY_ON, POLICY, TERMINAL, TRAINING_RETRY_ON, EventStatus,
                                JobEvent, JobState, Outcome, worst)


def test_every_outcome_has_one_policy_row_and_severities_are_distinct():
    assert set(POLICY) == set(Outcome)
    severities = [p.severity for p in POLICY.values()]
    assert len(set(severities)) == len(severities)
    assert set(TERMINAL.values()) <= set(POLICY)


def test_the_policy_reads_as_before():
    """The sets the operators used to spell out, now derived from the table."""
    assert set(DEFAULT_RETRY_ON) == {"FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "LOST"}
    assert CONTINUE_AFTER == {Outcome.SUCCESS, Outcome.TIMEOUT, Outcome.PREEMPTED, Outcome.NODE_FAIL}
    # A training chain continues after time and preemption; it retries only real failures.
    assert set(TRAINING_RETRY_ON) == {"FAILED", "OUT_OF_MEMORY", "LOST"}
    assert "CANCELLED" not in DEFAULT_RETRY_ON  # a person cancelled it: never retried


@pytest.mark.parametrize("states,expected", [
    (("FAILED", "NODE_FAIL", "CANCELLED"), Outcome.NODE_FAIL),
    (("FAILED", "TIMEOUT"), Outcome.TIMEOUT),
    (("CANCELLED", "FAILED"), Outcome.CANCELLED),
    (("FAILED", "OUT_OF_MEMORY", "PREEMPTED"), Outcome.PREEMPTED),
    (("OUT_OF_MEMORY", "TIMEOUT"), Outcome.OUT_OF_MEMORY),
    (("FAILED", "BOOT_FAIL"), Outcome.NODE_FAIL),
    (("SOMETHING_NEW",), Outcome.LOST),
])
def test_worst_outcome_follows_the_severity_column(states, expected):
    assert worst(JobState(job_id=str(i), state=s).outcome for i, s in enumerate(states)) is expected


def test_worst_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        worst([])


def _event() -> JobEvent:
    states = (JobState(job_id="7_1", state="FAILED", reason="NonZeroExitCode", exit_code=3, array_job_id="7",
                       array_task_id="1", elapsed_s=61, nodes=1, gpus=2, source="sacct", extra={"x": "y"}),
              JobState(job_id="7_2", state="COMPLETED", array_job_id="7", array_task_id="2"))
    return JobEvent(EventStatus.DONE, "7", states, "/w/logs/j-7_%a.log", 1234, "")


def test_event_round_trips_through_json():
    event = _event()
    wire = json.loads(json.dumps(event.to_dict()))
    assert JobEvent.from_dict(wire) == event


def test_event_keys_never_change():
    """Events already stored by a running deployment's triggerer must still be read."""
    data = _event().to_dict()
    assert list(data) == ["status", "job_id", "states", "log_path", "log_offset", "message"]
    assert data["status"] == "done"
    assert [s.value for s in EventStatus] == ["done", "lost", "error", "wake"]
    old = {"status": "error", "job_id": "9", "states": [], "log_path": None, "log_offset": 0,
           "message": "no connection"}
    assert JobEvent.from_dict(old) == JobEvent(EventStatus.ERROR, "9", (), None, 0, "no connection")


def test_the_trigger_emits_the_typed_event():
    from operators.slurm.trigger import SlurmJobTrigger

    trigger = SlurmJobTrigger(ssh_conn_id="c", job_id="7", log_path="/w/logs/j-7_%a.log")
    event = _event()
    assert trigger._event(EventStatus.DONE, list(event.states), 1234) == event.to_dict()


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError):
        JobEvent.from_dict({"status": "finished", "job_id": "1"})
