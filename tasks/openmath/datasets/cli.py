"""``skillflow data prepare BENCHMARK --split SPLIT --out DIR [--source DIR]``."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from tasks.openmath.datasets.sources import SOURCES

    data = subparsers.add_parser("data", help="benchmark data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = sub.add_parser("prepare", help="write OUT/BENCHMARK/SPLIT.jsonl in NeMo-Skills format",
                       description="Download (or read from --source) a benchmark's original files, check "
                                   "their record counts, and write OUT/BENCHMARK/SPLIT.jsonl.")
    p.add_argument("benchmark", choices=sorted(SOURCES), metavar="BENCHMARK",
                   help=f"one of: {', '.join(sorted(SOURCES))}")
    p.add_argument("--split", default="test", help="test (all); train, validation, train_full (gsm8k, math)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--source", metavar="DIR", default=None,
                   help="read originals from DIR/<benchmark>/<original name> instead of downloading")
    p.add_argument("--allow-partial", action="store_true",
                   help="with --source: accept fewer records than upstream and report 'X of Y records'")
    p.add_argument("--skip-sha256", action="store_true",
                   help="accept a downloaded file whose sha256 is not pinned (its digest is printed)")
    p.set_defaults(handler=run)
    s = sub.add_parser("samples", help="copy the shipped 20-problem samples (offline smoke runs)")
    s.add_argument("benchmarks", nargs="+", metavar="BENCHMARK")
    s.add_argument("--split", default="test", choices=["test", "train_full"],
                   help="test (every benchmark) or train_full (gsm8k, math)")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.set_defaults(handler=run_samples)


def run_samples(args: argparse.Namespace) -> int:
    from tasks.cli import UserError
    from tasks.openmath.datasets.samples import copy_samples

    try:
        for path in copy_samples(args.benchmarks, args.out, args.split):
            print(f"wrote {path}")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return 0


def run(args: argparse.Namespace) -> int:
    from tasks.cli import UserError
    from tasks.openmath.datasets.prepare import PrepareError, prepare
    from tasks.openmath.datasets.readers import SourceFormatError
    from tasks.storage.jsonl import JsonlError

    try:
        prepare(args.benchmark, args.split, args.out, source_dir=args.source,
                allow_partial=args.allow_partial, skip_sha256=args.skip_sha256)
    except (PrepareError, SourceFormatError, JsonlError) as exc:
        raise UserError(str(exc)) from None
    return 0
