"""On the local profile every step of every DAG runs inside one of its images; the node itself
runs only Slurm and the job script's shell plumbing, as on a pyxis cluster.

The jobs are the ones `skillflow plan` renders for each local DAG (the cases of the golden plans),
the demo DAG's job and the cluster check's probes. Outside the quoted heredocs that carry the
step texts, a script may only set up (``#SBATCH``, ``set``, ``export``, ``echo``, the multi-node
rendezvous from ``scontrol``) and start steps; every ``srun`` must go through the podman wrapper
into an image of the profile.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tasks.profiles import load_profile
from tasks.slurm.render import PODMAN_STEP, render_sbatch
from tasks.slurm.spec import JobSpec
from tests.unit.local_env import LOCAL_ENV

pytest.importorskip("airflow", reason="skillflow plan reads the DAG files' param defaults")

from tests.unit.test_plan_golden import CASES, run_plan  # noqa: E402

LOCAL_CASES = sorted(case for case, (_, profile, _) in CASES.items() if profile == "local")
#: The first word of every line the node itself may run, outside the steps.
PLUMBING = {"#!/bin/bash", "#SBATCH", "#", "set", "echo", "export", "SKILLFLOW_RC=$?", "exit", "srun", "for",
            "SKILLFLOW_SIDECAR_PIDS=()", "SKILLFLOW_SIDECAR_PIDS+=($!)", "sleep", "scontrol"}
_HEREDOC = re.compile(r"^IFS= read -r -d '' (\w+) <<'(\w+)' \|\| true\n.*?^\2\n", re.M | re.S)
_WRAPPER = shlex.quote(PODMAN_STEP)


@pytest.fixture(autouse=True)
def _local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIRFLOW__CORE__DAGS_FOLDER", raising=False)


def node_lines(script: str) -> list[str]:
    """The script's lines the node runs itself: step texts (heredocs) and the podman wrapper's
    own text (a constant of tasks/slurm/render.py) taken out."""
    outside = _HEREDOC.sub("", script).replace(_WRAPPER, "PODMAN_STEP")
    return [line for line in outside.splitlines() if line.strip()]


def assert_in_images(name: str, script: str, images: set[str]) -> int:
    """Every line is plumbing and every srun starts a container of one of ``images``; returns the
    number of steps."""
    steps = 0
    for line in node_lines(script):
        word = line.split()[0]
        if line.startswith(("SKILLFLOW_FIRST_NODE=", "#")):
            continue
        assert word in PLUMBING, f"{name}: the node itself would run {line!r}"
        if word == "srun":
            steps += 1
            assert "PODMAN_STEP skillflow-podman-step" in line, f"{name}: a step outside a container: {line!r}"
            assert any(f" {image} bash -c " in line for image in images), f"{name}: no image of the profile: {line!r}"
    assert steps, f"{name}: no step at all"
    return steps


@pytest.mark.parametrize("case", LOCAL_CASES)
def test_every_step_of_a_local_plan_runs_in_an_image(case: str, tmp_path: Path) -> None:
    dag_id, profile_name, conf = CASES[case]
    assert run_plan(dag_id, profile_name, conf, tmp_path) == 0
    images = set(load_profile("local").images.values())
    scripts = sorted(tmp_path.glob("*.sbatch"))
    assert scripts
    for script in scripts:
        assert_in_images(f"{case}/{script.name}", script.read_text(), images)


def test_the_demo_job_and_the_cluster_probes_run_in_images() -> None:
    from dags.skillflow_demo import dag as demo
    from tasks.cluster_check.probes import plan_probes

    profile = load_profile("local")
    images = set(profile.images.values())
    job = demo.get_task("slurm_job")
    spec = job._spec(profile)
    assert spec.image == profile.images["nemo_skills"]
    assert_in_images("skillflow_demo", render_sbatch(spec, profile), images)
    for probe in plan_probes(profile, "/var/lib/skillflow/cluster/work/cluster_check/r")[0]:
        assert_in_images(f"cluster_check/{probe.name}", render_sbatch(JobSpec.from_dict(probe.job), profile), images)


def test_a_step_on_the_bare_node_is_caught() -> None:
    """The check above fails for a job without an image, naming it (so it can fail at all)."""
    profile = load_profile("local")
    script = render_sbatch(JobSpec(name="bare", command="python3 -c 'print(1)'"), profile)
    with pytest.raises(AssertionError, match="bare: a step outside a container"):
        assert_in_images("bare", script, set(profile.images.values()))
