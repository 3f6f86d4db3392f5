"""selftest_slurm_retry: one Slurm job with the operator's own retry settings (the product
defaults: one retry, ``retry_on`` as shipped), for the fault suite to show that an outcome in
``retry_on`` is retried by the real scheduler and that each try submits at most one job. The job
is not requeued by Slurm (``requeue`` off), so a retry can only be Airflow's. Tagged
``selftest``."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from operators.slurm.operator import SlurmJobOperator


@dag(
    dag_id="selftest_slurm_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["selftest"],
    max_active_runs=4,
    params={
        "command": Param("echo selftest", type="string", minLength=1),
        "name": Param("selftest", type="string", pattern=r"^[A-Za-z0-9._-]+$"),
    },
)
def selftest_slurm_retry():
    SlurmJobOperator(
        task_id="job",
        profile="local",
        job={"name": "{{ params.name }}", "command": "{{ params.command }}", "requeue": False},
        poll_interval=1.0,
    )


dag = selftest_slurm_retry()
