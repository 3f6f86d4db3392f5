"""The UI plugin's endpoints refuse, before any SSH or MLflow call, a profile the caller names by
file path (such a file could widen the work folder to ``/`` or name another host), and the log
endpoint asks Airflow for the DAG's task-log access.

The Airflow login is replaced by a fixed user here (FastAPI's dependency override): the login is
Airflow's own code, and the stack test (tests/integration/test_ui_links.py) runs it for real.
"""
from __future__ import annotations

import pytest

# Starlette's note on its httpx transport, about the test client, not this code.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture()
def client():
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient
    from plugins.skillflow_plugin import app

    app.dependency_overrides[get_user] = lambda: object()
    yield TestClient(app)
    app.dependency_overrides.clear()


@pytest.fixture()
def wide_profile(tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text("name: wide\nssh: {conn_id: slurm_default}\npaths: {workdir: /}\n")
    return str(path)


def test_a_profile_file_of_the_callers_choosing_is_refused(client, wide_profile, monkeypatch):
    from fastapi import HTTPException

    from plugins.skillflow_plugin import served_profile

    monkeypatch.setenv("SKILLFLOW_PROFILE", "example-pyxis")
    for profile in (wide_profile, "/etc/passwd"):
        with pytest.raises(HTTPException) as refused:
            served_profile(profile)
        assert refused.value.status_code == 403 and "root:" not in refused.value.detail
        assert client.get("/mlflow-run/d/r", params={"profile": profile}).status_code == 403


def test_the_deployments_profile_file_is_served(wide_profile, monkeypatch):
    """The deployment's own file (docker/compose.yaml mounts one) passes the profile check; the
    work-folder check on the recorded path comes next."""
    from fastapi import HTTPException

    from plugins.skillflow_plugin import checked_log_path, served_profile

    monkeypatch.setenv("SKILLFLOW_PROFILE", wide_profile)
    for ref in ("", wide_profile):  # no profile in the link: the deployment's
        prof = served_profile(ref)
        with pytest.raises(HTTPException) as refused:
            checked_log_path(prof, "/etc/passwd")
        assert refused.value.status_code == 403 and "only .log files under /" in refused.value.detail
        assert checked_log_path(prof, "/srv/jobs/job-1.log") == "/srv/jobs/job-1.log"


def test_the_log_endpoint_asks_for_the_dags_task_log_access():
    """The route depends on Airflow's own check for reading a DAG's task logs (the dependency is
    built by requires_access_dag; its closure names the entity it checks)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    from plugins.skillflow_plugin import app

    route = next(r for r in app.routes if getattr(r, "path", "") == "/slurm-log")
    checks = [d.call for d in route.dependant.dependencies]
    closures = [dict(zip(f.__code__.co_freevars, (c.cell_contents for c in f.__closure__ or ())))
                for f in checks if getattr(f, "__qualname__", "").startswith("requires_access_dag")]
    assert {"method": "GET", "access_entity": DagAccessEntity.TASK_LOGS} in [
        {k: v for k, v in c.items() if k in ("method", "access_entity")} for c in closures], closures
