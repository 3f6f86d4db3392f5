"""Bring the local stack up, take it down, report its state.

``up`` is idempotent: a healthy service is left alone, a dead one (stale pid file) is started
again. Every service's log is ``var/logs/<service>.log``; failures name that file.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from devtools.stack import process
from devtools.stack.config import TOPOLOGIES, stack_env, write_configs, write_env_file
from devtools.stack.layout import Layout
from devtools.stack.services import Context, Service, StackError, migrate_airflow_db, services_of, wait_healthy


@dataclass
class Row:
    service: str
    pid: int | None
    port: int | None
    healthy: bool
    detail: str


def context(layout: Layout | None = None) -> Context:
    layout = layout or Layout.discover()
    env = dict(os.environ)
    env.update(stack_env(layout))
    path = env.get("PATH", "")
    venv_bin = str(layout.venv_bin)
    if venv_bin not in path.split(":"):
        env["PATH"] = f"{venv_bin}:{path}" if path else venv_bin
    for sbin in ("/usr/sbin", "/sbin"):
        if sbin not in env["PATH"].split(":"):
            env["PATH"] += f":{sbin}"
    return Context(layout=layout, env=env)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _StackLock:
    """One `stack up`/`down` at a time: two concurrent ups would start every service twice."""

    def __init__(self, layout: Layout):
        layout.run.mkdir(parents=True, exist_ok=True)
        self.path = layout.run / "stack.lock"

    def __enter__(self):
        import fcntl

        self.fh = open(self.path, "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def up(services: list[Service] | None = None, *, quiet: bool = False, topology: str | None = None) -> list[Row]:
    """Start what is not healthy. ``topology`` (``local`` or ``team``) switches a stopped stack;
    a running stack of the other topology is refused (take it down first)."""
    layout = Layout.discover()
    with _StackLock(layout):
        if topology and topology != layout.topology():
            _switch(layout, topology)
        return _up(services, quiet=quiet)


def _switch(layout: Layout, topology: str) -> None:
    if topology not in TOPOLOGIES:
        raise StackError(f"unknown topology '{topology}' (known: {', '.join(TOPOLOGIES)})")
    running = [r.service for r in status(context(layout)) if r.pid]
    if running:
        raise StackError(f"the stack runs as topology '{layout.topology()}' ({', '.join(running)}): "
                         f"run `skillflow stack down` before `skillflow stack up --topology {topology}`")
    layout.run.mkdir(parents=True, exist_ok=True)
    layout.topology_file.write_text(topology + "\n")


def ensure_images(*, quiet: bool = False) -> None:
    """The local profile's images for this checkout's code: built when an input changed (a code
    change rebuilds the last layer of each, about a minute), else a few cheap checks. Jobs run in
    them, so a stack whose images lag its code would test the old code."""
    from devtools import images

    images.ensure_all(log=(lambda line: None) if quiet else (lambda line: _log(f"  image {line}")))


def _up(services: list[Service] | None, *, quiet: bool) -> list[Row]:
    ensure_images(quiet=quiet)
    ctx = context()
    write_configs(ctx.layout)
    # Host keys exist only after write_configs, so the connection env is built afterwards.
    ctx = context(ctx.layout)
    write_env_file(ctx.layout, {k: v for k, v in ctx.env.items() if k in stack_env(ctx.layout)})
    migrated = False
    for svc in services or services_of(ctx.layout.topology()):
        t0 = time.monotonic()
        ok, detail = svc.health(ctx) if process.pid_alive(ctx.layout.pidfile(svc.name)) else (False, "")
        if ok:
            if not quiet:
                _log(f"  {svc.name:<22} already up ({detail})")
            continue
        # A pid file whose process is gone, or a process that is alive but unhealthy, is restarted.
        process.stop(ctx.layout.pidfile(svc.name), group=svc.group, timeout=10)
        if svc.name.startswith("airflow-") and not migrated:
            migrate_airflow_db(ctx)
            migrated = True
        svc.start(ctx)
        ok, detail = wait_healthy(svc, ctx)
        if not ok:
            raise StackError(f"{svc.name} did not become healthy ({detail}); see {ctx.layout.logfile(svc.name)}")
        if not quiet:
            _log(f"  {svc.name:<22} started in {time.monotonic() - t0:5.1f}s ({detail})")
    return status(ctx)


def down(services: list[Service] | None = None, *, quiet: bool = False) -> None:
    with _StackLock(Layout.discover()):
        _down(services, quiet=quiet)


def _down(services: list[Service] | None, *, quiet: bool) -> None:
    ctx = context()
    for svc in reversed(services or services_of(ctx.layout.topology())):
        t0 = time.monotonic()
        word = process.stop(ctx.layout.pidfile(svc.name), group=svc.group)
        if not quiet:
            _log(f"  {svc.name:<22} {word} ({time.monotonic() - t0:.1f}s)")


def status(ctx: Context | None = None) -> list[Row]:
    ctx = ctx or context()
    rows = []
    for svc in services_of(ctx.layout.topology()):
        pid = process.pid_alive(ctx.layout.pidfile(svc.name))
        ok, detail = svc.health(ctx) if pid else (False, "not running")
        rows.append(Row(svc.name, pid, svc.port(ctx.layout), ok, detail))
    return rows


def format_table(rows: list[Row]) -> str:
    header = ("SERVICE", "PID", "PORT", "HEALTH", "DETAIL")
    body = [(r.service, str(r.pid or "-"), str(r.port or "-"), "healthy" if r.healthy else "DOWN", r.detail)
            for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body]]
    return "\n".join(lines)


def is_up() -> bool:
    return all(r.healthy for r in status())
