"""selftest_slurm: one Slurm job driven by params, for the integration suite to run through the
real scheduler and triggerer (kill while deferred, retries). Tagged ``selftest``."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from operators.slurm.operator import SlurmJobOperator


@dag(
    dag_id="selftest_slurm",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["selftest"],
    render_template_as_native_obj=True,
    params={
        "command": Param("echo selftest", type="string"),
        "time": Param("00:05:00", type="string"),
        "name": Param("selftest", type="string", pattern=r"^[A-Za-z0-9._-]+$"),
    },
)
def selftest_slurm():
    SlurmJobOperator(
        task_id="job",
        profile="local",
        job={"name": "{{ params.name }}", "command": "{{ params.command }}", "time": "{{ params.time }}"},
        poll_interval=2.0,
    )


dag = selftest_slurm()
