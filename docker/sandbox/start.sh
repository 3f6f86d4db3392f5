#!/bin/sh
# Stand-in for the NeMo-Skills sandbox image's /start.sh: serve the sandbox on port 6000.
# Inside a Slurm job (pyxis shares the node's network) the NeMo-Skills client reaches the sandbox
# on 127.0.0.1, so bind loopback there rather than expose code execution to the whole cluster;
# elsewhere (docker run) bind all interfaces of the container. SKILLFLOW_SANDBOX_HOST overrides.
if [ -n "${SLURM_JOB_ID:-}" ]; then default_host=127.0.0.1; else default_host=0.0.0.0; fi
exec skillflow sandbox serve --host "${SKILLFLOW_SANDBOX_HOST:-$default_host}" \
    --port "${SKILLFLOW_SANDBOX_PORT:-6000}" "$@"
