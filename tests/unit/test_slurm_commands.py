"""Parsers of Slurm's output, fed with text captured from the real Slurm 22.05 of the local stack."""
from __future__ import annotations

import base64

import pytest

from tasks.slurm import commands
from tasks.slurm.states import Outcome, is_terminal, normalize_state

# squeue -h -a -r -t all --jobs=3 -O 'JobID:|,ArrayJobID:|,...' while an array ran (captured).
SQUEUE_ARRAY_RUNNING = """\
3|3|2|PENDING|JobArrayTaskLimit|0|0:00|1|cpu=1,mem=22057M,node=1,billing=1|
3|3|3|PENDING|JobArrayTaskLimit|0|0:00|1|cpu=1,mem=22057M,node=1,billing=1|
5|3|1|RUNNING|None|0|0:01|1|cpu=1,node=1,billing=1|
4|3|0|RUNNING|None|0|0:01|1|cpu=1,node=1,billing=1|
"""
SQUEUE_ARRAY_DONE = """\
3|3|3|COMPLETED|None|0|0:01|1|cpu=1,node=1,billing=1|
5|3|1|COMPLETED|None|0|0:01|1|cpu=1,node=1,billing=1|
4|3|0|COMPLETED|None|0|0:01|1|cpu=1,node=1,billing=1|
6|3|2|FAILED|NonZeroExitCode|1024|0:01|1|cpu=1,node=1,billing=1|
"""
SQUEUE_PLAIN = "7|N/A|N/A|FAILED|NonZeroExitCode|768|1:02:03|1|cpu=1,node=1,billing=1,gres/gpu=1|\n"
JOBCOMP = (
    "JobId=6 UserId=root(0) GroupId=root(0) Name=wrap JobState=FAILED Partition=debug TimeLimit=UNLIMITED "
    "StartTime=2026-11-23T15:25:53 EndTime=2026-11-23T15:25:54 NodeList=localhost NodeCnt=1 ProcCnt=1 "
    "WorkDir=/tmp ReservationName= Tres=cpu=1,mem=22057M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown "
    "SubmitTime=2026-11-23T15:25:50 EligibleTime=2026-11-23T15:25:53 ArrayJobId=3 ArrayTaskId=2 "
    "DerivedExitCode=0:0 ExitCode=4:0 \n"
    "JobId=9 UserId=root(0) GroupId=root(0) Name=wrap JobState=TIMEOUT Partition=debug TimeLimit=1 "
    "NodeCnt=1 Tres=cpu=1,node=1,billing=1,gres/gpu=2 ArrayJobId=0 ArrayTaskId=4294967294 ExitCode=0:15 \n"
)


def test_squeue_array_elements_keep_their_index_while_pending():
    states = commands.parse_squeue(SQUEUE_ARRAY_RUNNING)
    assert sorted(s.key for s in states) == ["3_0", "3_1", "3_2", "3_3"]
    assert {s.state for s in states} == {"PENDING", "RUNNING"}
    assert not any(s.terminal for s in states)


def test_squeue_raw_wait_status_becomes_exit_code():
    done = {s.key: s for s in commands.parse_squeue(SQUEUE_ARRAY_DONE)}
    assert done["3_2"].exit_code == 4 and done["3_2"].outcome is Outcome.FAILED
    assert done["3_3"].outcome is Outcome.SUCCESS
    plain = commands.parse_squeue(SQUEUE_PLAIN)[0]
    assert plain.key == "7" and plain.exit_code == 3 and plain.signal == 0
    assert plain.elapsed_s == 3723 and plain.gpus == 1 and plain.gpu_hours == pytest.approx(3723 / 3600)


def test_jobcomp_lines_parse_with_array_identity():
    states = {s.key: s for s in commands.parse_accounting("@@SKILLFLOW_ACCT jobcomp\n" + JOBCOMP)}
    assert states["3_2"].state == "FAILED" and states["3_2"].exit_code == 4
    assert states["9"].outcome is Outcome.TIMEOUT and states["9"].gpus == 2 and states["9"].signal == 15


def test_sacct_lines_parse():
    text = "@@SKILLFLOW_ACCT sacct\n12_3|15|NODE_FAIL|0:0|None|60|2|cpu=8,gres/gpu=8,node=2\n13|13|CANCELLED by 0|0:15|x|5|1|cpu=1\n"
    states = {s.key: s for s in commands.parse_accounting(text)}
    assert states["12_3"].outcome is Outcome.NODE_FAIL and states["12_3"].gpus == 8
    assert states["13"].state == "CANCELLED" and states["13"].outcome is Outcome.CANCELLED


