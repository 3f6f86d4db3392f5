"""operators.trigger_dagrun: what it hands the task runner, and how it judges the awaited run."""
from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, DagRunTriggerException

from operators.trigger_dagrun import TriggerDagRunOperator


def _op(**kwargs):
    return TriggerDagRunOperator(task_id="evaluate", trigger_dag_id="openmath_eval", trigger_run_id="nightly__r__m0",
                                 conf={"model": "m"}, wait_for_completion=True, deferrable=True, poke_interval=30,
                                 **kwargs)


def test_execute_asks_the_task_runner_to_trigger_and_wait():
    with pytest.raises(DagRunTriggerException) as info:
        _op().execute({})
    e = info.value
    assert (e.trigger_dag_id, e.dag_run_id, e.conf) == ("openmath_eval", "nightly__r__m0", {"model": "m"})
    assert e.wait_for_completion and e.deferrable and e.poke_interval == 30
    assert (e.allowed_states, e.failed_states) == (["success"], ["failed"])
    assert not e.reset_dag_run and not e.skip_when_already_exists and e.logical_date is not None


def test_execute_complete_fails_only_on_a_failed_run():
    event = ("airflow.providers.standard.triggers.external_task.DagStateTrigger",
             {"run_ids": ["nightly__r__m0"], "nightly__r__m0": "success"})
    _op().execute_complete({}, event)
    event[1]["nightly__r__m0"] = "failed"
    with pytest.raises(AirflowException, match="openmath_eval failed"):
        _op().execute_complete({}, event)


def test_conf_must_be_json():
    with pytest.raises(ValueError, match="JSON"):
        TriggerDagRunOperator(task_id="t", trigger_dag_id="d", conf={"x": object()}).execute({})
