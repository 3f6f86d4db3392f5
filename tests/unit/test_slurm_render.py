"""render_sbatch: header, multi-node rendezvous, sidecars and container flags per runtime."""
from __future__ import annotations

import dataclasses
import shlex
import subprocess

from tasks.profiles import ClusterProfile
from tasks.slurm.render import render_sbatch
from tasks.slurm.spec import JobSpec, Sidecar


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_header_uses_spec_then_profile_values(pyxis: ClusterProfile) -> None:
    text = render_sbatch(JobSpec(name="j", command="true", time="01:00:00", array="0-127", array_throttle=16,
                                 dependency=("afterany:7",), signal="TERM@600"), pyxis)
    header = [l for l in lines(text) if l.startswith("#SBATCH")]
    assert "#SBATCH --time=01:00:00" in header and "#SBATCH --partition=batch" in header
    assert "#SBATCH --array=0-127%16" in header and "#SBATCH --signal=TERM@600" in header
    assert "#SBATCH --dependency=afterany:7" in header and "#SBATCH --kill-on-invalid-dep=yes" in header
    assert "#SBATCH --output=/lustre/fsw/my_account/skillflow/logs/j-%A_%a.log" in header
    assert header.count("#SBATCH --exclusive") == 1 and "#SBATCH --mem=0" in header


def _rendezvous(text: str, tmp_path, show_node: str) -> str:
    """MASTER_ADDR as the script's own lines compute it, with an ``scontrol`` that answers as
    Slurm does (a test double: no allocation exists in a unit test)."""
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/bash\nif [ "$2" = hostnames ]; then printf "n7\\nn8\\n"; '
                    f'else echo {subprocess.list2cmdline([show_node])}; fi\n')
    fake.chmod(0o755)
    block = [l for l in lines(text) if "SKILLFLOW_FIRST_NODE" in l]
    script = "\n".join(block) + '\necho "$MASTER_ADDR"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": f"{fake.parent}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "n[7-8]"})
    return out.stdout.strip()


def test_multi_node_exports_rendezvous_and_hostfile(local: ClusterProfile, tmp_path) -> None:
    text = render_sbatch(JobSpec(name="train", command="run", nodes=2, ntasks_per_node=1, gpus_per_node=4,
                                 master_port=9901), local)
    # The first node's NodeAddr (names need not resolve between nodes), else its name.
    assert _rendezvous(text, tmp_path, "NodeName=n7 Arch=x86_64 CoresPerSocket=2\n   NodeAddr=10.9.0.7 "
                                       "NodeHostName=n7 Version=22.05.8") == "10.9.0.7"
    assert _rendezvous(text, tmp_path / "b", "Node n7 not found") == "n7"
    assert "export MASTER_PORT=9901" in text and 'export NNODES="$SLURM_JOB_NUM_NODES"' in text
    assert "export GPUS_PER_NODE=4" in text
    assert 'export SKILLFLOW_HOSTFILE=/var/lib/skillflow/cluster/work/hostfile-"$SLURM_JOB_ID"' in text
    assert 'sed "s/$/ slots=4/" > "$SKILLFLOW_HOSTFILE"' in text
    # Ranks are computed inside each task, from that task's own Slurm variables.
    assert 'export NODE_RANK="${SLURM_NODEID:-0}"' in text


def test_multi_node_jobs_go_to_the_profiles_multi_node_partition(local: ClusterProfile,
                                                                 pyxis: ClusterProfile) -> None:
    two = JobSpec(name="train", command="run", nodes=2)
    assert "#SBATCH --partition=multi" in lines(render_sbatch(two, local))
    assert "#SBATCH --partition=debug" in lines(render_sbatch(JobSpec(name="one", command="run"), local))
    assert "#SBATCH --partition=batch" in lines(render_sbatch(two, pyxis))  # none set: the partition
    assert "#SBATCH --partition=p1" in lines(render_sbatch(dataclasses.replace(two, partition="p1"), local))


def test_single_node_has_no_rendezvous(local: ClusterProfile) -> None:
    text = render_sbatch(JobSpec(name="one", command="run"), local)
    assert "MASTER_ADDR" not in text and "SKILLFLOW_HOSTFILE" not in text


def test_sidecar_runs_overlapped_without_gpus_and_is_stopped(pyxis: ClusterProfile) -> None:
    spec = JobSpec(name="eval", command="generate", image="img/main:1", nodes=2, gpus_per_node=8,
                   sidecars=(Sidecar(name="sandbox", command="/start.sh", image="img/sandbox:1", warmup_s=5),))
    text = render_sbatch(spec, pyxis)
    side = next(l for l in lines(text) if l.startswith("srun --overlap"))
    assert side.startswith("srun --overlap --nodes=2 --ntasks=2 --ntasks-per-node=1 --gres=none "
                           "--container-image=img/sandbox:1")
    assert side.endswith("bash -c 'eval \"$SKILLFLOW_SIDECAR_0\"' &")
    assert "sleep 5" in lines(text)
    assert 'for p in "${SKILLFLOW_SIDECAR_PIDS[@]}"; do kill "$p" 2>/dev/null; done' in text


def test_pyxis_container_flags(pyxis: ClusterProfile) -> None:
    text = render_sbatch(JobSpec(name="j", command="x", image="nvcr.io/nvidia/pytorch:24.07-py3",
                                 mounts=("/data/m:/model",)), pyxis)
    main = next(l for l in lines(text) if l.startswith("srun --ntasks-per-node"))
    assert "--container-image=nvcr.io/nvidia/pytorch:24.07-py3 --no-container-mount-home" in main
    assert "--container-mounts=/lustre/fsw/my_account:/lustre/fsw/my_account,/data/m:/model" in main
    assert "--container-workdir=/lustre/fsw/my_account/skillflow" in main


