"""Slurm-side faults on the real local cluster: the login node's sshd, the controller and the
compute node die under running jobs, and a job is preempted by a higher-priority partition.

Each case asserts the end state in Slurm itself: the job ids known by the test's unique job name
(squeue plus the jobcomp accounting log), so "no duplicate job" is counted, not assumed.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.parse

import pytest
from airflow.sdk.exceptions import AirflowFailException

from devtools.stack.nodes import FIRST_NODE
from operators.slurm.errors import SlurmNodeFailure
from operators.slurm.hook import SlurmHook
from operators.slurm.operator import _safe
from tests.faults.driving import (TaskInstanceStandIn, complete, operator, poll_failures, submit, unique, until,
                                  wait_all)
from tests.faults.stackctl import descendants
from tests.polling import wait_until

SECTION = "Faults"


@pytest.mark.reliability(section=SECTION, case="sshd killed while jobs run, then restarted",
                         promise="the shared poller reconnects, every task succeeds, a retried task reconnects "
                                 "to its job: no job is submitted twice")
def test_sshd_killed_while_jobs_run(faults, measured):
    # Stand-in: the fault is timed by the shared poller's own polls and warnings, seen only in this
    # process; try 2 is handed over directly (the scheduler starts it only after try 1 has ended).
    name = unique("flt-sshd")
    job = lambda i: {"name": f"{name}-{i}", "command": "sleep 6; echo survived"}  # noqa: E731
    ops = [operator(job(i), task_id=f"t{i}") for i in range(3)]
    tis = [TaskInstanceStandIn(task_id=f"t{i}") for i in range(3)]
    deferrals = [submit(op, ti) for op, ti in zip(ops, tis)]
    timings = {}

    async def kill_sshd(poller):
        # The fault lands on jobs that run and a poller that tracks them over its connection.
        for ti in tis:
            await asyncio.to_thread(faults.wait_state, ti.xcoms["slurm_job_id"], ("RUNNING",))
        polls = poller.polls
        await until(lambda: poller.polls > polls, 60, "the poller's first poll of the running jobs")
        # The master and every per-connection child: open sessions drop, as when the host reboots.
        await asyncio.to_thread(faults.kill, "sshd")
        t0 = time.monotonic()
        # sshd stays down until the poller has met the outage (a poll of it failed).
        await until(failures.event.is_set, 60, "a failed poll while sshd is down")
        timings["down_s"] = time.monotonic() - t0
        timings["restart_s"] = await asyncio.to_thread(faults.start, "sshd")

    try:
        with poll_failures() as failures:
            events, stats = wait_all(deferrals, during=kill_sshd)
    finally:
        if not faults.healthy("sshd"):
            faults.start("sshd")
    results = [complete(op, ti, ev) for op, ti, ev in zip(ops, tis, events)]
    assert [list(r["states"].values()) for r in results] == [["COMPLETED"]] * 3
    assert stats["connections"] >= 2, f"the poller never reconnected: {stats}"
    # Airflow retries the first task (its worker died in the outage): it must find its job.
    retry_ti = TaskInstanceStandIn(task_id="t0", run_id=tis[0].run_id, try_number=2)
    retry_op = operator(job(0), task_id="t0")
    submit(retry_op, retry_ti)  # the job already finished: the retry reuses it and defers to read its end
    assert retry_ti.xcoms["slurm_job_id"] == tis[0].xcoms["slurm_job_id"]
    ids = faults.job_ids(name)
    assert ids == {ti.xcoms["slurm_job_id"] for ti in tis}, f"jobs named {name}: {sorted(ids)}"
    assert len(faults.jobcomp_records(name)) == 3
    measured(f"3/3 jobs COMPLETED; {len(ids)} job ids for 3 tasks (retry reused {tis[0].xcoms['slurm_job_id']}); "
             f"poller opened {stats['connections']} SSH connections; sshd down {timings['down_s']:.1f} s (until a poll "
             f"failed), back in {timings['restart_s']:.1f} s; "
             f"all done {stats['wall_s']:.1f} s after submit")


@pytest.mark.reliability(section=SECTION, case="slurmctld restarted mid-job",
                         promise="the running job continues and completes; tracking resumes on the same job id")
def test_slurmctld_restarted_mid_job(faults, measured):
    """A restart is a clean stop (SIGTERM: slurmctld saves its state) and a start. A SIGKILL of
    slurmctld within seconds of a job's start loses the state saved since then: on this Slurm
    (22.05) the job was recovered as PENDING, its launch then failed and Slurm held it
    (launch_failed_requeued_held) and reused its job id for the next submission. That is
    Slurm's own crash behaviour, recorded in docs/reliability.md, not a promise of ours."""
    # Stand-in: the outage lasts until the poller has polled the stopped controller, which only an
    # in-process poller shows.
    name = unique("flt-ctld")
    op = operator({"name": name, "command": "sleep 8; echo after-controller-restart"})
    ti = TaskInstanceStandIn()
    deferral = submit(op, ti)
    job_id = ti.xcoms["slurm_job_id"]
    faults.wait_state(job_id, ("RUNNING",))
    timings = {}

    async def restart_ctld(poller):
        polls = poller.polls
        await until(lambda: poller.polls > polls, 60, "the poller's first poll of the running job")
        await asyncio.to_thread(faults.stop, "slurmctld")
        t0 = time.monotonic()
        # The controller stays down until the tracking has polled it down twice (squeue fails over
        # a working SSH connection: the poll counts, its answer is no state).
        polls = poller.polls
        await until(lambda: poller.polls >= polls + 2, 180, "two polls while slurmctld is down")
        timings["down_s"] = time.monotonic() - t0
        timings["restart_s"] = await asyncio.to_thread(faults.start, "slurmctld")

    try:
        (event,), stats = wait_all([deferral], during=restart_ctld)
    finally:
        if not faults.healthy("slurmctld"):
            faults.start("slurmctld")
    result = complete(op, ti, event)
    assert result["states"] == {job_id: "COMPLETED"}
    log = SlurmHook("slurm_local", accounting="jobcomp").read_text(result["log"])
    assert "after-controller-restart" in log
    assert faults.job_ids(name) == {job_id}
    measured(f"job {job_id} COMPLETED after a {timings['down_s'] + timings['restart_s']:.1f} s controller outage "
             f"(polled twice while down); 1 job id; "
             f"{stats['polls']} polls")


