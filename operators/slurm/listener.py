"""Cancel the Slurm job of a deferred task that a person ends before any triggerer runs its trigger.

Airflow cancels the trigger of a task marked failed (or succeeded) and calls the trigger's
``on_kill``, which cancels the job (:meth:`SlurmJobTrigger.on_kill`), but only for a trigger a
triggerer is running. In the seconds after a task defers, before the triggerer has picked the
new trigger up, the mark leaves the trigger row to be deleted unread and the job runs on for
nobody. This listener closes that window where the mark is made: the API server calls it for
each task instance whose state a user set, while the task instance still points at its trigger,
whose arguments name the SSH connection and the job id the operator recorded when it deferred.

A trigger that was already running is cancelled twice (here and by ``on_kill``); ``scancel`` of
a job already cancelled or finished changes nothing.
"""
from __future__ import annotations

import logging

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

TRIGGER_CLASSPATH = "operators.slurm.trigger.SlurmJobTrigger"


def _deferred_slurm_job(task_instance) -> tuple[str, str] | None:
    """(ssh connection id, job id) of the Slurm trigger the task instance still points at."""
    trigger_id = getattr(task_instance, "trigger_id", None)
    if trigger_id is None:  # a worker's RuntimeTaskInstance, or a task that is not deferred
        return None
    state = getattr(task_instance, "state", None)
    if getattr(state, "value", state) not in ("failed", "success"):
        return None  # up for retry: the next try reconnects to the job through its record
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    with create_session() as session:
        trigger = session.get(Trigger, trigger_id)
        if trigger is None or trigger.classpath != TRIGGER_CLASSPATH:
            return None
        kwargs = trigger.kwargs
    job_id = str(kwargs.get("job_id") or "")
    if not job_id or "{{" in job_id:  # a job id still a template was never submitted by us
        return None
    return kwargs["ssh_conn_id"], job_id


def cancel_deferred_job(task_instance) -> str | None:
    """Cancel the job; returns its id, or None when the task instance waits for no Slurm job."""
    try:
        found = _deferred_slurm_job(task_instance)
        if found is None:
            return None
        conn_id, job_id = found
        from operators.slurm.hook import SlurmHook
        from tasks.slurm import commands

        SlurmHook(conn_id, command_timeout=30).run(commands.cancel_command([job_id]), check=False)
        log.warning("Task %s was ended while deferred: cancelled Slurm job %s", task_instance, job_id)
        return job_id
    except Exception:  # a listener must never break the user's action
        log.exception("Could not cancel the Slurm job of %s", task_instance)
        return None


@hookimpl
def on_task_instance_failed(previous_state, task_instance, error):
    cancel_deferred_job(task_instance)


@hookimpl
def on_task_instance_success(previous_state, task_instance):
    cancel_deferred_job(task_instance)
