"""Extra links from task instances to the Slurm job log and to the DAG run's MLflow run.

Airflow 3 computes a link when the task runs and stores it; the URL points at the skillflow
plugin's endpoints (``plugins/skillflow_plugin.py``), which check the user's Airflow login (and for
the log, access to the DAG's task logs) and then show the log (read over SSH) or redirect to the
MLflow run.
"""
from __future__ import annotations

import urllib.parse

from airflow.sdk import BaseOperatorLink

PREFIX = "/skillflow"


def _base() -> str:
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="").rstrip("/")


class MLflowRunLink(BaseOperatorLink):
    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        q = urllib.parse.quote
        return f"{_base()}{PREFIX}/mlflow-run/{q(ti_key.dag_id, safe='')}/{q(ti_key.run_id, safe='')}"


class SlurmJobLogLink(BaseOperatorLink):
    name = "Slurm job log"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        if not XCom.get_value(ti_key=ti_key, key="slurm_log"):
            return ""
        # The link names the task instance; the endpoint checks the user's access to its DAG's task
        # logs and reads the path it recorded. No profile in the link when the task used the
        # deployment's: the endpoint then loads the API server's (the same $SKILLFLOW_PROFILE).
        query = {"dag_id": ti_key.dag_id, "run_id": ti_key.run_id, "task_id": ti_key.task_id,
                 "map_index": ti_key.map_index}
        profile = getattr(operator, "profile", None)
        if profile:
            query["profile"] = profile
        return f"{_base()}{PREFIX}/slurm-log?{urllib.parse.urlencode(query)}"


class TriggeredDagRunLink(BaseOperatorLink):
    """The run a :class:`operators.trigger_dagrun.TriggerDagRunOperator` created (the task runner
    stores its id as the ``trigger_run_id`` XCom when it triggers it)."""

    name = "Triggered DAG"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        run_id = XCom.get_value(ti_key=ti_key, key="trigger_run_id")
        if not run_id:
            return ""
        q = urllib.parse.quote
        return f"{_base()}/dags/{q(operator.trigger_dag_id, safe='')}/runs/{q(run_id, safe='')}"