@pytest.mark.reliability(section=SECTION, case="slurmd killed (the node fails)",
                         promise="the job ends NODE_FAIL, the task raises a retryable SlurmNodeFailure, and the "
                                 "retry submits one new job that completes once the node is back")
def test_slurmd_killed_gives_node_fail_and_a_retry(faults, measured):
    """The node is declared down with ``scontrol update state=down`` right after slurmd is killed:
    that is what slurmctld itself does after SlurmdTimeout (300 s here), which a test cannot wait
    for. The kill is real; only the controller's wait is shortened. The task is one run of
    selftest_slurm_retry (tests/dags), the operator with its shipped retry settings, so the retry
    is the real scheduler's: try 1 fails, try 2 is scheduled after the retry delay."""
    from tests.integration.airflow_api import client_for
    from tests.integration.selftest_runs import ended_run

    dag = "selftest_slurm_retry"
    name = unique("flt-node")
    mark = faults.workdir() / f"{name}.first-try"
    command = f"if [ -e {mark} ]; then echo second try; else touch {mark}; echo first try; sleep 60; fi"
    api = client_for(faults.ctx)
    api.wait_for_dag(dag)
    run_id = api.trigger(dag, {"name": name, "command": command})["dag_run_id"]
    base = f"/api/v2/dags/{dag}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/job"
    until_ti = lambda pred, what: wait_until(lambda: pred(api._request("GET", base)), 180, what)  # noqa: E731
    until_ti(lambda ti: ti["state"] == "deferred", "try 1 to defer on its job")
    first = wait_until(lambda: faults.job_ids(name), 60, f"the job named {name}").pop()
    faults.wait_state(first, ("RUNNING",))
    wait_until(mark.exists, 60, "the first try's job to start its work")
    t0 = time.monotonic()
    try:
        faults.kill(f"slurmd-{FIRST_NODE}")
        faults.slurm("scontrol", "update", f"nodename={FIRST_NODE}", "state=down", "reason=skillflow-fault-test")
        # Try 1 ends (the trigger sees NODE_FAIL, the worker raises) and Airflow schedules try 2.
        until_ti(lambda ti: ti["try_number"] == 2 or ti["state"] == "up_for_retry", "try 1 to fail and be retried")
        detected_s = time.monotonic() - t0
    finally:
        back_s = faults.start(f"slurmd-{FIRST_NODE}")
    r = ended_run(api, run_id, dag, "job", timeout=300)
    second = r["job_id"]
    assert r["state"] == "success" and r["ti"]["try_number"] == 2, r["ti"]
    assert second != first and r["result"]["states"] == {second: "COMPLETED"}
    # Try 1's log: the retryable SlurmNodeFailure (not AirflowFailException) naming NODE_FAIL.
    try1 = json.dumps(api._request("GET", f"{base}/logs/1?full_content=true"))
    assert "SlurmNodeFailure" in try1 and "NODE_FAIL" in try1, try1[-3000:]
    assert "AirflowFailException" not in try1 and not issubclass(SlurmNodeFailure, AirflowFailException)
    # One job per try: each try rendered one script, and Slurm knows exactly these two jobs.
    scripts = faults.workdir() / ".skillflow" / "scripts" / _safe(dag) / _safe(run_id) / "job"
    assert sorted(os.listdir(scripts)) == ["try1.sbatch", "try2.sbatch"]
    assert faults.job_ids(name) == {first, second}
    states = {r["JobId"]: r["JobState"] for r in faults.jobcomp_records(name)}
    assert states == {first: "NODE_FAIL", second: "COMPLETED"}
    measured(f"job {first} NODE_FAIL; try 1 failed and was marked for retry {detected_s:.1f} s after the kill; "
             f"node back in {back_s:.1f} s; Airflow's try 2 ran job {second} to COMPLETED; 2 job ids in accounting")


