"""The Slurm operator and trigger against the real local Slurm over real SSH."""
from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from operators.slurm.errors import SlurmJobError, SlurmJobLost, SlurmJobTimeout
from operators.slurm.hook import SlurmHook
from operators.slurm.operator import SlurmJobOperator
from tests.integration.slurm_driver import TaskInstanceStandIn, context_for, finish, run_trigger, submit

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
    assert not os.path.exists(marker)  # the job has ended: whatever it ran has run


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


# The trigger's own path against the real poller, sshd and Slurm. These drive the trigger in this
# process instead of the stack's triggerer because what they check is what the trigger does in
# between (the lines it logs, the offset it resumes at), which only its own log records show.

def _streamed(caplog, job_id: str) -> list[str]:
    prefix = f"[slurm {job_id}] "
    return [r.getMessage()[len(prefix):] for r in caplog.records if r.getMessage().startswith(prefix)]


def test_log_is_streamed_whole_lines_and_resumes_at_its_offset(stack, caplog):
    """A line written in two parts is logged once, whole; a wake-up hands back the offset of the
    first unlogged byte, and the trigger made from that offset (as a re-deferral or a restarted
    triggerer builds it from its arguments) logs the rest without repeating a line."""
    import logging

    from operators.slurm.trigger import SlurmJobTrigger

    caplog.set_level(logging.INFO)
    op = make_op({"name": "t-stream", "command": "echo first; printf 'part-one '; sleep 12; echo part-two; "
                                                 "sleep 2; echo last"})
    ti = TaskInstanceStandIn()
    deferred = submit(op, ti)
    job_id = ti.xcoms["slurm_job_id"]
    kwargs = deferred.trigger.serialize()[1]
    hook = SlurmHook("slurm_local", accounting="jobcomp")

    def half_line_written() -> bool:
        # Wait for the job itself (queueing takes longer on a loaded machine), not a guessed time;
        # the log does not exist until the job starts. srun forwards a step's output a line at a
        # time, so "part-one " reaches the file only with the rest of its line: the trigger's own
        # holding back of an unfinished line is checked by the offsets below, not by this file.
        return "first" in (hook.read_text(kwargs["log_path"]) or "")

    deadline = time.monotonic() + 120
    while not half_line_written():
        assert time.monotonic() < deadline, "the job did not start within 120 s"
        time.sleep(0.5)

    def captured(trigger):
        # The trigger logs through structlog; a plain logger lets caplog see its records.
        trigger._log = logging.getLogger("tests.slurm_trigger")
        return trigger

    # Wake after 3 s, well inside the job's 12 s pause: "first" is logged; "part-one " waits for
    # the end of its line.
    woke = run_trigger(captured(SlurmJobTrigger(**{**kwargs, "wake_after_s": 3.0})), timeout=60)
    assert woke.payload["status"] == "wake"
    offset = woke.payload["log_offset"]
    before = _streamed(caplog, job_id)
    assert before[-1] == "first" and not any("part-one" in line for line in before), before
    caplog.clear()
    resumed = captured(SlurmJobTrigger(**{**kwargs, "log_offset": offset}))
    assert resumed.serialize()[1]["log_offset"] == offset
    end = run_trigger(resumed, timeout=60)
    assert end.payload["status"] == "done"
    after = _streamed(caplog, job_id)
    # The job script's own last line (its exit status) follows; nothing before the offset repeats.
    assert after[:2] == ["part-one part-two", "last"] and not set(after) & set(before), after
    log = hook.read_text(end.payload["log_path"]).encode()
    # The wake's offset is where the unfinished line starts; the end's is the whole file.
    assert log[offset:].startswith(b"part-one part-two\n") and log[:offset].endswith(b"first\n")
    assert end.payload["log_offset"] == len(log)


def test_end_from_trigger_ends_only_a_successful_job(stack):
    """With end_from_trigger a COMPLETED job ends its task in the triggerer; a failed one resumes
    the task on a worker, where the operator judges it."""
    from airflow.triggers.base import TaskSuccessEvent

    from operators.slurm.trigger import SlurmJobTrigger

    events, job_ids = {}, {}
    for name, command in (("ok", "true"), ("bad", "exit 3")):
        ti = TaskInstanceStandIn()
        kwargs = submit(make_op({"name": f"t-eft-{name}", "command": command}), ti).trigger.serialize()[1]
        events[name] = run_trigger(SlurmJobTrigger(**{**kwargs, "end_from_trigger": True}), timeout=60)
        job_ids[name] = ti.xcoms["slurm_job_id"]
    assert isinstance(events["ok"], TaskSuccessEvent) and events["ok"].xcoms == {"slurm_job_id": job_ids["ok"]}
    assert not isinstance(events["bad"], TaskSuccessEvent)
    assert events["bad"].payload["status"] == "done" and events["bad"].payload["states"][0]["state"] == "FAILED"


