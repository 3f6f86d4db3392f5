"""The team topology (`skillflow stack up --topology team`): compose's processes, run for real.

PostgreSQL, Redis, two Celery workers (each in a UTS namespace of its own, so a task instance's
``hostname`` names its worker), the triggerer, and FAB's users: ``viewer`` (RunViewer: FAB's Viewer
without task logs), ``operator`` (Op) and ``admin``. Run by ``make test-team`` with
SKILLFLOW_TEST_TOPOLOGY=team, together with the end-to-end tests of openmath_eval and
openmath_nightly (tests/integration), which then run on this topology too.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from devtools.airflow_client import AirflowAPIError, AirflowClient
from devtools.stack import team
from devtools.stack.config import load_secrets
from tests.faults.stackctl import Faults
from tests.integration.airflow_api import client_for
from tests.integration.browser import CHROMIUM, Steps, chromium_context
from tests.integration.test_openmath_eval import SMOKE
from tests.polling import wait_until

pytestmark = pytest.mark.integration

WORKER_SERVICES = [f"celery-{name}" for name in team.WORKERS]
# openmath_eval's Slurm tasks that submit a job in SMOKE's run (build_engine skips for the native engine).
SUBMITTING = {"prepare_data", "sampling", "greedy", "summarize"}


@pytest.fixture(scope="module")
def team_stack(stack):
    assert stack.layout.topology() == "team", (
        "these tests need the team topology: run them with `make test-team` (SKILLFLOW_TEST_TOPOLOGY=team)")
    return stack


def client_as(ctx, user: str) -> AirflowClient:
    password = load_secrets(ctx.layout)[f"{user}_password"]
    return AirflowClient(f"http://127.0.0.1:{ctx.layout.ports.airflow}", user, password)


def _get(url: str, client: AirflowClient | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {client.token()}"} if client else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _slurm_job_ids(api, dag_id: str, run_id: str) -> list[str]:
    """The job id every Slurm task instance of the run recorded (one per task instance)."""
    path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/~/xcomEntries"
            f"?xcom_key=slurm_job_id&limit=500")
    entries = api._request("GET", path)["xcom_entries"]
    return [str(api._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
                                    f"/taskInstances/{e['task_id']}/xcomEntries/slurm_job_id"
                                    f"?map_index={e['map_index']}")["value"]).strip('"') for e in entries]


def _jobs_submitted_since(faults: Faults, first_id: int) -> list[str]:
    """Every job Slurm was given with an id from ``first_id`` on: queued, running or ended."""
    queued = faults.slurm("squeue", "-h", "-o", "%i", check=False).split()
    ended = [r["JobId"] for r in faults.jobcomp_records("")]
    return sorted({i for i in [*queued, *ended] if i.isdigit() and int(i) >= first_id}, key=int)


def _next_job_id(faults: Faults) -> int:
    known = [int(i) for i in _jobs_submitted_since(faults, 0)]
    return max(known, default=0) + 1


def test_the_team_topology_runs_composes_processes(team_stack):
    from devtools.stack import control

    rows = {r.service: r for r in control.status(team_stack)}
    for service in ("postgres", "redis", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", *WORKER_SERVICES):
        assert rows[service].healthy, (service, rows[service].detail)
    assert team_stack.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert team_stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert team_stack.env["SKILLFLOW_MLFLOW_STORE"].startswith("postgresql+psycopg2://mlflow:")


def test_eval_tasks_spread_over_both_workers_and_defer_to_the_triggerer(team_stack):
    """One openmath_eval run: which worker ran each task instance, and which triggerer watched each
    deferred one (polled while the run goes: a finished task no longer names its trigger)."""
    api = client_for(team_stack)
    api.wait_for_dag("openmath_eval")
    run_id = api.trigger("openmath_eval", dict(SMOKE, experiment="selftest-team"))["dag_run_id"]
    watched: dict[tuple[str, int], str] = {}

    def finished():
        for ti in api.task_instances("openmath_eval", run_id):
            job = ti.get("triggerer_job") or {}
            if ti["state"] == "deferred" and job:
                watched[(ti["task_id"], ti["map_index"])] = f"{job['job_type']}@{job['hostname']}"
        run = api._request("GET", f"/api/v2/dags/openmath_eval/dagRuns/{urllib.parse.quote(run_id, safe='')}")
        return run if run["state"] in ("success", "failed") else None

    final = wait_until(finished, 900, "the openmath_eval run to end", interval=1.0)
    tis = api.task_instances("openmath_eval", run_id)
    assert final["state"] == "success", [(t["task_id"], t["state"]) for t in tis]
    ran = [t for t in tis if t["state"] == "success" and t["hostname"]]
    by_worker = {name: sorted(f"{t['task_id']}[{t['map_index']}]" for t in ran if t["hostname"] == name)
                 for name in team.WORKERS}
    print("task instances by worker:", by_worker)
    print("deferred task instances and their triggerer:", watched)
    assert all(by_worker.values()), f"a worker ran nothing: {by_worker}"
    assert {t["hostname"] for t in ran} <= set(team.WORKERS), {t["hostname"] for t in ran}
    assert watched and all(v.startswith("TriggererJob@") for v in watched.values()), watched
    # Every Slurm task that ran (a skipped one, e.g. the engine build of the native engine, never
    # submits) was watched by the triggerer.
    slurm_tasks = {(t["task_id"], t["map_index"]) for t in tis
                   if t["operator"] == "SlurmJobOperator" and t["state"] == "success"}
    assert slurm_tasks and set(watched) == slurm_tasks, (sorted(slurm_tasks - set(watched)), watched)


def test_a_worker_killed_mid_run_loses_nothing_and_submits_no_job_twice(team_stack):
    """SIGKILL the worker (and its task processes) while it runs a Slurm task's submission; the
    other worker finishes the run. The scheduler fails the lost task instance once its heartbeat
    is older than the settings' timeout and retries it; a Slurm task's retry finds its job's record
    and reconnects instead of submitting again."""
    faults = Faults(team_stack)
    api = client_for(team_stack)
    api.wait_for_dag("openmath_eval")
    first_job = _next_job_id(faults)
    run_id = api.trigger("openmath_eval", dict(SMOKE, experiment="selftest-team-kill"))["dag_run_id"]
    t0 = time.monotonic()
    victim = None
    try:
        def slurm_task_on_a_worker():
            # The worker's part of a Slurm task (render, submit over SSH, defer) takes seconds: the
            # kill lands before or just after its job is submitted, the case a retry must not repeat.
            return next((t for t in api.task_instances("openmath_eval", run_id)
                         if t["state"] == "running" and t["hostname"] in team.WORKERS
                         and t["task_id"] in SUBMITTING), None)

        victim_ti = wait_until(slurm_task_on_a_worker, 600, "a Slurm task instance running on a worker",
                               interval=0.2)
        victim = f"celery-{victim_ti['hostname']}"
        faults.kill(victim)
        killed_at = time.monotonic() - t0
        final = api.wait_for_run("openmath_eval", run_id, timeout=1200, interval=2.0)
    finally:
        if victim and not faults.healthy(victim):
            faults.start(victim)
    tis = api.task_instances("openmath_eval", run_id)
    assert final["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    lost = next(t for t in tis if (t["task_id"], t["map_index"]) == (victim_ti["task_id"], victim_ti["map_index"]))
    assert lost["try_number"] == 2 and lost["hostname"] != victim_ti["hostname"], lost
    recorded = _slurm_job_ids(api, "openmath_eval", run_id)
    submitted = _jobs_submitted_since(faults, first_job)
    assert len(recorded) == len(set(recorded)) and sorted(recorded, key=int) == submitted, (recorded, submitted)
    print(f"killed {victim} {killed_at:.0f} s into the run while it ran {victim_ti['task_id']}"
          f"[{victim_ti['map_index']}]; its try 2 ran on {lost['hostname']}; run succeeded after "
          f"{time.monotonic() - t0:.0f} s; {len(submitted)} Slurm jobs for {len(recorded)} Slurm task instances")


@pytest.fixture(scope="module")
def demo_run(team_stack):
    """A finished skillflow_demo run, triggered by the operator."""
    operator = client_as(team_stack, "operator")
    operator.wait_for_dag("skillflow_demo")
    run_id = operator.trigger("skillflow_demo", {"n": 1000, "experiment": "selftest-team-roles"})["dag_run_id"]
    assert operator.wait_for_run("skillflow_demo", run_id, timeout=300)["state"] == "success"
    return run_id


def test_roles_through_the_rest_api(team_stack, demo_run):
    viewer, operator = client_as(team_stack, "viewer"), client_as(team_stack, "operator")
    quoted = urllib.parse.quote(demo_run, safe="")
    ti = f"/api/v2/dags/skillflow_demo/dagRuns/{quoted}/taskInstances/slurm_job"
    # The viewer sees the run, its task instances and the plugin's links...
    assert viewer._request("GET", f"/api/v2/dags/skillflow_demo/dagRuns/{quoted}")["state"] == "success"
    links = viewer._request("GET", f"{ti}/links")["extra_links"]
    assert links["Slurm job log"] and links["MLflow run"], links
    # ...but may not trigger, nor read Airflow's task log or the Slurm job log behind the link.
    with pytest.raises(AirflowAPIError, match="HTTP 403"):
        viewer.trigger("skillflow_demo", {"n": 10})
    assert _get(f"{viewer.base_url}{ti}/logs/1", viewer)[0] == 403
    status, text = _get(links["Slurm job log"], viewer)
    assert status == 403 and "skillflow: job" not in text, (status, text[:200])
    # The operator may do both; nobody logged out may.
    status, text = _get(links["Slurm job log"], operator)
    assert status == 200 and "main step exited with status 0" in text, (status, text[:300])
    assert _get(f"{operator.base_url}{ti}/logs/1", operator)[0] == 200
    assert _get(links["Slurm job log"], None)[0] in (401, 403)


def _login(page, base: str, user: str, password: str) -> None:
    page.goto(base + "/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.wait_for_url(lambda url: "/login" not in url)


def test_roles_in_the_browser(team_stack, demo_run):
    """The same rules as a person meets them: FAB's login page, the run's task page with the plugin's
    links, the Slurm log link (refused for the viewer, shown for the operator) and the trigger form."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make install`"
    steps = Steps(team_stack.layout.var / "test-artifacts" / "team-browser")
    base = f"http://127.0.0.1:{team_stack.layout.ports.airflow}"
    sec = load_secrets(team_stack.layout)
    quoted = urllib.parse.quote(demo_run, safe="")
    details = f"{base}/dags/skillflow_demo/runs/{quoted}/tasks/slurm_job/details"
    for user, may in (("viewer", False), ("operator", True)):
        with chromium_context() as context:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            step = f"{user} login"
            try:
                _login(page, base, user, sec[f"{user}_password"])
                step = f"{user} task links"
                page.goto(details)
                link = page.get_by_role("link", name="Slurm job log")
                link.wait_for()
                page.get_by_role("link", name="MLflow run").wait_for()
                steps.shot(page, f"{user} sees the run and its links")
                step = f"{user} slurm log"
                with page.expect_response(lambda r: "/skillflow/slurm-log" in r.url) as log_resp:
                    href = link.get_attribute("href")
                    page.goto(href)
                assert log_resp.value.status == (200 if may else 403), (user, log_resp.value.status)
                body = page.locator("body").inner_text()
                assert ("main step exited with status 0" in body) is may, body[:500]
                steps.shot(page, f"{user} follows the slurm log link")
                step = f"{user} trigger"
                page.goto(f"{base}/dags/skillflow_demo")
                trigger = page.get_by_role("button", name="Trigger").first
                trigger.wait_for()
                trigger.click()
                dialog = page.get_by_role("dialog")
                dialog.wait_for()
                with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/dagRuns")) as sent:
                    dialog.get_by_role("button", name="Trigger").last.click()
                assert sent.value.status == (200 if may else 403), (user, sent.value.status, sent.value.text()[:200])
                page.wait_for_timeout(500)
                steps.shot(page, f"{user} submits the trigger form")
            except Exception:
                steps.keep_failure(page, step.replace(" ", "-"))
                raise

