"""The services of the local stack: how each starts, how its health is judged, how it stops.

A service is data plus three small functions; ``up`` walks the list in order and ``down`` in
reverse, so adding a service means adding one entry.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from devtools.stack import nodes, process, team
from devtools.stack.config import BUCKET, MLFLOW_BUCKET
from devtools.stack.layout import Layout


class StackError(RuntimeError):
    """A service did not come up; the message names it and its log."""


@dataclass
class Context:
    layout: Layout
    env: dict[str, str]

    def bin(self, name: str) -> str:
        venv = self.layout.venv_bin / name
        return str(venv) if venv.exists() else (shutil.which(name) or name)


@dataclass(frozen=True)
class Service:
    name: str
    port: Callable[[Layout], int | None]
    start: Callable[[Context], None]
    health: Callable[[Context], tuple[bool, str]]
    # Services we launch in the foreground lead a process group; daemons that fork do not.
    group: bool = True
    start_timeout: float = 60.0


def _run(cmd: list[str], ctx: Context, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ctx.env, capture_output=True, text=True, timeout=timeout, check=check)


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, ""


# munge ----------------------------------------------------------------------------------
def _munge_start(ctx: Context) -> None:
    m = ctx.layout.munge
    _run(["munged", f"--key-file={m / 'munge.key'}", f"--socket={m / 'munge.socket'}",
          f"--pid-file={ctx.layout.pidfile('munge')}", f"--log-file={ctx.layout.logfile('munge')}",
          f"--seed-file={m / 'munge.seed'}"], ctx, check=True)


def _munge_health(ctx: Context) -> tuple[bool, str]:
    sock = str(ctx.layout.munge / "munge.socket")
    try:
        cred = _run(["munge", "-n", "-S", sock], ctx, timeout=5)
        if cred.returncode != 0:
            return False, cred.stderr.strip()[:80]
        back = subprocess.run(["unmunge", "-S", sock], input=cred.stdout, capture_output=True, text=True, timeout=5)
    except (subprocess.TimeoutExpired, FileNotFoundError) as exc:
        return False, str(exc)[:80]
    return back.returncode == 0, "credential round trip" if back.returncode == 0 else back.stderr.strip()[:80]


# slurm ----------------------------------------------------------------------------------
def _slurmctld_start(ctx: Context) -> None:
    # The controller listens on the host's end of the nodes' veth pair, so the pair comes first.
    nodes.ensure_network()
    _run(["slurmctld", "-i", "-f", ctx.env["SLURM_CONF"]], ctx, check=True)


def _slurmctld_health(ctx: Context) -> tuple[bool, str]:
    try:
        out = _run(["scontrol", "ping"], ctx, timeout=10)
    except subprocess.TimeoutExpired:
        return False, "scontrol ping timed out"
    ok = "is UP" in out.stdout
    return ok, "controller UP" if ok else (out.stdout + out.stderr).strip()[:80]


def _slurmd(node: str) -> Service:
    """The slurmd of one compute node; the second runs in its own namespaces (devtools/stack/nodes.py)."""

    def start(ctx: Context) -> None:
        if node == nodes.FIRST_NODE:
            # The one-node stack of older checkouts ran a slurmd with this pid file, on the same port.
            process.stop(ctx.layout.pidfile("slurmd"), group=False)
        _run(nodes.in_node(["slurmd", "-N", node, "-f", ctx.env["SLURM_CONF"]], node), ctx, check=True)

    def health(ctx: Context) -> tuple[bool, str]:
        try:
            out = _run(["sinfo", "-h", "-n", node, "-o", "%T %G"], ctx, timeout=10)
        except subprocess.TimeoutExpired:
            return False, "sinfo timed out"
        lines = out.stdout.split()
        state = lines[0] if lines else "unknown"
        if state.startswith(("drain", "inval", "down")) and process.pid_alive(ctx.layout.pidfile(f"slurmd-{node}")):
            # A node drained by an earlier run (e.g. a killed slurmd) comes back with a resume.
            _run(["scontrol", "update", f"nodename={node}", "state=resume"], ctx, timeout=10)
        ok = state.rstrip("*").split("+")[0] in ("idle", "mixed", "allocated", "completing")
        return ok, f"node {state} {' '.join(lines[1:2])}".strip()

    return Service(f"slurmd-{node}", lambda layout: layout.ports.slurmd, start, health, group=False,
                   start_timeout=30)


# sshd -----------------------------------------------------------------------------------
def _sshd_start(ctx: Context) -> None:
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir; no systemd makes it
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    _run([sshd, "-f", str(ctx.layout.ssh / "sshd_config"), "-E", str(ctx.layout.logfile("sshd"))], ctx, check=True)


def _sshd_health(ctx: Context) -> tuple[bool, str]:
    ok = process.port_open(ctx.layout.ports.ssh)
    return ok, "listening" if ok else "port closed"


# s3 -------------------------------------------------------------------------------------
def _s3_start(ctx: Context) -> None:
    exe = ctx.layout.root / "stack" / "node_modules" / ".bin" / "s3rver"
    if not exe.exists():
        raise StackError(f"s3rver is not installed at {exe}: run `make node` (npm ci in stack/)")
    process.spawn([str(exe), "-d", str(ctx.layout.s3), "-a", "127.0.0.1", "-p", str(ctx.layout.ports.s3),
                   "--silent", "--configure-bucket", BUCKET, "--configure-bucket", MLFLOW_BUCKET],
                  env=ctx.env, log=ctx.layout.logfile("s3"), pidfile=ctx.layout.pidfile("s3"))


def _s3_health(ctx: Context) -> tuple[bool, str]:
    status, body = _http_get(f"http://127.0.0.1:{ctx.layout.ports.s3}/{BUCKET}?max-keys=1")
    ok = status == 200 and "ListBucketResult" in body
    return ok, f"bucket {BUCKET} reachable" if ok else f"HTTP {status}"


# mlflow ---------------------------------------------------------------------------------
def _mlflow_start(ctx: Context) -> None:
    env = dict(ctx.env, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    process.spawn([ctx.bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(ctx.layout.ports.mlflow),
                   "--workers", "1", "--backend-store-uri", ctx.env["SKILLFLOW_MLFLOW_STORE"],
                   "--artifacts-destination", f"s3://{MLFLOW_BUCKET}"],
                  env=env, log=ctx.layout.logfile("mlflow"), pidfile=ctx.layout.pidfile("mlflow"))


def _mlflow_health(ctx: Context) -> tuple[bool, str]:
    status, body = _http_get(f"http://127.0.0.1:{ctx.layout.ports.mlflow}/health")
    return status == 200, "OK" if status == 200 else f"HTTP {status}"


# airflow --------------------------------------------------------------------------------
def _airflow_health_json(ctx: Context) -> dict:
    status, body = _http_get(f"http://127.0.0.1:{ctx.layout.ports.airflow}/api/v2/monitor/health")
    if status != 200:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        return {}


def _airflow_component(component: str) -> Service:
    def start(ctx: Context) -> None:
        args = [component]
        if component == "api-server" and ctx.layout.topology() == "local":
            args += ["--apps", "core"]  # the execution API runs apart: see _execution_api_start
        process.spawn([ctx.bin("airflow"), *args], env=ctx.env, log=ctx.layout.logfile(f"airflow-{component}"),
                      pidfile=ctx.layout.pidfile(f"airflow-{component}"))

    key = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}.get(component)

    def health(ctx: Context) -> tuple[bool, str]:
        data = _airflow_health_json(ctx)
        if component == "api-server":
            db = data.get("metadatabase", {}).get("status")
            return bool(data) and db == "healthy", f"metadatabase {db or 'unreachable'}"
        status = data.get(key or "", {}).get("status")
        return status == "healthy", f"heartbeat {status or 'unknown'}"

    port = (lambda layout: layout.ports.airflow) if component == "api-server" else (lambda layout: None)
    return Service(f"airflow-{component}", port, start, health, group=True, start_timeout=120)


def _execution_api_start(ctx: Context) -> None:
    """The execution API in a process of its own, on the default (SQLite) topology.

    In one process, the core API's audit-log dependency (async, ``action_logging``) commits on
    the event loop and waits there for SQLite's write lock, while an execution route (sync, for
    example a task's rendered-fields PUT) holds that lock until its session's teardown, which
    needs the same loop: both wait out SQLite's 60 s timeout, and a trigger request gets a 500
    and a worker a ReadTimeout (seen in CI). In two processes the lock holder's loop is free."""
    port = ctx.layout.ports.airflow_execution
    process.spawn([ctx.bin("airflow"), "api-server", "--apps", "execution", "--port", str(port)], env=ctx.env,
                  log=ctx.layout.logfile("airflow-execution-api"), pidfile=ctx.layout.pidfile("airflow-execution-api"))


