"""The UI plugin: task-instance links to the Slurm job log and to the DAG run's MLflow run."""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest

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

    status, _, text = _get(log_url, token)
    assert status == 200 and "skillflow: job" in text and "main step exited with status 0" in text
    assert _get(log_url, None)[0] in (401, 403)
    outside = log_url.split("?")[0] + "?" + urllib.parse.urlencode({"profile": "local", "path": "/etc/shadow"})
    assert _get(outside, token)[0] == 403

    status, headers, _ = _get(mlflow_url, token)
    record = api.xcom("skillflow_demo", run_id, "record")
    assert status in (302, 307) and headers["location"].endswith(f"/runs/{record['mlflow_run_id']}")
