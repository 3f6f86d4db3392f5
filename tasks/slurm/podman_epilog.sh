#!/bin/bash
# Slurm Epilog for sites whose profile runs steps with podman (container.runtime: podman).
#
# Why: podman hands each container to conmon, outside the processes Slurm tracks, so a step's
# container outlives its step unless something ends it. The step wrapper (tasks/slurm/render.py,
# PODMAN_STEP) kills its container on Slurm's SIGTERM; this Epilog is the backstop for what that
# cannot catch: a wrapper killed with SIGKILL before it could act (the kernel's OOM killer, or
# KillWait run out while `podman kill` hung). It ends every container labelled with the finished
# job's id on this node. Slurm runs it as root on each node of the job after the job ends;
# install it with `Epilog=` in slurm.conf.
set -u
[ -n "${SLURM_JOB_ID:-}" ] || exit 0
command -v podman >/dev/null 2>&1 || exit 0
ids=$(podman ps -q --filter "label=skillflow.slurm_job=${SLURM_JOB_ID}" 2>/dev/null)
[ -z "$ids" ] || podman kill --signal KILL $ids >/dev/null 2>&1
# An Epilog's failure drains the node: what could not be killed is logged, never fatal.
exit 0
