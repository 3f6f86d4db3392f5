"""What the local stack looked like when an integration test failed.

A failure in CI is read long after the machine is gone: the test's own assertion says what was
wrong, but not whether a service had died, a node had gone down or jobs sat queued behind
others. This snapshot answers those from the same sources a person would look at.
"""
from __future__ import annotations

import subprocess

#: Seconds any one probe may take: a snapshot of a wedged stack must not wedge the report too.
PROBE_TIMEOUT = 20


def _probe(argv: list[str], env: dict[str, str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({exc})"
    return (done.stdout + done.stderr).rstrip() or "(no output)"


def _tail(path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def snapshot() -> str:
    """The services' health, Slurm's nodes and queue, free disk, and slurmctld's last log lines."""
    from devtools.stack import control

    try:
        ctx = control.context()
        rows = control.status(ctx)
    except Exception as exc:  # the report must come out whatever state the stack is in
        return f"stack state unavailable: {exc!r}"
    parts = ["services:", control.format_table(rows)]
    parts += ["sinfo:", _probe(["sinfo", "-N", "-o", "%N %P %T %E"], ctx.env)]
    parts += ["squeue:", _probe(["squeue", "-o", "%i %P %j %T %M %R"], ctx.env)]
    # A full disk fails everything at once (a clean-clone run here once failed so: earlier clones
    # had filled it).
    parts += ["disk:", _probe(["df", "-h", ctx.env.get("SKILLFLOW_VAR", "/")], ctx.env)]
    parts += ["slurmctld.log (last 30 lines):", _tail(ctx.layout.logs / "slurmctld.log", 30)]
    return "\n".join(parts)
