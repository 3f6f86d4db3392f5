"""The team topology: the processes of ``docker/compose.yaml``, run from Debian and PyPI packages.

PostgreSQL holds Airflow's and MLflow's databases, Redis is the Celery broker, two Celery workers
run the tasks, and Flask-AppBuilder's auth manager keeps users and roles. Airflow's settings come
from ``docker/airflow/team-settings.yaml``, the file compose's block is rendered from, so the two
cannot drift (``render_compose`` and its unit test). Each worker runs in a UTS namespace of its
own with its own host name, as it would on its own machine, so a task instance's ``hostname`` says
which worker ran it.
"""
from __future__ import annotations

import glob
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import yaml

from devtools.stack import process
from devtools.stack.config import load_secrets
from devtools.stack.layout import Layout

SETTINGS = Path("docker") / "airflow" / "team-settings.yaml"
COMPOSE = Path("docker") / "compose.yaml"
# The service names and ports compose gives the same servers.
COMPOSE_ADDRESSES = {"POSTGRES_ADDRESS": "postgres:5432", "REDIS_ADDRESS": "redis:6379"}
WORKERS = ("worker-1", "worker-2")
BEGIN = "# >>> generated from docker/airflow/team-settings.yaml by `skillflow stack render-compose`"
END = "# <<< end of generated settings"


class TeamSettingsError(ValueError):
    """team-settings.yaml names something neither rendering can fill in."""


def settings(root: Path) -> dict:
    path = root / SETTINGS
    data = yaml.safe_load(path.read_text())
    for section in ("airflow", "users", "mlflow"):
        if not isinstance(data.get(section), dict):
            raise TeamSettingsError(f"{path}: section '{section}' is missing or not a mapping")
    return data


def fill(text: str, values: dict[str, str], *, keep_unknown: bool = False, where: str = "") -> str:
    """Replace ``${NAME}`` by ``values[NAME]``; an unknown name is kept (compose interpolates it)
    or refused, naming it."""
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        if keep_unknown:
            return match.group(0)
        raise TeamSettingsError(f"{where}: ${{{name}}} has no value in this rendering")

    return re.sub(r"\$\{([A-Z0-9_]+)\}", one, text)


# The local rendering ------------------------------------------------------------------------
def local_values(layout: Layout) -> dict[str, str]:
    sec = load_secrets(layout)
    return {"POSTGRES_ADDRESS": f"127.0.0.1:{layout.ports.postgres}",
            "REDIS_ADDRESS": f"127.0.0.1:{layout.ports.redis}",
            "AIRFLOW_DB_PASSWORD": sec["airflow_db_password"],
            "MLFLOW_DB_PASSWORD": sec["mlflow_db_password"]}


def team_env(layout: Layout) -> dict[str, str]:
    data = settings(layout.root)
    values = local_values(layout)
    env = {k: fill(str(v), values, where=f"{SETTINGS}: airflow.{k}") for k, v in data["airflow"].items()}
    env["SKILLFLOW_MLFLOW_STORE"] = fill(data["mlflow"]["backend_store_uri"], values,
                                         where=f"{SETTINGS}: mlflow.backend_store_uri")
    return env


def user_passwords(layout: Layout) -> dict[str, tuple[str, str]]:
    """User name -> (FAB role, password) for the local topology."""
    sec = load_secrets(layout)
    return {name: (role, sec[f"{name}_password"]) for name, role in settings(layout.root)["users"].items()}


# The compose rendering ----------------------------------------------------------------------
def compose_block(root: Path, indent: str = "    ") -> list[str]:
    data = settings(root)
    lines = [indent + BEGIN]
    for key, value in data["airflow"].items():
        text = fill(str(value), COMPOSE_ADDRESSES, keep_unknown=True, where=f"{SETTINGS}: airflow.{key}")
        lines.append(f"{indent}{key}: {json.dumps(text)}")
    lines.append(indent + END)
    return lines


def render_compose(root: Path, text: str | None = None) -> str:
    """docker/compose.yaml with its generated block rewritten from the settings file."""
    path = root / COMPOSE
    text = path.read_text() if text is None else text
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise TeamSettingsError(f"{path}: expected one generated block between '{BEGIN}' and '{END}'")
    indent = lines[starts[0]][: len(lines[starts[0]]) - len(lines[starts[0]].lstrip())]
    out = lines[: starts[0]] + compose_block(root, indent) + lines[ends[0] + 1:]
    return "\n".join(out) + "\n"


# Services -----------------------------------------------------------------------------------
def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        from devtools.stack.services import StackError

        raise StackError(f"PostgreSQL's {name} is not installed (Debian package postgresql): run `make install`")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd]


def postgres_start(ctx) -> None:
    from devtools.stack.services import StackError

    layout = ctx.layout
    # The server runs as the postgres user, so var/ must be a folder others may enter; munged
    # already demands as much of its socket's path (devtools/stack/config.py).
    data, sockets = layout.postgres / "data", layout.postgres / "sockets"
    sec = load_secrets(layout)
    for d in (layout.postgres, sockets):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "postgres", "postgres")
    fresh = not (data / "PG_VERSION").exists()
    if fresh:
        pwfile = layout.postgres / "superuser.pw"
        pwfile.write_text(sec["postgres_password"] + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        out = subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "postgres",
                                           "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"]),
                             capture_output=True, text=True, timeout=120)
        pwfile.unlink()
        if out.returncode != 0:
            raise StackError(f"initdb failed: {(out.stdout + out.stderr).strip()[-400:]}")
    log = layout.logfile("postgres")
    log.touch()
    shutil.chown(log, "postgres", "postgres")
    process.spawn(_as_postgres([_pg_bin("postgres"), "-D", str(data), "-p", str(layout.ports.postgres),
                                "-c", "listen_addresses=127.0.0.1", "-k", str(sockets)]),
                  env=ctx.env, log=log, pidfile=layout.pidfile("postgres"))
    if not process.wait_for(lambda: postgres_health(ctx)[0], timeout=60):
        raise StackError(f"PostgreSQL did not accept connections; see {log}")
    if fresh:
        _create_databases(ctx, sec)