def test_apptainer_prefix(pyxis: ClusterProfile) -> None:
    profile = dataclasses.replace(pyxis, runtime="apptainer")
    text = render_sbatch(JobSpec(name="j", command="x", image="/images/sft.sif", mounts=("/data/m:/model",)), profile)
    main = next(l for l in lines(text) if l.startswith("srun --ntasks-per-node"))
    assert ("apptainer exec --nv --bind /lustre/fsw/my_account:/lustre/fsw/my_account,/data/m:/model "
            "--pwd /lustre/fsw/my_account/skillflow /images/sft.sif bash -c") in main
    assert "--container-image" not in text


def test_runtime_none_ignores_images(local: ClusterProfile) -> None:
    text = render_sbatch(JobSpec(name="j", command="x", image="ignored:1"), dataclasses.replace(local, runtime="none"))
    assert "ignored:1" not in text and "apptainer" not in text


def test_command_text_is_carried_verbatim(local: ClusterProfile, tmp_path) -> None:
    command = "echo \"$HOME\" '$(id)' `date` \\\nEOF\n"
    text = render_sbatch(JobSpec(name="j", command=command), local)
    script = tmp_path / "s.sh"
    # Run only the heredoc part: it must yield the command byte for byte.
    body = text.split("IFS= read", 1)[1].split("export SKILLFLOW_MAIN", 1)[0]
    script.write_text("IFS= read" + body + 'printf %s "$SKILLFLOW_MAIN"\n')
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout
    assert out.endswith(command)


def test_env_values_are_quoted(local: ClusterProfile) -> None:
    text = render_sbatch(JobSpec(name="j", command="x", env={"TOKEN": "a b $(id)"}), local)
    assert "export TOKEN='a b $(id)'" in text


def test_a_failed_task_ends_a_multi_task_step(local: ClusterProfile) -> None:
    """Without it the other nodes' ranks wait in their collective for its timeout (a 2-node job
    whose second rank failed to connect kept node1 busy until cancelled)."""
    main = [l for l in lines(render_sbatch(JobSpec(name="t", command="run", nodes=2), local)) if l.startswith("srun")]
    assert main == ["srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c 'eval \"$SKILLFLOW_MAIN\"'"]
    one = [l for l in lines(render_sbatch(JobSpec(name="t", command="run"), local)) if l.startswith("srun")]
    assert one == ["srun --ntasks-per-node=1 bash -c 'eval \"$SKILLFLOW_MAIN\"'"]


def _podman_argv(text: str) -> list[str]:
    """The main step's command as each task runs it (srun and its options left out)."""
    main = shlex.split(text.split("\nsrun ", 1)[1].split("\nSKILLFLOW_RC=", 1)[0])
    return main[next(i for i, w in enumerate(main) if not w.startswith("-")):]


def test_podman_step_runs_in_the_image_with_the_jobs_environment_and_exit_status(local: ClusterProfile,
                                                                                 tmp_path) -> None:
    profile = dataclasses.replace(local, runtime="podman", mounts=("/srv/work:/srv/work",),
                                  run_args=("--runtime", "runc", "--ulimit", "nofile=1024:1024"))
    text = render_sbatch(JobSpec(name="j", command="x", image="localhost/skillflow-runtime:1",
                                 mounts=("/data/m:/model",)), profile)
    # A stand-in podman (none runs in a unit test) that records its argv and exits 3.
    fake = tmp_path / "bin" / "podman"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {tmp_path}/argv\nexit 3\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": "/root", "SLURM_JOB_ID": "42", "SLURM_PROCID": "1",
           "SKILLFLOW_MAIN": "echo 'not run here'\nexit 9", "TOKEN_FILE": "/s/t"}
    done = subprocess.run(_podman_argv(text), env=env, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    argv = (tmp_path / "argv").read_text().split("\0")[:-1]
    assert argv[:6] == ["run", "--rm", "--name", "skillflow-42-0-1", "--label", "skillflow.slurm_job=42"]
    passed = {argv[i + 1] for i, w in enumerate(argv) if w == "--env"}
    # By name only: the values stay out of argv, and the host's own PATH and HOME stay out.
    assert {"SLURM_JOB_ID", "SLURM_PROCID", "SKILLFLOW_MAIN", "TOKEN_FILE"} <= passed
    assert not passed & {"PATH", "HOME", "PWD"} and "/s/t" not in argv
    rest = argv[argv.index("--network"):]
    assert rest == ["--network", "host", "--ipc", "host", "--uts", "host", "--runtime", "runc",
                    "--ulimit", "nofile=1024:1024", "--volume", "/srv/work:/srv/work", "--volume", "/data/m:/model",
                    "--workdir", local.workdir, "localhost/skillflow-runtime:1", "bash", "-c",
                    'eval "$SKILLFLOW_MAIN"']


def test_only_sandbox_containers_get_the_sandbox_run_args(local: ClusterProfile) -> None:
    """Model-written code runs in the sandbox image, whose service needs CAP_SYS_ADMIN to give
    each program namespaces of its own; no other step's container gets it."""
    assert local.sandbox_run_args == ("--cap-add", "SYS_ADMIN")
    sandbox = render_sbatch(JobSpec(name="j", command="x", image=local.images["sandbox"]), local)
    assert "--cap-add SYS_ADMIN" in sandbox
    for key in ("nemo_skills", "model_server", "trainer"):
        assert "SYS_ADMIN" not in render_sbatch(JobSpec(name="j", command="x", image=local.images[key]), local)