def test_a_job_slurm_does_not_know_is_lost(stack):
    """A job in neither squeue nor accounting (a controller that lost its state, a rotated
    completion log) is LOST after MISSING_POLLS_BEFORE_LOST polls, deferred or not, and the
    task fails with a retryable SlurmJobLost. No real submission yields such a job, so a job id
    this cluster never issued stands for one it forgot; squeue and accounting answer for real."""
    from operators.slurm.trigger import SlurmJobTrigger
    from tasks.profiles import load_profile

    never = "987654321"
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    assert hook.states([never]) == []
    op = make_op({"name": "t-lost", "command": "true"})
    event = run_trigger(SlurmJobTrigger(ssh_conn_id="slurm_local", job_id=never, poll_interval=0.5,
                                        accounting="jobcomp"), timeout=60)
    assert event.payload["status"] == "lost" and "neither squeue nor accounting" in event.payload["message"]
    with pytest.raises(SlurmJobLost, match="LOST"):
        op.execute_complete(context_for(TaskInstanceStandIn()), event.payload)
    # The worker-side wait (deferrable=False) reaches the same verdict.
    inline = make_op({"name": "t-lost", "command": "true"}, deferrable=False, poll_interval=0.2)
    with pytest.raises(SlurmJobLost):
        inline._wait_inline(hook, load_profile("local"), never, None)


# The training chain. A second operator with try_number 2 is what the scheduler hands a task
# whose worker died; killing the real worker at that exact point is not something the scheduler
# lets a test time, so the worker's death is modelled by dropping the first operator object.

def _chain_job(tmp_name: str, stack, fail_link: int | None = None, steps: int = 2) -> tuple[dict, dict]:
    exp = f"{stack.env['SKILLFLOW_VAR']}/cluster/work/{tmp_name}-{time.time_ns()}"
    os.makedirs(exp)
    fail = f'[ "$n" = {fail_link} ] && {{ echo link $n fails; exit 3; }}; ' if fail_link else ""
    command = (f"n=$(( $(cat {exp}/count 2>/dev/null || echo 0) + 1 )); echo $n > {exp}/count; {fail}sleep 2; "
               f"printf '{{\"global_step\": %d, \"max_steps\": {steps}, \"stopped_by\": \"time\"}}' $n "
               f"> {exp}/status.json; echo link $n saved")
    return {"name": tmp_name, "command": command}, {"kind": "local", "status": f"{exp}/status.json"}


def _run_chain(op, ti, deferred, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        event = run_trigger(deferred.trigger, timeout=max(deadline - time.monotonic(), 1))
        try:
            return op.execute_complete(context_for(ti), event.payload, **(deferred.kwargs or {}))
        except TaskDeferred as again:
            deferred = again


def _training_op(job, progress, **kw):
    from operators.slurm.training import SlurmTrainingOperator

    return SlurmTrainingOperator(task_id="train", job=job, profile="local", poll_interval=1.0, progress=progress,
                                 **kw)


def test_training_chain_continues_and_reconnects_after_a_worker_restart(stack):
    job, progress = _chain_job("t-chain", stack)
    ti = TaskInstanceStandIn(task_id="train")
    submit(_training_op(job, progress, max_jobs=3), ti)
    first = ti.xcoms["slurm_job_id"]
    retry_ti = TaskInstanceStandIn(task_id="train", run_id=ti.run_id, try_number=2)
    op = _training_op(job, progress, max_jobs=3)
    deferred = submit(op, retry_ti)
    assert retry_ti.xcoms["slurm_job_id"] == first  # reconnected, not resubmitted
    result = _run_chain(op, retry_ti, deferred)
    assert result["steps"] == 2 and result["jobs"] == 2 and result["job_ids"][0] == first
    assert set(result["states"].values()) == {"COMPLETED"}


def test_training_chain_fails_on_a_failed_link(stack):
    job, progress = _chain_job("t-chain-fail", stack, fail_link=2, steps=3)
    op = _training_op(job, progress, max_jobs=5)
    ti = TaskInstanceStandIn(task_id="train")
    deferred = submit(op, ti)
    first = ti.xcoms["slurm_job_id"]
    # FAILED is in the training operator's retry_on: a retryable error, not AirflowFailException.
    with pytest.raises(SlurmJobError, match="exit code 3") as info:
        _run_chain(op, ti, deferred)
    assert not isinstance(info.value, AirflowFailException)
    assert info.value.job_id == ti.xcoms["slurm_job_id"] != first and info.value.outcome.value == "FAILED"
    assert "link 2 fails" in str(info.value)  # the failed link's log tail


def test_training_job_that_exits_0_without_progress_is_not_resubmitted(stack):
    op = _training_op({"name": "t-chain-silent", "command": "echo trained nothing"},
                      {"kind": "local", "status": f"{stack.env['SKILLFLOW_VAR']}/cluster/work/never-{time.time_ns()}.json"},
                      max_jobs=4)
    ti = TaskInstanceStandIn(task_id="train")
    with pytest.raises(AirflowFailException, match="left no progress"):
        _run_chain(op, ti, submit(op, ti))
    records = f"{stack.env['SKILLFLOW_VAR']}/cluster/work/.skillflow/jobs/selftest_direct/{ti.run_id}"
    assert sorted(n.split(".")[1] for n in os.listdir(records) if n.endswith(".jobid") and n.startswith("train.")) \
        == ["c0"]
