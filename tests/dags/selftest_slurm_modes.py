"""selftest_slurm_timeout and selftest_slurm_inline: one Slurm job each, run by the real scheduler
for the integration suite. ``timeout`` defers with a short ``wait_timeout`` (the scheduler ends
the deferral, the worker must cancel the job it gives up on); ``inline`` waits on the worker
(``deferrable=False``). Tagged ``selftest``."""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from operators.slurm.operator import SlurmJobOperator

PARAMS = {
    "command": Param("echo selftest", type="string"),
    "name": Param("selftest", type="string", pattern=r"^[A-Za-z0-9._-]+$"),
}
JOB = {"name": "{{ params.name }}", "command": "{{ params.command }}", "time": "00:05:00"}


@dag(dag_id="selftest_slurm_timeout", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False, tags=["selftest"], render_template_as_native_obj=True, params=PARAMS)
def selftest_slurm_timeout():
    SlurmJobOperator(task_id="job", profile="local", job=JOB, poll_interval=2.0, retries=0,
                     wait_timeout=timedelta(seconds=5))


@dag(dag_id="selftest_slurm_inline", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False, tags=["selftest"], render_template_as_native_obj=True, params=PARAMS)
def selftest_slurm_inline():
    SlurmJobOperator(task_id="job", profile="local", job=JOB, poll_interval=1.0, retries=0, deferrable=False)


timeout_dag = selftest_slurm_timeout()
inline_dag = selftest_slurm_inline()
