"""The UI plugin: task-instance links to the Slurm job log and to the DAG run's MLflow run."""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tasks.profiles import load_profile
from tests.integration.airflow_api import client_for

pytestmark = pytest.mark.integration


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _get(url: str, token: str | None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def test_links_lead_to_the_slurm_log_and_the_mlflow_run(stack):
    api = client_for(stack)
    api.wait_for_dag("skillflow_demo")
    run = api.trigger("skillflow_demo", {"n": 1000, "experiment": "selftest-links"})
    run_id = run["dag_run_id"]
    assert api.wait_for_run("skillflow_demo", run_id, timeout=300)["state"] == "success"
    quoted = urllib.parse.quote(run_id, safe="")
    links = api._request("GET", f"/api/v2/dags/skillflow_demo/dagRuns/{quoted}/taskInstances/slurm_job/links")
    log_url, mlflow_url = links["extra_links"]["Slurm job log"], links["extra_links"]["MLflow run"]
    token = api.token()

    # The task ran on the deployment's profile (the form left it empty), so the link names none.
    assert "profile=" not in log_url
    status, _, text = _get(log_url, token)
    assert status == 200 and "skillflow: job" in text and "main step exited with status 0" in text
    assert _get(log_url, None)[0] in (401, 403)
    outside = log_url.split("?")[0] + "?" + urllib.parse.urlencode({"profile": "local", "path": "/etc/shadow"})
    assert _get(outside, token)[0] == 403

    status, headers, _ = _get(mlflow_url, token)
    record = api.xcom("skillflow_demo", run_id, "record")
    assert status in (302, 307) and headers["location"].endswith(f"/runs/{record['mlflow_run_id']}")


def _log_url(api, **query) -> str:
    return f"{api.base_url}/skillflow/slurm-log?" + urllib.parse.urlencode(query)


@pytest.fixture()
def outside_and_inside(stack, tmp_path):
    """A secret .log outside the local cluster's work folder, and a folder of this test inside it."""
    secret = f"secret-{uuid.uuid4().hex}"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_text(f"{secret}\n")
    inside = Path(load_profile("local").workdir) / f"selftest-links-{uuid.uuid4().hex[:8]}"
    inside.mkdir(parents=True)
    yield secret, outside, inside
    for item in sorted(inside.rglob("*"), reverse=True):
        item.unlink() if item.is_symlink() or item.is_file() else item.rmdir()
    inside.rmdir()


def test_log_endpoint_refuses_symlinks_that_lead_out_of_the_work_folder(stack, outside_and_inside):
    secret, outside, inside = outside_and_inside
    api = client_for(stack)
    token = api.token()
    (inside / "escape.log").symlink_to(outside / "secret.log")  # a file link pointing out
    (inside / "linked-dir").symlink_to(outside, target_is_directory=True)  # a folder on the way
    (inside / "real.log").write_text("inside line\n")
    (inside / "alias.log").symlink_to(inside / "real.log")  # a link that stays inside
    for name in ("escape.log", "linked-dir/secret.log"):
        status, _, text = _get(_log_url(api, path=str(inside / name)), token)
        assert status == 403 and secret not in text, (name, status, text[:300])
    status, _, text = _get(_log_url(api, path=str(inside / "alias.log")), token)
    assert status == 200 and text == "inside line\n", (status, text[:300])


def test_log_endpoint_refuses_a_profile_that_names_a_file(stack, outside_and_inside, tmp_path):
    """A profile file chosen by the caller could widen the work folder to /, so only the
    deployment's profile and the built-in ones are served."""
    secret, outside, _ = outside_and_inside
    api = client_for(stack)
    token = api.token()
    local = load_profile("local")
    wide = tmp_path / "wide.yaml"
    wide.write_text(f"name: wide\nssh: {{conn_id: {local.ssh_conn_id}}}\npaths: {{workdir: /, python: python3}}\n")
    status, _, text = _get(_log_url(api, profile=str(wide), path=str(outside / "secret.log")), token)
    assert status == 403 and secret not in text, (status, text[:300])
    status, _, text = _get(_log_url(api, profile="/etc/passwd", path=f"{local.workdir}/x.log"), token)
    assert status == 403 and "root:" not in text, (status, text[:300])
    # The MLflow link's endpoint loads a profile the same way.
    status, _, _ = _get(f"{api.base_url}/skillflow/mlflow-run/d/r?" + urllib.parse.urlencode({"profile": str(wide)}),
                        token)
    assert status == 403
