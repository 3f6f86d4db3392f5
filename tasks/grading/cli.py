"""``skillflow grade FILE...``: add ``is_correct`` to NeMo-Skills output files in place."""
from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "grade", help="add is_correct to NeMo-Skills output files (in place, atomically)",
        description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="output-*.jsonl files to grade")
    p.add_argument("--ignore-cache", action="store_true",
                   help="re-grade records that already have is_correct")
    p.add_argument("--workers", type=int, default=None, help="sympy worker processes (default: all cores)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per sympy check (default 10)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    p.add_argument("--no-include-percentage", dest="include_percentage", action="store_false",
                   help="do not accept x/100 and x*100 as equal to a numeric answer x")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.cli import UserError
    from tasks.grading.checker import MathChecker
    from tasks.grading.grade_files import grade_files
    from tasks.storage.jsonl import JsonlError

    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    start = time.monotonic()
    try:
        with MathChecker(workers=args.workers, timeout=args.timeout, tolerance=args.tolerance,
                         include_percentage=args.include_percentage) as checker:
            reports = grade_files(args.files, checker, ignore_cache=args.ignore_cache)
    except (JsonlError, FileNotFoundError, UnicodeDecodeError) as exc:
        raise UserError(str(exc)) from None
    for r in reports:
        share = 100.0 * r.correct / r.records if r.records else 0.0
        print(f"{r.path}: {r.records} records, {r.graded} graded, {r.reused} reused, "
              f"{r.correct} correct ({share:.2f}%)")
    s = checker.stats
    print(f"checks: {s.fast} fast, {s.symbolic} sympy, {s.cached} cached, {s.timeouts} timed out; "
          f"{time.monotonic() - start:.1f}s")
    return 0
