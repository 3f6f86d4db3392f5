"""The podman runtime against the real local Slurm: a step runs inside its image, sees the job's
environment and the profile's mounts, hands back its exit status, and ends with its job."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from operators.slurm.errors import SlurmJobError
from operators.slurm.hook import SlurmHook
from operators.slurm.operator import SlurmJobOperator
from tests.integration import probe_image
from tests.integration.slurm_driver import TaskInstanceStandIn, finish, submit
from tests.polling import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def podman_profile(stack) -> tuple[str, str]:
    """(profile, image): the local profile (runtime podman, the cluster folder mounted) and an
    image of the tests' own that holds no python."""
    return "local", probe_image.build()


def _op(profile: str, job: dict) -> SlurmJobOperator:
    return SlurmJobOperator(task_id="job", job=job, profile=profile, poll_interval=1.0)


def _sleeping_job(profile: str, image: str, name: str) -> str:
    """The id of a job whose container has started and sleeps."""
    ti = TaskInstanceStandIn()
    submit(_op(profile, {"name": name, "command": "echo started; sleep 600", "image": image}), ti)
    job_id = str(ti.xcoms["slurm_job_id"])
    wait_until(lambda: _containers_of(job_id), 120, f"job {job_id}'s container to start")
    return job_id


def _containers_of(job_id: str) -> list[str]:
    out = subprocess.run(["podman", "ps", "-q", "--filter", f"label=skillflow.slurm_job={job_id}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_step_runs_in_its_image_with_the_jobs_environment_and_mounts(stack, podman_profile):
    profile, image = podman_profile
    out = f"in-container-{time.time_ns()}.txt"
    command = (f"cat {probe_image.MARKER}; echo; echo token=$SKILLFLOW_TEST_TOKEN rank=$NODE_RANK; "
               f"echo written > {out}; hostname; command -v python3 || echo no-python")
    ti = TaskInstanceStandIn()
    op = _op(profile, {"name": "t-podman", "command": command, "image": image,
                       "env": {"SKILLFLOW_TEST_TOKEN": "a b 'c'"}})
    result = finish(op, ti, submit(op, ti))
    log = SlurmHook("slurm_local", accounting="jobcomp").read_text(result["log"])
    assert "skillflow-probe-image" in log and "no-python" in log, log
    # The job's variables (the value with spaces and quotes intact) and the per-task ranks.
    assert "token=a b 'c' rank=0" in log, log
    # Written inside the container, on the mounted work folder, as the host sees it.
    assert (Path(stack.env["SKILLFLOW_VAR"]) / "cluster" / "work" / out).read_text() == "written\n"
    # The node's own host name (--uts host; node1 is this host), not the container's id.
    assert f"\n{socket.gethostname()}\n" in log, log


def test_exit_status_of_the_container_is_the_jobs(stack, podman_profile):
    profile, image = podman_profile
    ti = TaskInstanceStandIn()
    op = _op(profile, {"name": "t-podman-exit", "command": "echo failing; exit 5", "image": image})
    with pytest.raises(SlurmJobError, match="exit code 5"):
        finish(op, ti, submit(op, ti))


def test_a_cancelled_job_leaves_no_container_running(stack, podman_profile):
    """podman's containers live under conmon, outside what Slurm tracks: without the step's
    trap, scancel ended the step but `sleep` ran on in the container."""
    job_id = _sleeping_job(*podman_profile, "t-podman-cancel")
    SlurmHook("slurm_local", accounting="jobcomp").run(f"scancel {job_id}")
    # Slurm sends SIGTERM, then SIGKILL after KillWait (10 s); the trap acts on the first.
    wait_until(lambda: not _containers_of(job_id), 60, f"job {job_id}'s container to end", interval=1)


def test_a_step_killed_outright_has_its_container_ended_by_the_epilog(stack, podman_profile):
    """A wrapper killed with SIGKILL (the kernel's OOM killer, say) has no chance to run its
    trap; the nodes' Epilog (tasks/slurm/podman_epilog.sh) ends the job's labelled containers
    once the job is over."""
    job_id = _sleeping_job(*podman_profile, "t-podman-kill")
    # The step's wrapper and its podman client, as the OOM killer would take them.
    subprocess.run(["pkill", "-KILL", "-f", f"(skillflow-podman-step|--name skillflow-{job_id}-)"], check=True)
    wait_until(lambda: SlurmHook("slurm_local", accounting="jobcomp").states([job_id])[0].terminal, 120,
               f"job {job_id} to end")
    wait_until(lambda: not _containers_of(job_id), 60, f"job {job_id}'s container to end", interval=1)
