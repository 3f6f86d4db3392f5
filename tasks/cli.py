"""The ``skillflow`` command line.

Each sub-command lives in its own module that exposes ``register(subparsers)``; the two module
lists below (the runtime's, then the development checkout's) are the only place that knows them
all. Modules must keep heavy imports inside their handlers so that ``skillflow --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "tasks.openmath.sft_data.cli",
    "tasks.sft.cli",
    "tasks.openmath.datasets.cli",
    "tasks.grading.cli",
    "tasks.openmath.summarize",
    "tasks.openmath.compare",
    "tasks.sandbox.cli",
    "tasks.generation.cli",
    "tasks.apps.cli",
    "tasks.storage.checkpoints",
    "tasks.cluster_check.probe",
    # Reads DAG files, so it imports Airflow, but only when `skillflow plan` runs.
    "operators.plan_cli",
]

# Development tooling (package ``devtools``): present in a checkout's venv, absent from the cluster
# and Airflow images, which install only ``tasks`` and ``operators``. There the command still parses
# and says what it is instead of failing with an import error. Module -> (command, help).
DEV_COMMAND_MODULES = {
    "devtools.stack.cli": ("stack", "start, stop or inspect the local stack on loopback"),
    "devtools.demo": ("demo", "start the local stack and run the demo DAG end to end"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skillflow", description=__doc__.splitlines()[0])
    # cluster_check runs this inside each image: the installed version, or an error.
    parser.add_argument("--version", action="version", version=f"skillflow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (command, help_text) in DEV_COMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in _parents(name):
                raise  # devtools is there but something it imports is not: a real error
            _register_dev_only(sub, command, help_text)
        else:
            module.register(sub)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _register_dev_only(sub, command: str, help_text: str) -> None:
    # No option prefix, so that whatever follows (``demo --dag x``) reaches the refusal below.
    p = sub.add_parser(command, help=f"{help_text} (development checkout only)", prefix_chars="\0",
                       add_help=False)
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

    def refuse(args: argparse.Namespace) -> int:
        raise UserError(f"`skillflow {command}` is development tooling (the devtools package), which this "
                        "installation does not include; run it from a checkout installed with `make install`")

    p.set_defaults(handler=refuse)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skillflow")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen handler with skillflow's exit codes: the handler's, 2 with
    a one-line message for a :class:`UserError`, 130 on Ctrl-C. Every entry point uses it
    (``skillflow``, ``python -m tasks.openmath.sft_data``, ``python -m tasks.sft.cli``)."""
    args = parser.parse_args(argv)
    try:
        rc = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        print(f"skillflow: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


class UserError(Exception):
    """An error the user can fix; printed without a traceback, exit status 2."""


if __name__ == "__main__":  # pragma: no cover
    # Run through the installed module so UserError is the same class the handlers raise.
    from tasks.cli import main as _main

    sys.exit(_main())