def _execution_api_health(ctx: Context) -> tuple[bool, str]:
    status, _ = _http_get(f"http://127.0.0.1:{ctx.layout.ports.airflow_execution}/execution/health/ping")
    return status == 200, "OK" if status == 200 else f"HTTP {status}"


def migrate_airflow_db(ctx: Context) -> None:
    """Create or upgrade Airflow's metadata database (idempotent, ~5 s); on the team topology also
    FAB's tables, roles and the team's users."""
    out = _run([ctx.bin("airflow"), "db", "migrate"], ctx, timeout=300)
    if out.returncode != 0:
        log = ctx.layout.logfile("airflow-db-migrate")
        log.write_text(out.stdout + out.stderr)
        raise StackError(f"`airflow db migrate` failed (rc {out.returncode}); see {log}")
    if ctx.layout.topology() == "team":
        team.create_users(ctx)


_BASE: list[Service] = [
    Service("munge", lambda layout: None, _munge_start, _munge_health, group=False, start_timeout=10),
    Service("slurmctld", lambda layout: layout.ports.slurmctld, _slurmctld_start, _slurmctld_health, group=False,
            start_timeout=30),
    *[_slurmd(node) for node in nodes.NODES],
    Service("sshd", lambda layout: layout.ports.ssh, _sshd_start, _sshd_health, group=False, start_timeout=10),
    Service("s3", lambda layout: layout.ports.s3, _s3_start, _s3_health, start_timeout=30),
]
_MLFLOW = Service("mlflow", lambda layout: layout.ports.mlflow, _mlflow_start, _mlflow_health, start_timeout=120)
_AIRFLOW = [_airflow_component(c) for c in ("api-server", "scheduler", "dag-processor", "triggerer")]

