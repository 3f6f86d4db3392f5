"""Trigger a run of another DAG and wait for it, without the standard provider's parse cost.

The standard provider's ``TriggerDagRunOperator`` module imports Airflow's ORM (DagRun,
SerializedDagModel, ``airflow.api.common.trigger_dag``) at its top for its Airflow 2 path, which
costs ~0.25 s in every process that parses a DAG using it. On Airflow 3 the operator only raises
:class:`~airflow.sdk.exceptions.DagRunTriggerException`; the task runner then creates the run
through the execution API and, with ``deferrable``, defers to the provider's ``DagStateTrigger``
with ``execute_complete`` as the resume method. This operator does the same with nothing but the
Task SDK imported at parse time, so the DAG run it creates, the XComs, the deferral and the
failure message are those of the provider's operator.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from operators.links import TriggeredDagRunLink


class TriggerDagRunOperator(BaseOperator):
    """Trigger ``trigger_dag_id`` with ``conf`` as run ``trigger_run_id``; optionally wait for it.

    :param trigger_dag_id: the DAG to trigger (templated).
    :param trigger_run_id: the run id of the triggered run (templated); a retry finds the run it
        created, and an existing run fails the task (as the provider's operator does).
    :param conf: the run's conf (templated).
    :param wait_for_completion: wait until the run ends in ``allowed_states`` or ``failed_states``.
    :param poke_interval: seconds between checks of the triggered run's state.
    :param allowed_states: run states that count as success.
    :param failed_states: run states that fail the task.
    :param deferrable: wait in the triggerer rather than holding a worker slot.
    """

    template_fields: Sequence[str] = ("trigger_dag_id", "trigger_run_id", "conf")
    template_fields_renderers = {"conf": "py"}
    ui_color = "#ffefeb"
    operator_extra_links = (TriggeredDagRunLink(),)

    def __init__(self, *, trigger_dag_id: str, trigger_run_id: str | None = None, conf: dict | None = None,
                 wait_for_completion: bool = False, poke_interval: int = 60,
                 allowed_states: Sequence[str] = ("success",), failed_states: Sequence[str] = ("failed",),
                 deferrable: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.trigger_dag_id = trigger_dag_id
        self.trigger_run_id = trigger_run_id
        self.conf = conf
        self.wait_for_completion = wait_for_completion
        self.poke_interval = poke_interval
        self.allowed_states = list(allowed_states)
        self.failed_states = list(failed_states)
        self.deferrable = deferrable

    def execute(self, context) -> None:
        import json

        from airflow.sdk.exceptions import DagRunTriggerException

        try:
            json.dumps(self.conf)
        except TypeError as exc:
            raise ValueError(f"conf of task {self.task_id} is not JSON-serializable: {exc}") from exc
        logical_date = datetime.now(timezone.utc)
        run_id = str(self.trigger_run_id or f"manual__{logical_date.isoformat()}")
        self.trigger_run_id = run_id
        raise DagRunTriggerException(
            trigger_dag_id=self.trigger_dag_id, dag_run_id=run_id, conf=self.conf, logical_date=logical_date,
            reset_dag_run=False, skip_when_already_exists=False, wait_for_completion=self.wait_for_completion,
            allowed_states=self.allowed_states, failed_states=self.failed_states,
            poke_interval=self.poke_interval, deferrable=self.deferrable,
        )

    def execute_complete(self, context, event: tuple[str, dict[str, Any]]) -> None:
        """The triggered run reached one of the awaited states; fail if it is a failed one."""
        from airflow.sdk.exceptions import AirflowException

        _, data = event
        failed = [run_id for run_id in data["run_ids"] if data.get(run_id) in self.failed_states]
        if failed:
            raise AirflowException(f"{self.trigger_dag_id} failed with failed states {self.failed_states} "
                                   f"for run_ids {failed}")
        for run_id in data["run_ids"]:
            self.log.info("%s finished with allowed state %s for run_id %s", self.trigger_dag_id,
                          data.get(run_id), run_id)
