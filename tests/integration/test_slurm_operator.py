"""The Slurm operator and trigger against the real local Slurm over real SSH."""
from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from operators.slurm.errors import SlurmJobError, SlurmJobTimeout
from operators.slurm.hook import SlurmHook
from operators.slurm.operator import SlurmJobOperator
from tests.integration.slurm_driver import TaskInstanceStandIn, finish, submit

pytestmark = pytest.mark.integration


def make_op(job: dict, **kw) -> SlurmJobOperator:
    kw.setdefault("poll_interval", 1.0)
    return SlurmJobOperator(task_id="job", job=job, profile="local", **kw)


def test_job_succeeds_and_streams_its_log(stack):
    op = make_op({"name": "t-ok", "command": "echo hello from $SLURM_JOB_ID; echo gpu=$CUDA_VISIBLE_DEVICES",
                  "gpus_per_node": 1})
    ti = TaskInstanceStandIn()
    deferred = submit(op, ti)
    result = finish(op, ti, deferred)
    assert result["states"] == {result["job_id"]: "COMPLETED"}
    log = SlurmHook("slurm_local", accounting="jobcomp").read_text(result["log"])
    assert f"hello from {result['job_id']}" in log
    assert "gpu=0" in log or "gpu=1" in log


def test_exit_3_names_exit_code_and_log_tail(stack):
    op = make_op({"name": "t-exit3", "command": "echo about to fail; echo LAST-WORDS; exit 3"}, retry_on=())
    ti = TaskInstanceStandIn()
    deferred = submit(op, ti)
    with pytest.raises(AirflowFailException) as info:
        finish(op, ti, deferred)
    text = str(info.value)
    assert "exit code 3" in text and "FAILED" in text
    assert "LAST-WORDS" in text
    assert isinstance(info.value.__cause__, SlurmJobError)


def test_time_limit_gives_timeout_outcome(stack):
    op = make_op({"name": "t-timeout", "command": "sleep 300", "time": "00:00:01"})
    ti = TaskInstanceStandIn()
    deferred = submit(op, ti)
    with pytest.raises(SlurmJobTimeout) as info:
        finish(op, ti, deferred, timeout=180)
    assert "TIMEOUT" in str(info.value)


def test_array_with_throttle_lists_failed_index(stack):
    op = make_op({"name": "t-array", "array": "0-7", "array_throttle": 2,
                  "command": 'sleep 1; [ "$SLURM_ARRAY_TASK_ID" = 5 ] && exit 7; echo element $SLURM_ARRAY_TASK_ID'},
                 retry_on=())
    ti = TaskInstanceStandIn()
    deferred = submit(op, ti)
    max_running = 0

    async def watch_throttle():
        nonlocal max_running
        job = ti.xcoms["slurm_job_id"]
        for _ in range(60):
            out = await asyncio.to_thread(subprocess.run, ["squeue", "-h", "-r", "-j", job, "-t", "RUNNING", "-o", "%i"],
                                          capture_output=True, text=True)
            max_running = max(max_running, len(out.stdout.split()))
            await asyncio.sleep(0.5)
            if not out.stdout.strip() and max_running:
                done = await asyncio.to_thread(subprocess.run, ["squeue", "-h", "-r", "-j", job, "-o", "%i"],
                                               capture_output=True, text=True)
                if not done.stdout.strip():
                    return

    with pytest.raises(AirflowFailException) as info:
        finish(op, ti, deferred, timeout=180, during=watch_throttle)
    assert "indices 5 " in str(info.value) or "indices 5\n" in str(info.value) or "indices 5 (" in str(info.value)
    assert 1 <= max_running <= 2


def test_dependency_chain_runs_in_order(stack, tmp_path):
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    first = make_op({"name": "t-dep-a", "command": "sleep 2; date +%s.%N > dep_a.txt"})
    ti_a = TaskInstanceStandIn(task_id="a")
    deferred_a = submit(first, ti_a)
    a_id = ti_a.xcoms["slurm_job_id"]
    second = make_op({"name": "t-dep-b", "command": "date +%s.%N > dep_b.txt", "dependency": [f"afterok:{a_id}"]})
    ti_b = TaskInstanceStandIn(task_id="b", run_id=ti_a.run_id)
    deferred_b = submit(second, ti_b)
    finish(first, ti_a, deferred_a)
    finish(second, ti_b, deferred_b)
    workdir = stack.env["SKILLFLOW_VAR"] + "/cluster/work"
    a_time = float(hook.read_text(f"{workdir}/dep_a.txt"))
    b_time = float(hook.read_text(f"{workdir}/dep_b.txt"))
    assert b_time > a_time


