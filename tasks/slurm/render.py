"""Render a :class:`JobSpec` into an sbatch script for the profile's container runtime.

Layout of every script: ``#SBATCH`` header, environment exports (shell-quoted), multi-node
rendezvous variables, the step commands carried in environment variables filled from quoted
heredocs (so nothing in them is expanded by the batch shell), sidecars started in the
background with ``srun --overlap``, then the main step. The main step's exit status is the
job's exit status; sidecars are stopped when it ends.

Node rank is computed inside each task (``$SLURM_NODEID`` expanded on its own node), never at
submit time, because every node runs the same script text.
"""
from __future__ import annotations

import hashlib
import shlex

from tasks.profiles import ClusterProfile
from tasks.slurm.spec import JobSpec, Sidecar

_PER_TASK_PRELUDE = (
    'export NODE_RANK="${SLURM_NODEID:-0}" LOCAL_RANK="${SLURM_LOCALID:-0}" '
    'GLOBAL_RANK="${SLURM_PROCID:-0}"\n'
)


def default_log_path(spec: JobSpec, workdir: str) -> str:
    pattern = "%A_%a" if spec.is_array else "%j"
    return f"{workdir.rstrip('/')}/logs/{spec.name}-{pattern}.log"


def _heredoc_var(var: str, text: str) -> str:
    """Assign ``text`` to ``var`` verbatim: a quoted heredoc expands nothing."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    delim = f"SKILLFLOW_{var}_{digest}"
    if any(line.strip() == delim for line in text.splitlines()):  # pragma: no cover - sha collision
        raise ValueError(f"step text contains its own heredoc delimiter {delim}")
    body = text if text.endswith("\n") else text + "\n"
    return f"IFS= read -r -d '' {var} <<'{delim}' || true\n{body}{delim}\nexport {var}\n"


#: What each task of a podman step runs (argv: podman's run options, the image, the command).
#: podman hands the container to conmon, outside the processes Slurm tracks, so on its own a
#: cancelled or timed-out step would leave its container running: the trap turns Slurm's
#: SIGTERM into ``podman kill``. The job's environment reaches the container by name (its
#: values never pass through argv), less what describes the host rather than the job.
PODMAN_STEP = r"""name="skillflow-${SLURM_JOB_ID:-0}-${SLURM_STEP_ID:-0}-${SLURM_PROCID:-0}"
envs=()
while IFS= read -r -d '' kv; do
  k="${kv%%=*}"
  case "$k" in
    PATH|HOME|HOSTNAME|PWD|OLDPWD|SHLVL|_|TERM|TMPDIR|USER|LOGNAME|SHELL|MAIL) ;;
    *) [[ "$k" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && envs+=(--env "$k") ;;
  esac
done < <(env -0)
trap 'podman kill --signal KILL "$name" >/dev/null 2>&1' TERM INT
podman run --rm --name "$name" --label "skillflow.slurm_job=${SLURM_JOB_ID:-0}" "${envs[@]}" "$@" &
child=$!
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
exit "$rc"
"""


def _container_prefix(profile: ClusterProfile, image: str | None, mounts: tuple[str, ...],
                      workdir: str | None) -> tuple[list[str], list[str]]:
    """(extra srun flags, command prefix) that run a step inside ``image`` for this runtime."""
    if not image or profile.runtime == "none":
        return [], []
    if profile.runtime == "podman":
        # The node's own network, IPC (shared memory of torch and NCCL/gloo) and host name, as
        # pyxis gives a step; the profile adds the site's own options (run_args).
        opts = ["--network", "host", "--ipc", "host", "--uts", "host", *profile.run_args]
        if image == profile.images.get("sandbox"):
            opts += profile.sandbox_run_args
        for mount in mounts:
            opts += ["--volume", mount]
        if workdir:
            opts += ["--workdir", workdir]
        return [], ["bash", "-c", PODMAN_STEP, "skillflow-podman-step", *opts, image]
    if profile.runtime == "pyxis":
        flags = [f"--container-image={image}", "--no-container-mount-home"]
        if mounts:
            flags.append("--container-mounts=" + ",".join(mounts))
        if workdir:
            flags.append(f"--container-workdir={workdir}")
        return flags, []
    if profile.runtime == "apptainer":
        prefix = ["apptainer", "exec", "--nv"]
        if mounts:
            prefix += ["--bind", ",".join(mounts)]
        if workdir:
            prefix += ["--pwd", workdir]
        return [], prefix + [image]
    raise ValueError(f"unknown container runtime {profile.runtime!r}")


def _eval_cmd(var: str) -> list[str]:
    # The step text reaches each task through the environment, not argv, so its size and
    # content never meet a second round of shell parsing.
    return ["bash", "-c", f'eval "${var}"']


def _join(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def header_lines(spec: JobSpec, profile: ClusterProfile, workdir: str) -> list[str]:
    out = [f"--job-name={spec.name}", f"--nodes={spec.nodes}", f"--ntasks-per-node={spec.ntasks_per_node}"]
    if spec.gpus_per_node:
        out.append(f"--gpus-per-node={spec.gpus_per_node}")
    if spec.cpus_per_task:
        out.append(f"--cpus-per-task={spec.cpus_per_task}")
    if spec.mem is not None:
        out.append(f"--mem={spec.mem}")
    time = spec.time or profile.default_time
    if time:
        out.append(f"--time={time}")
    partition = spec.partition or (profile.multi_node_partition if spec.nodes > 1 else None) or profile.partition
    if partition:
        out.append(f"--partition={partition}")
    account = spec.account or profile.account
    if account:
        out.append(f"--account={account}")
    if spec.exclusive:
        out.append("--exclusive")
    if spec.array:
        throttle = f"%{spec.array_throttle}" if spec.array_throttle else ""
        out.append(f"--array={spec.array}{throttle}")
    if spec.dependency:
        out.append("--dependency=" + ",".join(spec.dependency))
        if spec.kill_on_invalid_dep:
            # Without it a job whose parent failed pends forever (DependencyNeverSatisfied).
            out.append("--kill-on-invalid-dep=yes")
    out.append(f"--output={spec.output or default_log_path(spec, workdir)}")
    out.append(f"--chdir={workdir}")
    if spec.signal:
        out.append(f"--signal={spec.signal}")
    if spec.requeue is True:
        out.append("--requeue")
    elif spec.requeue is False:
        out.append("--no-requeue")
    if spec.comment:
        out.append(f"--comment={spec.comment}")
    seen = {line.split("=", 1)[0] for line in out}
    for arg in (*profile.extra_sbatch_args, *spec.extra_sbatch_args):
        if arg.split("=", 1)[0] in seen and arg not in out:
            continue  # the spec's own value wins over a profile default
        if arg not in out:
            out.append(arg)
    return out


def render_sbatch(spec: JobSpec, profile: ClusterProfile) -> str:
    """The complete sbatch script text for ``spec`` on ``profile``'s cluster."""
    spec.validate()
    workdir = spec.workdir or profile.workdir
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH {h}" for h in header_lines(spec, profile, workdir)]
    lines.append(f"# Rendered by skillflow for cluster profile '{profile.name}' (container runtime: {profile.runtime}).")
    lines.append("set -uo pipefail")
    lines.append('echo "skillflow: job ${SLURM_JOB_ID} (${SLURM_JOB_NAME}) on $(hostname) at $(date -Is)"')
    # Steps refer to the cluster's own paths through these, never to literal paths.
    env = {"SKILLFLOW_PYTHON": profile.python, "SKILLFLOW_CLI": profile.skillflow, "SKILLFLOW_WORKDIR": workdir,
           **profile.env, **spec.env}
    for key in sorted(env):
        lines.append(f"export {key}={shlex.quote(str(env[key]))}")
    if spec.nodes > 1:
        gpus = spec.gpus_per_node or spec.ntasks_per_node
        lines += [
            # The first node's address as Slurm itself reaches it (NodeAddr), not its name: a node
            # name need not resolve on the other nodes (it does not between the local stack's two).
            'SKILLFLOW_FIRST_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
            'export MASTER_ADDR="$(scontrol show node "$SKILLFLOW_FIRST_NODE" '
            '| sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\' | head -n 1)"',
            'export MASTER_ADDR="${MASTER_ADDR:-$SKILLFLOW_FIRST_NODE}"',
            f"export MASTER_PORT={spec.master_port}",
            'export NNODES="$SLURM_JOB_NUM_NODES"',
            f"export GPUS_PER_NODE={gpus}",
            f"export SKILLFLOW_HOSTFILE={shlex.quote(workdir.rstrip('/'))}/hostfile-\"$SLURM_JOB_ID\"",
            f'scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/$/ slots={gpus}/" > "$SKILLFLOW_HOSTFILE"',
        ]
    body = "".join(_heredoc_var(f"SKILLFLOW_SIDECAR_{i}", sc.command) for i, sc in enumerate(spec.sidecars))
    body += _heredoc_var("SKILLFLOW_MAIN", _PER_TASK_PRELUDE + spec.command)
    lines.append(body.rstrip("\n"))
    mounts = tuple(profile.mounts) + tuple(spec.mounts)
    if spec.sidecars:
        lines.append("SKILLFLOW_SIDECAR_PIDS=()")
    for i, sidecar in enumerate(spec.sidecars):
        lines += _sidecar_lines(i, sidecar, spec, profile, mounts, workdir)
    flags, prefix = _container_prefix(profile, spec.image, mounts, workdir)
    if spec.use_srun:
        srun = ["srun", f"--ntasks-per-node={spec.ntasks_per_node}", *flags]
        if spec.nodes * spec.ntasks_per_node > 1:
            # One task failing ends the step: its peers would otherwise wait in their collective
            # until its timeout (30 min for NCCL and gloo), holding every node of the job.
            srun.insert(1, "--kill-on-bad-exit=1")
        lines.append(_join(srun + prefix + _eval_cmd("SKILLFLOW_MAIN")))
    else:
        lines.append(_join(_eval_cmd("SKILLFLOW_MAIN")))
    lines.append("SKILLFLOW_RC=$?")
    if spec.sidecars:
        lines.append('for p in "${SKILLFLOW_SIDECAR_PIDS[@]}"; do kill "$p" 2>/dev/null; done')
    lines.append('echo "skillflow: main step exited with status $SKILLFLOW_RC at $(date -Is)"')
    lines.append('exit "$SKILLFLOW_RC"')
    return "\n".join(lines) + "\n"


def _sidecar_lines(i: int, sidecar: Sidecar, spec: JobSpec, profile: ClusterProfile, mounts: tuple[str, ...],
                   workdir: str) -> list[str]:
    # A sidecar in its own image (the code sandbox) gets none of the job's mounts, as upstream's
    # launcher starts the sandbox: model-written code must not reach the model, code or results.
    flags, prefix = _container_prefix(profile, sidecar.image, (), None)
    # One copy per node, sharing the allocation's CPUs with the main step (--overlap), and no
    # GPUs: the sandbox must never hold a device the model server needs.
    srun = ["srun", "--overlap", f"--nodes={spec.nodes}", f"--ntasks={spec.nodes}", "--ntasks-per-node=1",
            "--gres=none", *flags]
    out = [f"export {k}={shlex.quote(v)}" for k, v in sorted(sidecar.env.items())]
    out.append(f"# sidecar: {sidecar.name}")
    out.append(_join(srun + prefix + _eval_cmd(f"SKILLFLOW_SIDECAR_{i}")) + " &")
    out.append("SKILLFLOW_SIDECAR_PIDS+=($!)")
    if sidecar.warmup_s:
        out.append(f"sleep {int(sidecar.warmup_s)}")
    return out