@pytest.mark.reliability(section=SECTION, case="a job preempted and requeued",
                         promise="tracking follows the requeued job to its real end (COMPLETED), not the "
                                 "preemption; the same job id, no resubmission")
def test_preempted_job_is_tracked_to_its_real_end(faults, measured):
    """Real preemption: the generated slurm.conf has PreemptType=preempt/partition_prio with
    PreemptMode=REQUEUE, and a job in the higher-tier ``urgent`` partition takes every CPU. Slurm
    holds a requeued job for a while before it may start again (BeginTime); the test releases it
    with ``scontrol update StartTime=now`` instead of waiting."""
    from devtools.stack.config import slurm_cpus

    # Stand-in: the urgent job is sent once the poller has seen the job run, shown only in process.
    name = unique("flt-preempt")
    cpus = slurm_cpus()
    op = operator({"name": name, "cpus_per_task": cpus,
                   "command": "echo start restart=${SLURM_RESTART_COUNT:-0}; sleep 6; echo end"})
    ti = TaskInstanceStandIn()
    deferral = submit(op, ti)
    job_id = ti.xcoms["slurm_job_id"]
    faults.wait_state(job_id, ("RUNNING",))

    async def preempt(poller):
        # The tracking has seen the job run before the urgent job takes its CPUs.
        polls = poller.polls
        await until(lambda: poller.polls > polls, 60, "the poller's first poll of the running job")
        await asyncio.to_thread(faults.slurm, "sbatch", "--parsable", "-p", "urgent", "-c", str(cpus), "-J",
                                f"{name}-urgent", "-o", "/dev/null", "--wrap", "sleep 2")
        await until(lambda: faults.squeue_state(job_id) == "PENDING", 60,
                    f"job {job_id} to be preempted and requeued (PENDING)", interval=0.2)
        await asyncio.to_thread(faults.slurm, "scontrol", "update", f"jobid={job_id}", "StartTime=now")

    (event,), stats = wait_all([deferral], during=preempt, timeout=120)
    result = complete(op, ti, event)
    assert result["states"] == {job_id: "COMPLETED"}
    ends = [r["JobState"] for r in faults.jobcomp_records(name) if r["JobId"] == job_id]
    assert ends == ["PREEMPTED", "COMPLETED"], ends
    assert faults.job_ids(name) - {r["JobId"] for r in faults.jobcomp_records(f"{name}-urgent")} == {job_id}
    restarts = faults.slurm("scontrol", "show", "job", job_id)
    assert "Restarts=1" in restarts
    measured(f"job {job_id}: PREEMPTED then requeued, COMPLETED after {stats['wall_s']:.1f} s; "
             f"accounting ends {ends}; 1 job id")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.reliability(section=SECTION, case="SSH connection dropped while sbatch runs on the login node",
                         promise="the worker sends the submit command again and adopts the job the first "
                                 "attempt made (found by its submission token): one job in accounting, the "
                                 "task succeeds in its first try")