@pytest.mark.parametrize("raw,norm", [("CANCELLED by 0", "CANCELLED"), ("COMPLETED+", "COMPLETED"),
                                      ("running", "RUNNING"), ("", "UNKNOWN")])
def test_state_normalisation(raw, norm):
    assert normalize_state(raw) == norm


def test_requeued_and_preempted_states():
    assert not is_terminal("REQUEUED") and not is_terminal("PENDING")
    assert is_terminal("PREEMPTED") and is_terminal("OUT_OF_MEMORY") and is_terminal("NODE_FAIL")


def test_job_ids_are_checked_before_reaching_a_shell():
    for bad in ["1; rm -rf /", "$(id)", "12 13", ""]:
        with pytest.raises(ValueError):
            commands.cancel_command([bad])
    assert commands.cancel_command(["12", "13_4"]) == "scancel 12 13_4"
    assert commands.squeue_command(["13_4", "12", "13"]).startswith("squeue -h -a -r -t all --jobs=12,13 ")


def test_parse_submit_takes_cluster_suffix():
    assert commands.parse_submit("4242;cluster-a\n") == "4242"
    with pytest.raises(ValueError):
        commands.parse_submit("sbatch: error: Batch job submission failed\n")


def test_tail_frames_survive_any_bytes():
    data = b"line 1\n\x00\xff @@SKILLFLOW_LOG fake\n"
    out = f"{commands.LOG_MARK} '/a b/log' 99\n{base64.b64encode(data).decode()}\n"
    assert commands.parse_tails(out) == {"/a b/log": (99, data)}
    assert "tail -c +11 '/a b/log'" in commands.tail_command("/a b/log", 10)


def test_write_file_command_never_puts_content_in_the_shell():
    cmd = commands.write_file_command("/x/y.sh", "$(touch /tmp/p)\n'quote'")
    assert "touch" not in cmd and "quote" not in cmd


def test_files_complete_round_trip():
    cmd = commands.files_complete_command(["/a/b", "/c d"])
    assert "'/c d'" in cmd
    assert commands.parse_files_complete("OK /a/b\nMISSING '/c d'\n") == {"/a/b": True, "/c d": False}


def test_submission_token_is_per_record_and_try():
    record = "/w/.skillflow/jobs/d/r/t.abc.jobid"
    first = commands.submission_token(record, "/w/.skillflow/scripts/d/r/t/try1.sbatch")
    assert first == commands.submission_token(record, "/w/.skillflow/scripts/d/r/t/try1.sbatch")
    assert first != commands.submission_token(record, "/w/.skillflow/scripts/d/r/t/try2.sbatch")
    assert first != commands.submission_token(record.replace("abc", "abd"), "/w/.skillflow/scripts/d/r/t/try1.sbatch")


def test_submit_once_command_parses_and_keeps_hostile_paths_literal():
    import subprocess

    token = commands.submission_token("r", "s")
    hostile = "/w/$(touch /tmp/x)/a b;reboot"
    cmd = commands.submit_once_command(f"{hostile}/try1.sbatch", f"{hostile}/logs", f"{hostile}/rec.jobid", token)
    assert subprocess.run(["bash", "-n", "-c", cmd], capture_output=True).returncode == 0
    assert f"--comment={token}" in cmd and "$(touch" not in cmd.replace("'/w/$(touch", "")
    with pytest.raises(ValueError, match="submission token"):
        commands.submit_once_command("/s", "/l", "/r", "x; reboot")


def test_squeue_poll_counts_unknown_job_ids_as_an_answer():
    """squeue exits 1 for ids it no longer knows; the poll must still report a trusted answer, or
    a job past MinJobAge is never looked up in accounting (run here against a stand-in squeue
    that prints what Slurm 22.05 prints: the real one needs a controller)."""
    import subprocess

    cmd = commands.squeue_poll_command(["987654321"])
    fake = ('squeue() { echo "slurm_load_jobs error: Invalid job id specified" >&2; return 1; }; ')
    out = subprocess.run(["bash", "-c", fake + cmd], capture_output=True, text=True).stdout
    assert out.strip().endswith(f"{commands.SQUEUE_RC_MARK} 0")
    down = ('squeue() { echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; return 1; }; ')
    out = subprocess.run(["bash", "-c", down + cmd], capture_output=True, text=True).stdout
    assert out.strip().endswith(f"{commands.SQUEUE_RC_MARK} 1")
