"""skillflow's Airflow UI plugin: task-instance links to Slurm job logs and MLflow runs.

The endpoints require an Airflow login (the UI's session cookie or a bearer token). The log link
names a task instance, not a file: the endpoint asks Airflow's auth manager whether the user may
read that DAG's task logs (the same check as Airflow's own log view, so a role without "Task Logs"
sees the link but not the log), then reads the log path the task recorded (its ``slurm_log`` XCom).
It still shows only ``.log`` files under the cluster profile's work folder, checked on the file it
opens (so a symlink cannot lead out), and accepts only the deployment's or a built-in profile, so
neither a link nor an edited XCom can read arbitrary files on the cluster or the API server.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse, RedirectResponse

from operators.links import MLflowRunLink, SlurmJobLogLink
from operators.slurm import listener as slurm_listener

app = FastAPI(title="skillflow links")


def _user_dep():
    from airflow.api_fastapi.core_api.security import GetUserDep

    return GetUserDep


GetUser = _user_dep()


def served_profile(ref: str):
    """The profile a link may name: the deployment's (empty, or exactly ``$SKILLFLOW_PROFILE``) or a
    built-in one. Never any other path: a YAML file of the caller's choosing could set the work
    folder to ``/`` or point the SSH connection elsewhere, and loading an arbitrary file would echo
    parts of it in the error."""
    import os

    from tasks.profiles import ProfileError, builtin_profiles, load_profile

    if ref and ref != os.environ.get("SKILLFLOW_PROFILE") and ref not in builtin_profiles():
        raise HTTPException(403, f"profile '{ref}' is neither this deployment's nor a built-in one "
                                 f"({', '.join(builtin_profiles())})")
    try:
        return load_profile(ref or None)
    except ProfileError as exc:
        raise HTTPException(404, str(exc)) from None


def _task_logs_access():
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    # dag_id comes from the query string (requires_access_dag reads path or query).
    return Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS))


def _session_dep():
    from airflow.api_fastapi.common.db.common import SessionDep

    return SessionDep


Session = _session_dep()


def recorded_log_path(session, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The job log path the task instance recorded when it submitted its job."""
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(key="slurm_log", dag_ids=dag_id, run_id=run_id, task_ids=task_id,
                               map_indexes=map_index)
    row = session.execute(query.with_only_columns(XComModel.value).limit(1)).first()
    path = XComModel.deserialize_value(row) if row else None
    if not isinstance(path, str) or not path:
        raise HTTPException(404, f"task {dag_id}/{run_id}/{task_id}[{map_index}] recorded no Slurm job log (yet)")
    return path


def checked_log_path(prof, path: str) -> str:
    """``path`` if its name is a ``.log`` under the profile's work folder; what the name leads to
    (symlinks) is checked on the cluster, on the file actually opened."""
    root = prof.workdir.rstrip("/") + "/"
    if not path.startswith(root) or ".." in path.split("/") or not path.endswith(".log"):
        raise HTTPException(403, f"only .log files under {root} can be shown")
    return path


@app.get("/slurm-log", response_class=PlainTextResponse, dependencies=[_task_logs_access()])
def slurm_log(session: Session, dag_id: str = Query(...), run_id: str = Query(...), task_id: str = Query(...),
              map_index: int = Query(-1), profile: str = Query(""),
              lines: int = Query(500, ge=1, le=20000)) -> str:
    from operators.slurm.hook import SlurmHook
    from tasks.slurm.commands import OUTSIDE_RC, contained_tail_command

    prof = served_profile(profile)
    path = checked_log_path(prof, recorded_log_path(session, dag_id, run_id, task_id, map_index))
    root = prof.workdir.rstrip("/") + "/"
    rc, out, _ = SlurmHook(prof.ssh_conn_id, accounting=prof.accounting).run(
        contained_tail_command(path, root, lines), check=False)
    if rc == OUTSIDE_RC:
        raise HTTPException(403, f"{path} leads outside {root} (a symlink): only .log files under it can be shown")
    return out if rc == 0 else f"(log {path} not readable)"


@app.get("/mlflow-run/{dag_id}/{run_id}")
def mlflow_run(user: GetUser, dag_id: str, run_id: str, profile: str = Query("")):
    from operators.tracking import mlflow_runs

    prof = served_profile(profile)
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