_EXECUTION_API = Service("airflow-execution-api", lambda layout: layout.ports.airflow_execution, _execution_api_start,
                         _execution_api_health, group=True, start_timeout=120)

#: The default topology: what `make demo` starts.
SERVICES: list[Service] = [*_BASE, _MLFLOW, _AIRFLOW[0], _EXECUTION_API, *_AIRFLOW[1:]]

#: The team topology (devtools/stack/team.py): compose's processes, two Celery workers.
TEAM_SERVICES: list[Service] = [
    *_BASE,
    Service("postgres", lambda layout: layout.ports.postgres, team.postgres_start, team.postgres_health,
            start_timeout=90),
    Service("redis", lambda layout: layout.ports.redis, team.redis_start, team.redis_health, start_timeout=20),
    _MLFLOW,
    *_AIRFLOW,
    *[Service(f"celery-{name}", lambda layout: None, team.worker_start(name), team.worker_health(name),
              start_timeout=120) for name in team.WORKERS],
]


def services_of(topology: str) -> list[Service]:
    return TEAM_SERVICES if topology == "team" else SERVICES


def by_name(name: str) -> Service:
    for svc in [*SERVICES, *TEAM_SERVICES]:
        if svc.name == name:
            return svc
    raise KeyError(f"unknown service '{name}' (known: {', '.join(s.name for s in TEAM_SERVICES)})")


def wait_healthy(svc: Service, ctx: Context) -> tuple[bool, str]:
    deadline = time.monotonic() + svc.start_timeout
    detail = ""
    while time.monotonic() < deadline:
        ok, detail = svc.health(ctx)
        if ok:
            return True, detail
        if not process.pid_alive(ctx.layout.pidfile(svc.name)) and svc.name != "munge":
            # Daemons write their pid file a moment after we start them.
            time.sleep(0.5)
            if not process.pid_alive(ctx.layout.pidfile(svc.name)):
                return False, "exited"
        time.sleep(0.5)
    return False, detail or "timed out"
