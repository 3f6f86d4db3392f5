"""The ``skillflow`` command line.

Each sub-command lives in its own module that exposes ``register(subparsers)``; the module list
below is the only place that knows them all. Modules must keep heavy imports inside their
handlers so that ``skillflow --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "tasks.stack.cli",
    "tasks.demo",
    "tasks.sft_data.cli",
    "tasks.sft.cli",
    "tasks.datasets.cli",
    "tasks.grading.cli",
    "tasks.summarize",
    "tasks.compare",
    "tasks.sandbox.cli",
    "tasks.generation.cli",
    "tasks.apps.cli",
    "tasks.checkpoint_store",
    # Reads DAG files, so it imports Airflow, but only when `skillflow plan` runs.
    "operators.plan_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skillflow", description=__doc__.splitlines()[0])
    # cluster_check runs this inside each image: the installed version, or an error.
    parser.add_argument("--version", action="version", version=f"skillflow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skillflow")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen handler with skillflow's exit codes: the handler's, 2 with
    a one-line message for a :class:`UserError`, 130 on Ctrl-C. Every entry point uses it
    (``skillflow``, ``python -m tasks.sft_data``, ``python -m tasks.sft.cli``)."""
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
