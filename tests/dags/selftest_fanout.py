"""selftest_fanout: ``n`` mapped Slurm jobs that wait for a gate file, for the fault suite's
"triggerer restarted while 50 tasks are deferred" case. Tagged ``selftest``.

The jobs hold until the test creates the gate, so every mapped task is deferred at the moment
the test kills the triggerer; job names carry ``tag`` so the test can count them in Slurm.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from operators.slurm.operator import SlurmJobOperator


@dag(
    dag_id="selftest_fanout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["selftest"],
    max_active_tasks=64,
    params={
        "n": Param(50, type="integer", minimum=1, maximum=200),
        "tag": Param("fanout", type="string", pattern=r"^[A-Za-z0-9._-]+$"),
        "gate": Param("/nonexistent", type="string", pattern=r"^/[A-Za-z0-9._/-]+$"),
    },
)
def selftest_fanout():
    @task
    def jobs(params: dict | None = None) -> list[dict]:
        wait = f"while [ ! -e {params['gate']} ]; do sleep 0.5; done; echo released"
        return [{"name": f"{params['tag']}-{i}", "command": wait, "time": "00:10:00"} for i in range(params["n"])]

    SlurmJobOperator.partial(task_id="job", profile="local", poll_interval=2.0, retries=0).expand(job=jobs())


dag = selftest_fanout()
