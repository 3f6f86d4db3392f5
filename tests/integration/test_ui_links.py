"""The UI plugin: task-instance links to the Slurm job log and to the DAG run's MLflow run."""
from __future__ import annotations

import contextlib
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


@pytest.fixture(scope="module")
def demo_run(stack):
    """One finished run of skillflow_demo: its task's links, and the REST path of its log-path XCom."""
    api = client_for(stack)
    api.wait_for_dag("skillflow_demo")
    run_id = api.trigger("skillflow_demo", {"n": 1000, "experiment": "selftest-links"})["dag_run_id"]
    assert api.wait_for_run("skillflow_demo", run_id, timeout=300)["state"] == "success"
    quoted = urllib.parse.quote(run_id, safe="")
    links = api._request("GET", f"/api/v2/dags/skillflow_demo/dagRuns/{quoted}/taskInstances/slurm_job/links")
    xcom = f"/api/v2/dags/skillflow_demo/dagRuns/{quoted}/taskInstances/slurm_job/xcomEntries/slurm_log"
    return run_id, links["extra_links"], xcom


@contextlib.contextmanager
def recorded_path(api, xcom: str, path: str):
    """The task's recorded log path replaced (as an Op user may, through the REST API) and put back."""
    original = api._request("GET", xcom)["value"]
    api._request("PATCH", xcom, {"value": path, "map_index": -1})
    try:
        yield
    finally:
        api._request("PATCH", xcom, {"value": original, "map_index": -1})


def test_links_lead_to_the_slurm_log_and_the_mlflow_run(stack, demo_run):
    api = client_for(stack)
    run_id, links, xcom = demo_run
    log_url, mlflow_url = links["Slurm job log"], links["MLflow run"]
    token = api.token()

    # The link names the task instance; the task ran on the deployment's profile (the form left
    # it empty), so the link names none.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(log_url).query)
    assert query == {"dag_id": ["skillflow_demo"], "run_id": [run_id], "task_id": ["slurm_job"], "map_index": ["-1"]}
    status, _, text = _get(log_url, token)
    assert status == 200 and "skillflow: job" in text and "main step exited with status 0" in text
    assert _get(log_url, None)[0] in (401, 403)
    with recorded_path(api, xcom, "/etc/shadow"):
        status, _, text = _get(log_url, token)
    assert status == 403 and "only .log files under" in text, (status, text[:300])

    status, headers, _ = _get(mlflow_url, token)
    record = api.xcom("skillflow_demo", run_id, "record")
    assert status in (302, 307) and headers["location"].endswith(f"/runs/{record['mlflow_run_id']}")


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


def test_log_endpoint_refuses_symlinks_that_lead_out_of_the_work_folder(stack, demo_run, outside_and_inside):
    """A recorded path is checked on the file it opens: an XCom edited to name a link inside the
    work folder that leads out is refused; a link that stays inside is served."""
    secret, outside, inside = outside_and_inside
    api = client_for(stack)
    token = api.token()
    _, links, xcom = demo_run
    (inside / "escape.log").symlink_to(outside / "secret.log")  # a file link pointing out
    (inside / "linked-dir").symlink_to(outside, target_is_directory=True)  # a folder on the way
    (inside / "real.log").write_text("inside line\n")
    (inside / "alias.log").symlink_to(inside / "real.log")  # a link that stays inside
    for name in ("escape.log", "linked-dir/secret.log"):
        with recorded_path(api, xcom, str(inside / name)):
            status, _, text = _get(links["Slurm job log"], token)
        assert status == 403 and secret not in text, (name, status, text[:300])
    with recorded_path(api, xcom, str(inside / "alias.log")):
        status, _, text = _get(links["Slurm job log"], token)
    assert status == 200 and text == "inside line\n", (status, text[:300])


def test_log_endpoint_refuses_a_profile_that_names_a_file(stack, demo_run, outside_and_inside, tmp_path):
    """A profile file chosen by the caller could widen the work folder to /, so only the
    deployment's profile and the built-in ones are served."""
    secret, outside, _ = outside_and_inside
    api = client_for(stack)
    token = api.token()
    _, links, xcom = demo_run
    local = load_profile("local")
    wide = tmp_path / "wide.yaml"
    wide.write_text(f"name: wide\nssh: {{conn_id: {local.ssh_conn_id}}}\npaths: {{workdir: /, python: python3}}\n")
    with recorded_path(api, xcom, str(outside / "secret.log")):
        for profile in (str(wide), "/etc/passwd"):
            status, _, text = _get(links["Slurm job log"] + "&" + urllib.parse.urlencode({"profile": profile}), token)
            assert status == 403 and secret not in text and "root:" not in text, (status, text[:300])
    # The MLflow link's endpoint loads a profile the same way.
    status, _, _ = _get(f"{api.base_url}/skillflow/mlflow-run/d/r?" + urllib.parse.urlencode({"profile": str(wide)}),
                        token)
    assert status == 403
