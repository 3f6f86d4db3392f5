"""Airflow-side faults through the real scheduler, triggerer and REST API of the stack.

The DAGs are the self-test DAGs in tests/dags (``selftest_fanout``: mapped Slurm jobs held by a
gate file; ``selftest_slurm``: one job). Duplicates are counted in Slurm, by the run's unique job
name, and in Airflow, by each task instance's try number.
"""
from __future__ import annotations

import time
import urllib.parse

import pytest

from tests.faults.driving import unique
from tests.integration.airflow_api import client_for
from tests.polling import wait_until

SECTION = "Faults"


def task_instances(api, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict]:
    path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
            f"?limit=500&order_by=map_index")
    tis = api._request("GET", path)["task_instances"]
    return [t for t in tis if task_id is None or t["task_id"] == task_id]


@pytest.mark.reliability(section=SECTION, case="the triggerer killed while 50 tasks are deferred",
                         promise="after a restart every deferred task resumes and succeeds; no job is "
                                 "submitted twice and no task is retried")
def test_triggerer_killed_with_50_deferred_tasks(stack, faults, measured):
    n = 50
    api = client_for(stack)
    api.wait_for_dag("selftest_fanout")
    tag = unique("flt-fanout")
    gate = faults.workdir() / f"{tag}.gate"
    run_id = api.trigger("selftest_fanout", {"n": n, "tag": tag, "gate": str(gate)})["dag_run_id"]
    t0 = time.monotonic()
    try:
        def all_deferred():
            tis = task_instances(api, "selftest_fanout", run_id, "job")
            return len(tis) == n and all(t["state"] == "deferred" for t in tis)

        wait_until(all_deferred, 300, f"{n} deferred task instances")
        deferred_s = time.monotonic() - t0
        faults.kill("airflow-triggerer")
        gate.touch()  # the jobs finish while no triggerer watches them
        t_gate = time.monotonic()
        ended = lambda: len(faults.jobcomp_records(f"{tag}-")) >= n  # noqa: E731
        try:
            wait_until(ended, 300, f"the {n} released jobs to end while the triggerer is down", interval=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {len(faults.jobcomp_records(f'{tag}-'))} of {n} ended") from None
        ended_s = time.monotonic() - t_gate
        restart_s = faults.start("airflow-triggerer")
        t1 = time.monotonic()
        final = api.wait_for_run("selftest_fanout", run_id, timeout=300)
        resumed_s = time.monotonic() - t1
    finally:
        gate.touch()
        if not faults.healthy("airflow-triggerer"):
            faults.start("airflow-triggerer")
    tis = task_instances(api, "selftest_fanout", run_id, "job")
    assert final["state"] == "success", [(t["map_index"], t["state"]) for t in tis if t["state"] != "success"]
    assert sorted(t["map_index"] for t in tis) == list(range(n))
    assert {t["try_number"] for t in tis} == {1}
    records = faults.jobcomp_records(f"{tag}-")
    ids = faults.job_ids(f"{tag}-")
    assert len(ids) == n and len(records) == n, f"{len(ids)} job ids, {len(records)} completions for {n} tasks"
    assert {r["JobState"] for r in records} == {"COMPLETED"}
    measured(f"{n}/{n} mapped tasks deferred after {deferred_s:.0f} s; triggerer SIGKILLed, the {n} jobs released "
             f"and ended {ended_s:.0f} s later with no triggerer; triggerer healthy again in {restart_s:.1f} s; "
             f"run succeeded {resumed_s:.0f} s later; {len(ids)} job ids, every try_number 1")


@pytest.mark.reliability(section=SECTION, case="the scheduler killed mid-run",
                         promise="the run completes after the scheduler restarts; the job ran once")
def test_scheduler_killed_mid_run(stack, faults, measured):
    """The scheduler's whole process group is SIGKILLed (its LocalExecutor workers with it) while
    the task is deferred, and kept down until the job has ended, so the trigger's event waits in
    the database for the new scheduler."""
    api = client_for(stack)
    api.wait_for_dag("selftest_slurm")
    name = unique("flt-sched")
    run_id = api.trigger("selftest_slurm", {"command": "sleep 4; echo done", "name": name})["dag_run_id"]
    try:
        wait_until(lambda: [t for t in task_instances(api, "selftest_slurm", run_id)
                            if t["state"] == "deferred"], 120, "the task to defer", interval=1.0)
        faults.kill("airflow-scheduler")
        wait_until(lambda: any(r["JobState"] == "COMPLETED" for r in faults.jobcomp_records(name)), 60,
                   "the job to end while the scheduler is down", interval=1.0)
        restart_s = faults.start("airflow-scheduler")
        t1 = time.monotonic()
        final = api.wait_for_run("selftest_slurm", run_id, timeout=180, interval=1.0)
        done_s = time.monotonic() - t1
    finally:
        if not faults.healthy("airflow-scheduler"):
            faults.start("airflow-scheduler")
    assert final["state"] == "success"
    (ti,) = task_instances(api, "selftest_slurm", run_id)
    assert ti["try_number"] == 1
    assert len(faults.job_ids(name)) == 1
    measured(f"scheduler SIGKILLed while the task was deferred; back in {restart_s:.1f} s; run succeeded "
             f"{done_s:.0f} s after the restart; 1 job, try_number 1")