def test_connection_dropped_during_sbatch_submits_once(stack, faults, measured):
    """Through the real scheduler and worker. The controller is held (SIGSTOP, as an overloaded
    slurmctld is) so that sbatch is in flight on the login node for certain; then the sshd
    session processes serving that command are killed, which drops the worker's connection
    while sbatch goes on, and the controller is released: the first sbatch makes its job."""
    from operators.slurm.operator import _safe
    from tests.integration.airflow_api import client_for

    api = client_for(stack)
    api.wait_for_dag("selftest_slurm")
    name = unique("flt-sbatch-drop")
    ctld, sshd = faults.pid("slurmctld"), faults.pid("sshd")
    dropped: list[int] = []
    os.kill(ctld, signal.SIGSTOP)
    try:
        run_id = api.trigger("selftest_slurm", {"command": "sleep 1; echo once", "name": name})["dag_run_id"]
        marker = f"/{_safe(run_id)}/"

        def sbatch_in_flight():
            for pid in descendants(sshd):
                args = _cmdline(pid)
                if args and args[0].endswith("sbatch") and any(marker in a for a in args):
                    return pid
            return None

        deadline = time.monotonic() + 120
        while (sbatch := sbatch_in_flight()) is None:
            assert time.monotonic() < deadline, "the worker's sbatch never reached the login node"
            time.sleep(0.05)
        pid = _parent(sbatch)
        while pid != sshd:
            if (_cmdline(pid) or [""])[0].startswith("sshd"):
                dropped.append(pid)
            pid = _parent(pid)
        assert dropped, "no sshd session process between sshd and sbatch"
        for pid in dropped:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.kill(ctld, signal.SIGCONT)
    final = api.wait_for_run("selftest_slurm", run_id, timeout=240)
    ti = api._request("GET", f"/api/v2/dags/selftest_slurm/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/job")
    job_id = str(api.xcom("selftest_slurm", run_id, "job", key="slurm_job_id"))
    assert final["state"] == "success" and ti["try_number"] == 1, (final["state"], ti["try_number"])
    assert faults.job_ids(name) == {job_id}, f"jobs named {name}: {sorted(faults.job_ids(name))}"
    records = faults.jobcomp_records(name)
    assert [r["JobState"] for r in records] == ["COMPLETED"], records
    measured(f"connection dropped ({len(dropped)} sshd session processes killed) while sbatch waited on the "
             f"controller; 1 job ({job_id}) in accounting; the task succeeded in try 1")


@pytest.mark.reliability(section=SECTION, case="the login node unreachable for longer than max_disconnected_s",
                         promise="the trigger gives up with an error event naming the connection; the task fails "
                                 "with a retryable SlurmJobLost and leaves the job to the retry, which reconnects")
def test_poller_gives_up_after_max_disconnected_s(faults, measured):
    """Driven here rather than through the triggerer: the operator keeps the trigger's default
    max_disconnected_s (30 min), and a test cannot wait that long; the trigger gets 3 s."""
    from operators.slurm.errors import SlurmJobLost
    from operators.slurm.trigger import SlurmJobTrigger
    from tests.integration.slurm_driver import run_trigger

    # Stand-in: see the docstring (the 30 min default of max_disconnected_s cannot be waited for).
    name = unique("flt-unreachable")
    job = {"name": name, "command": "sleep 60"}
    op = operator(job)
    ti = TaskInstanceStandIn()
    kwargs = submit(op, ti).trigger.serialize()[1]
    job_id = ti.xcoms["slurm_job_id"]
    try:
        with faults.outage("sshd"):
            t0 = time.monotonic()
            event = run_trigger(SlurmJobTrigger(**{**kwargs, "max_disconnected_s": 3.0}), timeout=60)
            gave_up_s = time.monotonic() - t0
        assert event.payload["status"] == "error", event.payload
        assert "slurm_local" in event.payload["message"]
        with pytest.raises(SlurmJobLost) as info:
            complete(op, ti, event)
        assert not isinstance(info.value, AirflowFailException) and "LOST" in op.retry_on
        assert faults.squeue_state(job_id) in ("PENDING", "RUNNING")  # not cancelled: the retry needs it
        retry_ti = TaskInstanceStandIn(run_id=ti.run_id, try_number=2)
        submit(operator(job), retry_ti)
        assert retry_ti.xcoms["slurm_job_id"] == job_id
    finally:
        faults.slurm("scancel", job_id, check=False)
    measured(f"sshd down: the trigger fired its error event {gave_up_s:.1f} s after it started (limit 3 s); "
             f"the retry reconnected to job {job_id}")
