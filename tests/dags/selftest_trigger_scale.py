"""selftest_trigger_scale: one mapped task instance per Slurm job id in ``conf["jobs"]``, each
tracked by :class:`SlurmJobTrigger` in the real triggerer (bench/bench_triggerer.py drives it).

The jobs are submitted by the benchmark, so the task instances start in the triggerer
(``start_from_trigger``) and a job that succeeds ends its task there (``end_from_trigger``):
hundreds of tasks then need no worker slot at all, only the triggerer. A job that fails resumes
its task on a worker, which fails it with the job's states. Tagged ``selftest``.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import BaseOperator, dag, task
from airflow.triggers.base import StartTriggerArgs

# The triggerer renders this per task instance, before the trigger runs.
JOB_OF_THIS_INDEX = "{{ dag_run.conf['jobs'][ti.map_index] }}"


class TrackSlurmJob(BaseOperator):
    """Wait for a job submitted elsewhere; ``job_id`` is a template the triggerer renders."""

    template_fields = ("job_id",)
    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(
        trigger_cls="operators.slurm.trigger.SlurmJobTrigger",
        trigger_kwargs={"ssh_conn_id": "slurm_local", "job_id": JOB_OF_THIS_INDEX, "poll_interval": 2.0,
                        "accounting": "jobcomp", "stream_logs": False, "end_from_trigger": True},
        next_method="execute_complete",
        next_kwargs=None,
        timeout=None,
    )

    def __init__(self, *, slot: int, job_id: str = JOB_OF_THIS_INDEX, **kwargs):
        super().__init__(**kwargs)
        self.slot = slot
        self.job_id = job_id

    def execute(self, context):
        raise RuntimeError("this task starts in the triggerer (start_from_trigger)")

    def execute_complete(self, context, event):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"Slurm job {event.get('job_id')} ended {event.get('status')}: "
                                   f"{[s['state'] for s in event.get('states', [])]} {event.get('message', '')}")


@dag(
    dag_id="selftest_trigger_scale",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["selftest"],
    max_active_tasks=1000,
)
def selftest_trigger_scale():
    @task
    def slots(dag_run=None) -> list[int]:
        return list(range(len(dag_run.conf["jobs"])))

    TrackSlurmJob.partial(task_id="track", retries=0).expand(slot=slots())


dag = selftest_trigger_scale()
