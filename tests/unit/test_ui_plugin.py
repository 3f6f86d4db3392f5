"""The UI plugin's endpoints refuse, before any SSH or MLflow call, a profile the caller names by
file path: such a file could widen the work folder to ``/`` or name another host.

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
    monkeypatch.setenv("SKILLFLOW_PROFILE", "example-pyxis")
    for profile in (wide_profile, "/etc/passwd"):
        resp = client.get("/slurm-log", params={"profile": profile, "path": "/etc/x.log"})
        assert resp.status_code == 403 and "root:" not in resp.text, resp.text
        assert client.get("/mlflow-run/d/r", params={"profile": profile}).status_code == 403


def test_the_deployments_profile_file_is_served(client, wide_profile, monkeypatch):
    """The deployment's own file (docker/compose.yaml mounts one) passes the profile check; the
    work-folder check comes next."""
    monkeypatch.setenv("SKILLFLOW_PROFILE", wide_profile)
    resp = client.get("/slurm-log", params={"path": "/etc/passwd"})  # no profile: the deployment's
    assert resp.status_code == 403 and "only .log files under /" in resp.text, resp.text
    resp = client.get("/slurm-log", params={"profile": wide_profile, "path": "/etc/passwd"})
    assert resp.status_code == 403 and "only .log files under /" in resp.text, resp.text