def _create_databases(ctx, sec: dict[str, str]) -> None:
    """The databases and roles, by the same script compose's postgres image runs at first start."""
    from devtools.stack.services import StackError

    env = dict(ctx.env, PGHOST="127.0.0.1", PGPORT=str(ctx.layout.ports.postgres),
               PGPASSWORD=sec["postgres_password"], POSTGRES_USER="postgres", POSTGRES_DB="postgres",
               AIRFLOW_DB_PASSWORD=sec["airflow_db_password"], MLFLOW_DB_PASSWORD=sec["mlflow_db_password"])
    script = ctx.layout.root / "docker" / "airflow" / "postgres-init" / "10-databases.sh"
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise StackError(f"{script} failed: {(out.stdout + out.stderr).strip()[-400:]}")


def postgres_health(ctx) -> tuple[bool, str]:
    try:
        out = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(ctx.layout.ports.postgres)],
                             capture_output=True, text=True, timeout=10)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return False, str(exc)[:80]
    return out.returncode == 0, out.stdout.strip().split(" - ")[-1] or out.stderr.strip()[:80]


def redis_start(ctx) -> None:
    layout = ctx.layout
    layout.redis.mkdir(parents=True, exist_ok=True)
    # A broker only: no snapshots, no append-only file (Celery's messages are re-sent by the
    # scheduler when lost; compose's redis keeps its defaults).
    process.spawn(["redis-server", "--port", str(layout.ports.redis), "--bind", "127.0.0.1",
                   "--dir", str(layout.redis), "--save", "", "--appendonly", "no", "--daemonize", "no"],
                  env=ctx.env, log=layout.logfile("redis"), pidfile=layout.pidfile("redis"))


def redis_health(ctx) -> tuple[bool, str]:
    try:
        with socket.create_connection(("127.0.0.1", ctx.layout.ports.redis), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return False, str(exc)[:80]
    return reply.startswith(b"+PONG"), reply.decode("ascii", "replace").strip()


def _worker_logpos(layout: Layout, name: str) -> Path:
    return layout.run / f"celery-{name}.logpos"


def worker_start(name: str):
    def start(ctx) -> None:
        layout = ctx.layout
        log = layout.logfile(f"celery-{name}")
        log.parent.mkdir(parents=True, exist_ok=True)
        _worker_logpos(layout, name).write_text(str(log.stat().st_size if log.exists() else 0))
        index = WORKERS.index(name)
        # Each worker serves its own task logs on a port of its own (the first on Airflow's).
        env = dict(ctx.env, AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(layout.ports.airflow + 713 + 2 * index))
        airflow = ctx.bin("airflow")
        inner = f"hostname {name} && exec {airflow} celery worker --celery-hostname {name}@{name}"
        process.spawn(["unshare", "--uts", "sh", "-c", inner], env=env, log=log,
                      pidfile=layout.pidfile(f"celery-{name}"))
    return start


def worker_health(name: str):
    def health(ctx) -> tuple[bool, str]:
        """Ready once Celery says so in the log written since this start (``celery@NAME ready.``)."""
        log = ctx.layout.logfile(f"celery-{name}")
        try:
            pos = int(_worker_logpos(ctx.layout, name).read_text())
            with open(log, "rb") as fh:
                fh.seek(pos)
                text = fh.read().decode("utf-8", "replace")
        except (FileNotFoundError, ValueError):
            return False, "no log yet"
        ok = f"{name}@{name} ready." in text
        return ok, f"consuming as {name}@{name}" if ok else "starting"
    return health


def create_users(ctx) -> None:
    """FAB's tables, its roles (the custom ones from the settings) and the team's users; existing
    users are left as they are."""
    from devtools.stack.services import StackError, _run

    def airflow(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        out = _run([ctx.bin("airflow"), *args], ctx, timeout=timeout)
        if out.returncode != 0:
            log = ctx.layout.logfile("airflow-users")
            log.write_text(out.stdout + out.stderr)
            raise StackError(f"`airflow {' '.join(args[:2])}` failed (rc {out.returncode}); see {log}")
        return out

    airflow("fab-db", "migrate")
    airflow("sync-perm")
    # Airflow's own log lines share stdout with the JSON; the JSON is the part from the line that
    # opens it.
    lines = airflow("users", "list", "--output", "json").stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("[")), len(lines))
    have = {u["username"] for u in json.loads("\n".join(lines[start:]) or "[]")}
    for name, (role, password) in user_passwords(ctx.layout).items():
        if name not in have:
            airflow("users", "create", "--username", name, "--password", password, "--role", role,
                    "--firstname", name, "--lastname", "skillflow", "--email", f"{name}@skillflow.invalid")
