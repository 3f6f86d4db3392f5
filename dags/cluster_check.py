"""cluster_check: run once against a new cluster profile, before spending GPU hours.

Per image of the profile (and for the sandbox image) one tiny Slurm job on the profile's
partition starts the container and checks, inside it, ``skillflow --version``, the GPUs it sees,
the mounts and the work folder (read/write as needed), the model paths of the profile and that
the cluster's own credentials reach the S3 bucket (head-bucket; the job names credential files,
never keys). The sandbox job checks that the sandbox answers ``/health`` and that code run in it
reaches no network. From the login node, ``scontrol`` gives the partition's real limits, held
against the profile's ``slurm`` section. One table (each check, PASS/FAIL/SKIP and the fix) goes
to the task log and to MLflow as ``cluster_check/table.md``; the run fails when any check fails.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from operators.dag_steps import PROFILE_TEMPLATE, dag_params
from operators.slurm.operator import SlurmJobOperator


@dag(
    dag_id="cluster_check",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,  # a few profiles checked side by side
    render_template_as_native_obj=True,
    tags=["skillflow", "cluster"],
    params=dag_params("cluster_check"),
    doc_md=__doc__,
)
def cluster_check():
    @task
    def plan(params=None, dag_run=None) -> list:
        from operators.cluster_check import plan as make_plan

        return make_plan(dict(params), dag_run)

    @task
    def partition_limits(params=None) -> list:
        from operators.cluster_check import partition_limits as read_limits

        return read_limits(dict(params))

    @task(trigger_rule="all_done")
    def report(params=None, dag_run=None, ti=None) -> dict:
        from operators.cluster_check import report as make_report

        # Pulled here, not passed in: a failed partition_limits leaves no XCom, and the table
        # must still be written (it then says so).
        return make_report(ti.xcom_pull(task_ids="partition_limits"), dict(params), dag_run)

    jobs = plan()
    limits = partition_limits()
    # A probe whose container cannot start fails its task; the report still runs and says so.
    probes = SlurmJobOperator.partial(task_id="probe", profile=PROFILE_TEMPLATE, retries=0,
                                      poll_interval=None).expand(job=jobs)
    [limits, probes] >> report()


dag = cluster_check()
