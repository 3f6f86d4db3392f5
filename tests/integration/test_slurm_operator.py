"""The Slurm operator and trigger against the real local Slurm over real SSH."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from operators.slurm.errors import SlurmJobError, SlurmJobLost
from operators.slurm.hook import SlurmHook
from operators.slurm.operator import SlurmJobOperator
from tests.integration.airflow_api import client_for
from tests.integration.selftest_runs import TRAINING, TRAINING_RETRIED, chain_records, ended_run, run_training
from tests.integration.slurm_driver import TaskInstanceStandIn, context_for, finish, run_trigger, submit
from tests.polling import wait_until

pytestmark = pytest.mark.integration


def make_op(job: dict, **kw) -> SlurmJobOperator:
    kw.setdefault("poll_interval", 1.0)
    return SlurmJobOperator(task_id="job", job=job, profile="local", **kw)


# Job outcomes through the real scheduler, triggerer and worker: each case is one run of the
# selftest_slurm_job DAG (tests/dags), judged from what Airflow and Slurm record.

DAG = "selftest_slurm_job"


def _start(stack, conf: dict) -> tuple:
    api = client_for(stack)
    api.wait_for_dag(DAG)
    return api, api.trigger(DAG, {"name": "t-job", **conf})["dag_run_id"]


def _end(api, run_id: str, timeout: float = 300, watch=None) -> dict:
    return ended_run(api, run_id, DAG, "job", timeout=timeout, watch=watch)


def _run(stack, conf: dict, timeout: float = 300, watch=None) -> dict:
    return _end(*_start(stack, conf), timeout=timeout, watch=watch)


def test_job_succeeds_and_streams_its_log(stack):
    r = _run(stack, {"command": "echo hello from $SLURM_JOB_ID; echo gpu=$CUDA_VISIBLE_DEVICES", "gpus_per_node": 1})
    job_id = r["job_id"]
    assert r["state"] == "success" and r["result"]["states"] == {job_id: "COMPLETED"}
    # The job's lines reach the task's log, streamed by the trigger in the stack's triggerer.
    assert f"[slurm {job_id}] hello from {job_id}" in r["log"], r["log"][-3000:]
    assert f"[slurm {job_id}] gpu=0" in r["log"] or f"[slurm {job_id}] gpu=1" in r["log"]


def test_exit_3_names_exit_code_and_log_tail(stack):
    r = _run(stack, {"command": "echo about to fail; echo LAST-WORDS; exit 3"})
    assert r["state"] == "failed" and r["ti"]["try_number"] == 1
    # The worker's error names the outcome, the exit code and the job log's last lines.
    for text in ("SlurmJobError", "FAILED", "exit code 3", "LAST-WORDS"):
        assert text in r["log"], (text, r["log"][-3000:])


@pytest.mark.heavy  # about 80 s of real walltime: run by `make faults` (tests/faults/cases.py), not `make test`
def test_time_limit_gives_timeout_outcome(stack):
    r = _run(stack, {"command": "sleep 300", "time": "00:00:01"})
    assert r["state"] == "failed"
    assert "SlurmJobTimeout" in r["log"] and "TIMEOUT" in r["log"], r["log"][-3000:]
    states = SlurmHook("slurm_local", accounting="jobcomp").states([r["job_id"]])
    assert [s.state for s in states] == ["TIMEOUT"]


def test_array_with_throttle_lists_failed_index(stack):
    name = f"t-array-{uuid.uuid4().hex[:8]}"
    running: list[int] = []

    def watch_throttle():
        out = subprocess.run(["squeue", "-h", "-r", "-n", name, "-t", "RUNNING", "-o", "%i"], capture_output=True,
                             text=True)
        running.append(len(out.stdout.split()))

    r = _run(stack, {"name": name, "array": "0-7", "array_throttle": 2,
                     "command": 'sleep 1; [ "$SLURM_ARRAY_TASK_ID" = 5 ] && exit 7; echo element $SLURM_ARRAY_TASK_ID'},
             watch=watch_throttle)
    assert r["state"] == "failed"
    assert "indices 5 " in r["log"], r["log"][-3000:]
    assert 1 <= max(running) <= 2, running


def _ti_state(api, run_id: str) -> str:
    return api._request("GET", f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/job")["state"]


def test_dependency_chain_runs_in_order(stack):
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    workdir = Path(stack.env["SKILLFLOW_VAR"]) / "cluster" / "work"
    tag = uuid.uuid4().hex[:8]
    gate = workdir / f"dep-{tag}.gate"
    api, first = _start(stack, {"name": "t-dep-a", "command": f"while [ ! -e {gate} ]; do sleep 0.2; done; "
                                                              f"date +%s.%N > dep_a-{tag}.txt"})
    try:
        wait_until(lambda: _ti_state(api, first) == "deferred", 120, "the first task to defer")
        a_id = str(api.xcom(DAG, first, "job", key="slurm_job_id"))
        # The second job is submitted while the first one waits at its gate, with afterok on it.
        _, second = _start(stack, {"name": "t-dep-b", "command": f"date +%s.%N > dep_b-{tag}.txt",
                                   "dependency": [f"afterok:{a_id}"]})
        wait_until(lambda: _ti_state(api, second) == "deferred", 120, "the second task to defer")
        b_id = str(api.xcom(DAG, second, "job", key="slurm_job_id"))
        assert [s.state for s in hook.states([b_id])] == ["PENDING"]
    finally:
        gate.touch()
    assert _end(api, first)["state"] == "success" and _end(api, second)["state"] == "success"
    a_time = float(hook.read_text(f"{workdir}/dep_a-{tag}.txt"))
    b_time = float(hook.read_text(f"{workdir}/dep_b-{tag}.txt"))
    assert b_time > a_time


def test_retry_reconnects_instead_of_submitting_twice(stack):
    # Stand-in: the case is a second try while the first try's job still runs. The scheduler
    # starts try 2 only after try 1 has ended, and a deferred try 1 ends while its job runs only
    # by being killed, whose on_kill cancels the job; so try 2 is handed over here directly.
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
    r = _run(stack, {"name": "t-inject", "command": 'printf "%s\\n" "$HOSTILE"', "env": {"HOSTILE": hostile}})
    assert r["state"] == "success"
    log = SlurmHook("slurm_local", accounting="jobcomp").read_text(r["result"]["log"])
    assert hostile in log
    assert not os.path.exists(marker)  # the job has ended: whatever it ran has run


def test_expected_outputs_overrule_a_failed_state(stack):
    """NeMo-Skills images end every job with an MPI error even after finishing the work."""
    out = f"{stack.env['SKILLFLOW_VAR']}/cluster/work/t-outputs-{time.time_ns()}.jsonl"
    r = _run(stack, {"name": "t-outputs", "command": f"echo done > {out}; echo 'MPI_ABORT was invoked'; exit 1",
                     "expected_outputs": [out]})
    assert r["state"] == "success" and list(r["result"]["states"].values()) == ["FAILED"]
    missing = _run(stack, {"name": "t-outputs", "command": "exit 1", "expected_outputs": [out + ".never"]})
    assert missing["state"] == "failed" and "exit code 1" in missing["log"]


def test_finished_job_is_found_in_accounting_after_leaving_the_queue(stack):
    """After MinJobAge squeue forgets a job; without slurmdbd the jobcomp log still has it."""
    from tasks.slurm import commands

    r = _run(stack, {"name": "t-acct", "command": "exit 4"})
    assert r["state"] == "failed"
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    _, out, _ = hook.run(commands.accounting_command([r["job_id"]], "jobcomp"))
    states = {s.key: s for s in commands.parse_accounting(out)}
    assert states[r["job_id"]].state == "FAILED" and states[r["job_id"]].exit_code == 4


# The trigger's own path against the real poller, sshd and Slurm, driven in this process.

def _streamed(caplog, job_id: str) -> list[str]:
    prefix = f"[slurm {job_id}] "
    return [r.getMessage()[len(prefix):] for r in caplog.records if r.getMessage().startswith(prefix)]


def test_log_is_streamed_whole_lines_and_resumes_at_its_offset(stack, caplog):
    """A line written in two parts is logged once, whole; a wake-up hands back the offset of the
    first unlogged byte, and the trigger made from that offset (as a re-deferral or a restarted
    triggerer builds it from its arguments) logs the rest without repeating a line."""
    import logging

    from operators.slurm.trigger import SlurmJobTrigger

    # Stand-in: what is checked is what the trigger does in between (the lines it logs, the offset
    # a wake hands back), which only its own log records show, not the task log of a whole run.
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

    wait_until(half_line_written, 120, f"job {job_id} to start and write its first line")

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


def _sbatch(name: str, command: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", "-J", name, "-o", "/dev/null", "--wrap", command],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().split(";")[0]


def test_end_from_trigger_ends_only_a_successful_job(stack):
    """With end_from_trigger a COMPLETED job ends its task in the triggerer (TaskSuccessEvent); a
    failed one resumes the task on a worker (a "done" event the operator judges)."""
    from airflow.triggers.base import TaskSuccessEvent

    from operators.slurm.trigger import SlurmJobTrigger

    events, job_ids = {}, {}
    for name, command in (("ok", "true"), ("bad", "exit 3")):
        job_ids[name] = _sbatch(f"t-eft-{name}", command)
        events[name] = run_trigger(SlurmJobTrigger(ssh_conn_id="slurm_local", job_id=job_ids[name], poll_interval=0.5,
                                                   accounting="jobcomp", end_from_trigger=True), timeout=60)
    assert isinstance(events["ok"], TaskSuccessEvent) and events["ok"].xcoms == {"slurm_job_id": job_ids["ok"]}
    assert not isinstance(events["bad"], TaskSuccessEvent)
    assert events["bad"].payload["status"] == "done" and events["bad"].payload["states"][0]["state"] == "FAILED"


def test_end_from_trigger_in_the_stacks_triggerer(stack):
    """The same through the stack's scheduler and triggerer: selftest_trigger_scale (tests/dags)
    starts its tasks in the triggerer, and its worker-side execute_complete always fails, so a
    task that succeeds can only have ended in the triggerer."""
    ids = [_sbatch("t-eft-ok", "true"), _sbatch("t-eft-bad", "exit 3")]
    api = client_for(stack)
    api.wait_for_dag("selftest_trigger_scale")
    run_id = api.trigger("selftest_trigger_scale", {"jobs": ids})["dag_run_id"]
    assert api.wait_for_run("selftest_trigger_scale", run_id, timeout=300, interval=1.0)["state"] == "failed"
    track = {t["map_index"]: t for t in api.task_instances("selftest_trigger_scale", run_id) if t["task_id"] == "track"}
    assert track[0]["state"] == "success" and track[1]["state"] == "failed", track
    assert str(api.xcom("selftest_trigger_scale", run_id, "track", key="slurm_job_id", map_index=0)) == ids[0]
    # The failed job resumed its task on a worker, which received the trigger's "done" event.
    base = f"/api/v2/dags/selftest_trigger_scale/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/track"
    log = json.dumps(api._request("GET", f"{base}/logs/{track[1]['try_number']}?full_content=true&map_index=1"))
    assert f"Slurm job {ids[1]} ended done" in log and "FAILED" in log, log[-3000:]


def test_a_job_slurm_does_not_know_is_lost(stack):
    """A job in neither squeue nor accounting (a controller that lost its state, a rotated
    completion log) is LOST after MISSING_POLLS_BEFORE_LOST polls, deferred or not, and the
    task fails with a retryable SlurmJobLost. No real submission yields such a job, so a job id
    this cluster never issued stands for one it forgot; squeue and accounting answer for real.
    Stand-in: the operator waits only for jobs it submitted, so no DAG run can hand it that id."""
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
# lets a test time, so the worker's death is modelled by dropping the first operator object
# (the stand-in of test_training_chain_continues_and_reconnects_after_a_worker_restart).

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
    # Stand-in: as in test_retry_reconnects_instead_of_submitting_twice, try 2 while try 1's job
    # runs: the scheduler starts it only after try 1 has ended, and killing the deferred try 1
    # cancels its job (on_kill), so try 2 is handed over here directly.
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


# The chain's verdicts through the real scheduler, triggerer and worker: each case is one run of
# the selftest_slurm_training DAG (tests/dags), which wires the training operator from its params.

def test_training_chain_fails_on_a_failed_link(stack):
    job, progress = _chain_job("t-chain-fail", stack, fail_link=2, steps=3)
    r = run_training(stack, {"job": job, "progress": progress, "max_jobs": 5})
    assert r["state"] == "failed" and r["ti"]["try_number"] == 1
    ids = chain_records(stack, TRAINING, r["run_id"])
    # The first link saved and a continuation followed; the second failed, and no third was sent.
    assert len(ids) == 2, ids
    states = SlurmHook("slurm_local", accounting="jobcomp").states(ids)
    assert {s.job_id: s.state for s in states} == {ids[0]: "COMPLETED", ids[1]: "FAILED"}
    assert r["job_id"] == ids[1]
    # FAILED is in the training operator's retry_on: the worker raised the retryable SlurmJobError
    # (not AirflowFailException) naming the failed link's exit code and its log tail.
    assert not issubclass(SlurmJobError, AirflowFailException)
    for text in ("SlurmJobError", "exit code 3", "link 2 fails"):
        assert text in r["log"], (text, r["log"][-3000:])
    assert "AirflowFailException" not in r["log"], r["log"][-3000:]


def test_a_retried_chain_resubmits_its_failed_link(stack):
    # The product's retry (retries=1): try 1 ends on the failed link; try 2 must submit the next
    # link, which resumes from the saved step, instead of judging the same failed link again.
    job, progress = _chain_job("t-chain-retry", stack, fail_link=2, steps=3)
    r = run_training(stack, {"job": job, "progress": progress, "max_jobs": 5}, dag=TRAINING_RETRIED)
    assert r["state"] == "success" and r["ti"]["try_number"] == 2, (r["state"], r["ti"], r["log"][-3000:])
    ids = chain_records(stack, TRAINING_RETRIED, r["run_id"])
    assert len(ids) == 3, ids
    states = SlurmHook("slurm_local", accounting="jobcomp").states(ids)
    assert {s.job_id: s.state for s in states} == {ids[0]: "COMPLETED", ids[1]: "FAILED", ids[2]: "COMPLETED"}
    assert r["result"]["steps"] == 3 and r["result"]["job_ids"] == ids, r["result"]
    assert "submits the chain's next link" in r["log"], r["log"][-3000:]


def test_training_job_that_exits_0_without_progress_is_not_resubmitted(stack):
    status = f"{stack.env['SKILLFLOW_VAR']}/cluster/work/never-{time.time_ns()}.json"
    r = run_training(stack, {"job": {"name": "t-chain-silent", "command": "echo trained nothing"},
                       "progress": {"kind": "local", "status": status}, "max_jobs": 4})
    assert r["state"] == "failed"
    assert "AirflowFailException" in r["log"] and "left no progress" in r["log"], r["log"][-3000:]
    # One job: the chain did not send the same script again up to max_jobs.
    assert len(chain_records(stack, TRAINING, r["run_id"])) == 1
