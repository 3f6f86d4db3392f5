"""selftest_slurm_job: one Slurm job whose spec fields come from params, one try, for the
integration suite to cause each job outcome (exit codes, time limit, arrays, dependencies,
expected outputs, hostile env values) through the real scheduler, triggerer and worker. Tagged
``selftest``."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from operators.slurm.operator import SlurmJobOperator


@dag(
    dag_id="selftest_slurm_job",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["selftest"],
    render_template_as_native_obj=True,
    max_active_runs=16,
    params={
        "command": Param("echo selftest", type="string", minLength=1),
        "name": Param("selftest", type="string", pattern=r"^[A-Za-z0-9._-]+$"),
        "time": Param("00:05:00", type="string", pattern=r"^[0-9:-]+$"),
        "gpus_per_node": Param(0, type="integer", minimum=0, maximum=8),
        "array": Param(None, type=["null", "string"], pattern=r"^[0-9][0-9,-]*$"),
        "array_throttle": Param(None, type=["null", "integer"], minimum=1),
        "dependency": Param([], type="array", items={"type": "string", "pattern": r"^after[a-z]*(:[0-9]+)+$"}),
        "env": Param({}, type="object", additionalProperties={"type": "string"}),
        "expected_outputs": Param([], type="array", items={"type": "string", "pattern": r"^/"}),
    },
)
def selftest_slurm_job():
    SlurmJobOperator(
        task_id="job",
        profile="local",
        job={"name": "{{ params.name }}", "command": "{{ params.command }}", "time": "{{ params.time }}",
             "gpus_per_node": "{{ params.gpus_per_node }}", "array": "{{ params.array }}",
             "array_throttle": "{{ params.array_throttle }}", "dependency": "{{ params.dependency }}",
             "env": "{{ params.env }}"},
        expected_outputs="{{ params.expected_outputs }}",
        poll_interval=1.0,
        retries=0,
    )


dag = selftest_slurm_job()
