"""skillflow's Airflow UI plugin: task-instance links to Slurm job logs and MLflow runs.

The endpoints require an Airflow login (the UI's session cookie or a bearer token). The log
endpoint reads only ``.log`` files under the cluster profile's work folder, so a link cannot be
turned into a way to read arbitrary files on the cluster.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse, RedirectResponse

from operators.links import MLflowRunLink, SlurmJobLogLink
from operators.slurm import listener as slurm_listener

app = FastAPI(title="skillflow links")


def _user_dep():
    from airflow.api_fastapi.core_api.security import GetUserDep

    return GetUserDep


GetUser = _user_dep()


@app.get("/slurm-log", response_class=PlainTextResponse)
def slurm_log(user: GetUser, profile: str = Query(...), path: str = Query(...),
              lines: int = Query(500, ge=1, le=20000)) -> str:
    from operators.slurm.hook import SlurmHook
    from tasks.profiles import ProfileError, load_profile

    try:
        prof = load_profile(profile)
    except ProfileError as exc:
        raise HTTPException(404, str(exc)) from None
    root = prof.workdir.rstrip("/") + "/"
    if not path.startswith(root) or ".." in path.split("/") or not path.endswith(".log"):
        raise HTTPException(403, f"only .log files under {root} can be shown")
    return SlurmHook(prof.ssh_conn_id, accounting=prof.accounting).last_lines(path, lines)


@app.get("/mlflow-run/{dag_id}/{run_id}")
def mlflow_run(user: GetUser, dag_id: str, run_id: str, profile: str = Query("local")):
    from operators.tracking import mlflow_runs
    from tasks.profiles import load_profile

    prof = load_profile(profile)
    mlc = mlflow_runs.client(prof.mlflow_conn_id)
    quoted = run_id.replace("'", "\\'")
    runs = mlc.search_runs(
        [e.experiment_id for e in mlc.search_experiments()],
        filter_string=f"tags.`{mlflow_runs.TAG_DAG}` = '{dag_id}' and tags.`{mlflow_runs.TAG_RUN}` = '{quoted}'",
        max_results=1)
    if not runs:
        raise HTTPException(404, f"no MLflow run is tagged with DAG run {dag_id}/{run_id} (yet)")
    return RedirectResponse(mlflow_runs.run_url(mlc, runs[0].info.run_id))


class SkillflowPlugin(AirflowPlugin):
    name = "skillflow"
    global_operator_extra_links = [MLflowRunLink()]
    # SlurmJobOperator declares its own log link; listing it here lets the UI resolve it.
    operator_extra_links = [SlurmJobLogLink()]
    fastapi_apps = [{"app": app, "url_prefix": "/skillflow", "name": "skillflow links"}]
    # A deferred task ended by a person before the triggerer runs its trigger: cancel its job.
    listeners = [slurm_listener]