def test_retry_reconnects_instead_of_submitting_twice(stack):
    job = {"name": "t-retry", "command": "sleep 4; echo finished"}
    ti = TaskInstanceStandIn()
    first = submit(make_op(job), ti)
    job_id = ti.xcoms["slurm_job_id"]
    # The worker "dies" here; Airflow retries the task instance with the next try number.
    ti_retry = TaskInstanceStandIn(run_id=ti.run_id, try_number=2)
    op_retry = make_op(job)
    second = submit(op_retry, ti_retry)
    assert ti_retry.xcoms["slurm_job_id"] == job_id
    # Only the first try rendered and submitted a script.
    scripts = f"{stack.env['SKILLFLOW_VAR']}/cluster/work/.skillflow/scripts/selftest_direct/{ti.run_id}/job"
    assert sorted(os.listdir(scripts)) == ["try1.sbatch"]
    result = finish(op_retry, ti_retry, second)
    assert result["job_id"] == job_id
    del first


def test_sshd_restart_while_job_runs(stack):
    from tasks.stack import control
    from tasks.stack.services import by_name

    op = make_op({"name": "t-sshd", "command": "sleep 8; echo survived"})
    ti = TaskInstanceStandIn()
    deferred = submit(op, ti)

    async def restart_sshd():
        await asyncio.sleep(2)
        await asyncio.to_thread(control.down, [by_name("sshd")], quiet=True)
        await asyncio.sleep(3)
        await asyncio.to_thread(control.up, [by_name("sshd")], quiet=True)

    result = finish(op, ti, deferred, timeout=120, during=restart_sshd)
    assert list(result["states"].values()) == ["COMPLETED"]


def test_injection_in_params_stays_literal(stack):
    marker = "/tmp/skillflow-pwned-marker"
    if os.path.exists(marker):
        os.unlink(marker)
    hostile = f"$(touch {marker}); rm -rf /nonexistent-skillflow `touch {marker}`"
    op = make_op({"name": "t-inject", "command": 'printf "%s\\n" "$HOSTILE"', "env": {"HOSTILE": hostile}})
    ti = TaskInstanceStandIn()
    result = finish(op, ti, submit(op, ti))
    log = SlurmHook("slurm_local", accounting="jobcomp").read_text(result["log"])
    assert hostile in log
    time.sleep(0.5)
    assert not os.path.exists(marker)


def test_expected_outputs_overrule_a_failed_state(stack):
    """NeMo-Skills images end every job with an MPI error even after finishing the work."""
    out = f"{stack.env['SKILLFLOW_VAR']}/cluster/work/t-outputs-{time.time_ns()}.jsonl"
    op = make_op({"name": "t-outputs", "command": f"echo done > {out}; echo 'MPI_ABORT was invoked'; exit 1"},
                 expected_outputs=[out], retry_on=())
    ti = TaskInstanceStandIn()
    result = finish(op, ti, submit(op, ti))
    assert list(result["states"].values()) == ["FAILED"]
    missing = make_op({"name": "t-outputs", "command": "exit 1"}, expected_outputs=[out + ".never"], retry_on=())
    ti2 = TaskInstanceStandIn()
    with pytest.raises(AirflowFailException, match="exit code 1"):
        finish(missing, ti2, submit(missing, ti2))


def test_finished_job_is_found_in_accounting_after_leaving_the_queue(stack):
    """After MinJobAge squeue forgets a job; without slurmdbd the jobcomp log still has it."""
    from tasks.slurm import commands

    op = make_op({"name": "t-acct", "command": "exit 4"}, retry_on=())
    ti = TaskInstanceStandIn()
    with pytest.raises(AirflowFailException):
        finish(op, ti, submit(op, ti))
    job_id = ti.xcoms["slurm_job_id"]
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    _, out, _ = hook.run(commands.accounting_command([job_id], "jobcomp"))
    states = {s.key: s for s in commands.parse_accounting(out)}
    assert states[job_id].state == "FAILED" and states[job_id].exit_code == 4
