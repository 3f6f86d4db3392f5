"""selftest_slurm_training (one try) and selftest_slurm_training_retried (the product's one
retry): one training chain (SlurmTrainingOperator) whose job spec, progress
reader, chain length and curves come from params, one try, for the integration suite to cause the
chain's outcomes (a failed link, a job that leaves no progress, a cut at a short walltime, curves
copied while the job runs) through the real scheduler, triggerer and worker. The product DAGs
plan these fields from their own params; here the test hands them over, so a two-minute walltime
and ``max_jobs`` of 2 need no product param. Tagged ``selftest``."""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from operators.slurm.training import SlurmTrainingOperator


def _training_dag(dag_id: str, retries: int):
    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["selftest"],
        render_template_as_native_obj=True,
        max_active_runs=4,
        params={
            "job": Param({"name": "selftest", "command": "true"}, type="object", required=["name", "command"]),
            "create_dirs": Param([], type="array", items={"type": "string", "pattern": r"^/"}),
            "progress": Param({"kind": "files", "files": []}, type="object", required=["kind"]),
            "max_jobs": Param(2, type="integer", minimum=1, maximum=20),
            "curves": Param({}, type="object"),
            "curves_every_s": Param(300.0, type="number", exclusiveMinimum=0),
        },
    )
    def training():
        SlurmTrainingOperator(
            task_id="train",
            profile="local",
            job="{{ params.job }}",
            create_dirs="{{ params.create_dirs }}",
            progress="{{ params.progress }}",
            max_jobs="{{ params.max_jobs }}",
            curves="{{ params.curves }}",
            curves_every_s="{{ params.curves_every_s }}",
            poll_interval=1.0,
            retries=retries,
            retry_delay=timedelta(seconds=2),
        )

    return training()


one_try = _training_dag("selftest_slurm_training", retries=0)
retried = _training_dag("selftest_slurm_training_retried", retries=1)
