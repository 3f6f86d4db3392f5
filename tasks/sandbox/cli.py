"""``skillflow sandbox serve`` and ``skillflow sandbox run``."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sandbox", help="run untrusted Python under limits (library, HTTP service)")
    sub = parser.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")

    serve = sub.add_parser("serve", help="HTTP service speaking the NeMo-Skills sandbox protocol (POST /execute)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=6000, help="0 picks a free port (printed on stderr)")
    _add_pool_args(serve, preload="IPython.core.interactiveshell,numpy,sympy")
    serve.add_argument("--verbose", action="store_true", help="log every request on stderr")
    serve.set_defaults(handler=_serve)

    run = sub.add_parser("run", help="run one Python file in the sandbox and print its output")
    run.add_argument("file", type=Path)
    run.add_argument("--stdin", type=Path, help="file fed to the program's standard input")
    run.add_argument("--json", action="store_true", help="print the full result as JSON")
    _add_pool_args(run, workers=False)
    run.set_defaults(handler=_run)


def _add_pool_args(parser: argparse.ArgumentParser, workers: bool = True, preload: str = "") -> None:
    if workers:
        parser.add_argument("--workers", type=int, default=None, help="parallel executions (default: CPU count)")
    parser.add_argument("--timeout", type=float, default=10.0, help="default wall-clock seconds per execution")
    parser.add_argument("--memory-mb", type=int, default=2048, help="address-space limit per execution")
    parser.add_argument("--max-processes", type=int, default=32, help="process limit per execution")
    parser.add_argument("--max-output-bytes", type=int, default=1 << 20, help="cap on stdout, stderr, each file")
    parser.add_argument("--isolation", choices=("auto", "namespaces", "none"), default="auto")
    parser.add_argument("--preload", default=preload,
                        help=f"comma-separated modules imported once per worker (default: {preload or 'none'}); "
                             "/execute programs run IPython, and numpy imported here keeps one BLAS thread")


def _limits(args: argparse.Namespace):
    from tasks.cli import UserError
    from tasks.sandbox.limits import Limits

    try:
        return Limits(timeout_s=args.timeout, memory_mb=args.memory_mb, max_processes=args.max_processes,
                      max_output_bytes=args.max_output_bytes)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _preload(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(m.strip() for m in args.preload.split(",") if m.strip())


def _serve(args: argparse.Namespace) -> int:
    from tasks.cli import UserError
    from tasks.sandbox.pool import SandboxUnavailable
    from tasks.sandbox.server import serve

    # SIGTERM (Slurm, docker stop) must unwind so that the pool stops its workers cleanly.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return serve(args.host, args.port, workers=args.workers, limits=_limits(args), isolation=args.isolation,
                     preload=_preload(args), verbose=args.verbose)
    except (SandboxUnavailable, OSError) as exc:
        raise UserError(f"sandbox serve on {args.host}:{args.port}: {exc}") from None


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from tasks.cli import UserError
    from tasks.sandbox.pool import SandboxPool, SandboxUnavailable

    try:
        code = args.file.read_text(encoding="utf-8")
        stdin = args.stdin.read_text(encoding="utf-8") if args.stdin else None
    except OSError as exc:
        raise UserError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        with SandboxPool(workers=1, limits=_limits(args), isolation=args.isolation, preload=_preload(args)) as pool:
            result = pool.run(code, stdin=stdin)
    except SandboxUnavailable as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.status not in ("ok", "error"):
            print(f"sandbox: {args.file}: {result.status}", file=sys.stderr)
    return result.exit_code if result.exit_code is not None else 1
