"""``skillflow stack up | down | status``."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stack", help="start, stop or inspect the local stack on loopback")
    actions = p.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start every service that is not healthy (idempotent)")
    up.add_argument("--topology", choices=("local", "team"), default=None,
                    help="local (default): SQLite, LocalExecutor; team: PostgreSQL, Redis, two Celery "
                         "workers and FAB roles, as docker/compose.yaml (switching needs `stack down` first)")
    up.set_defaults(handler=_up)
    render = actions.add_parser(
        "render-compose", help="rewrite docker/compose.yaml's generated block from docker/airflow/team-settings.yaml")
    render.set_defaults(handler=_render_compose)
    down = actions.add_parser("down", help="stop every service (data in var/ is kept)")
    down.set_defaults(handler=_down)
    st = actions.add_parser("status", help="print service, pid, port and health; exit 1 if any is down")
    st.set_defaults(handler=_status)
    env = actions.add_parser("env", help="print the shell exports of the stack (as in var/env.sh)")
    env.set_defaults(handler=_env)


def _up(args: argparse.Namespace) -> int:
    from devtools.stack import control
    from devtools.stack.services import StackError
    from tasks.cli import UserError

    try:
        rows = control.up(topology=args.topology)
    except StackError as exc:
        raise UserError(str(exc)) from None
    print(control.format_table(rows))
    return 0 if all(r.healthy for r in rows) else 1


def _down(args: argparse.Namespace) -> int:
    from devtools.stack import control

    control.down()
    return 0


def _status(args: argparse.Namespace) -> int:
    from devtools.stack import control

    rows = control.status()
    print(control.format_table(rows))
    return 0 if all(r.healthy for r in rows) else 1


def _env(args: argparse.Namespace) -> int:
    from devtools.stack.layout import Layout

    path = Layout.discover().env_file()
    if not path.exists():
        from tasks.cli import UserError

        raise UserError(f"{path} does not exist yet: run `skillflow stack up` first")
    print(path.read_text(), end="")
    return 0


def _render_compose(args: argparse.Namespace) -> int:
    from devtools.stack import team
    from devtools.stack.layout import repo_root

    root = repo_root()
    (root / team.COMPOSE).write_text(team.render_compose(root))
    print(f"wrote {team.COMPOSE}")
    return 0
