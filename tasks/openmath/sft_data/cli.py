"""``skillflow sft-data {mask,collect,prepare}``.

Each command writes its output atomically and a stats JSON beside it (``OUT.stats.json`` unless
``--stats`` says otherwise); the Airflow task logs that file's numbers to MLflow. The work modules
are imported inside the handlers so ``skillflow --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def _user_error(exc: Exception) -> Exception:
    from tasks.cli import UserError

    return UserError(str(exc))


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _finish(stats: dict[str, Any], output: Path, stats_path: str | None) -> int:
    from tasks.openmath.sft_data.stats import default_stats_path, write_stats

    path = Path(stats_path) if stats_path else default_stats_path(output)
    write_stats(path, stats)
    print(f"wrote {output} and {path}", file=sys.stderr)
    return 0


def _run(fn, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call ``fn``; turn the errors a user fixes (bad options, bad input lines, missing files) into UserError."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, IsADirectoryError, RuntimeError) as exc:
        raise _user_error(exc) from exc


def _metadata(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _user_error(ValueError(f"--metadata expects KEY=VALUE; got {item!r}"))
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def handle_prepare(args: argparse.Namespace) -> int:
    from tasks.openmath.sft_data.prepare import SEED_DOC_NUM_OUTPUT_SAMPLES, PrepareConfig, prepare_sft_data

    _setup_logging()
    n = args.num_output_samples
    if n is None and args.downsampling_method != "none":
        n = SEED_DOC_NUM_OUTPUT_SAMPLES
    cfg = PrepareConfig(
        inputs=[Path(p) for p in args.input],
        output=Path(args.output),
        downsampling_method=args.downsampling_method,
        num_output_samples=n,
        text_filter_type=args.text_filter_type,
        trim_solutions=args.trim_solutions,
        filters=args.filters,
        seed=args.seed,
        dedup=args.dedup,
        metadata=_metadata(args.metadata),
    )
    stats = _run(prepare_sft_data, cfg)
    return _finish(stats, cfg.output, args.stats)


def handle_mask(args: argparse.Namespace) -> int:
    from tasks.openmath.sft_data.masked import create_masked_dataset, expand_runs

    _setup_logging()
    runs = _run(expand_runs, args.runs)
    stats = _run(create_masked_dataset, args.dataset_file, runs, args.output, length_margin=args.length_margin)
    stats["run_files"] = [str(p) for p in runs]
    return _finish(stats, Path(args.output), args.stats)


def handle_collect(args: argparse.Namespace) -> int:
    from tasks.openmath.sft_data.collect import Source, collect_correct_solutions
    from tasks.openmath.sft_data.masked import expand_runs

    _setup_logging()
    sources = []
    for spec in args.source:
        if len(spec) not in (3, 4):
            raise _user_error(ValueError(f"--source takes DATASET GENERATION_TYPE GLOB [NAME]; got {spec}"))
        runs = _run(expand_runs, [spec[2]])
        sources.append(_run(Source, spec[0], spec[1], runs, spec[3] if len(spec) == 4 else ""))
    stats = _run(collect_correct_solutions, sources, args.output)
    return _finish(stats, Path(args.output), args.stats)


def register(subparsers: Any) -> None:
    """Add ``sft-data`` with its sub-commands to the ``skillflow`` parser."""
    from tasks.openmath.sft_data.filters import DEFAULT_FILTERS, FILTERS, TEXT_FILTER_TYPES

    parser = subparsers.add_parser("sft-data", help="masked solutions, correct-solution collection, SFT data")
    sub = parser.add_subparsers(dest="sft_data_command", required=True, metavar="STEP")

    p = sub.add_parser(
        "prepare",
        help="filter, trim and downsample solutions into SFT jsonl (v0.1.1 semantics)",
        description="Defaults reproduce the seed document's prepare_sft_data command.",
    )
    p.add_argument("--input", nargs="+", required=True, metavar="FILE",
                   help="OpenMathInstruct-style jsonl files (question, generated_solution, ...)")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--downsampling-method", choices=["fair", "random", "none"], default="fair")
    p.add_argument("--num-output-samples", type=int, default=None, metavar="N",
                   help="default 1024000 with fair/random; not allowed with none")
    p.add_argument("--text-filter-type", choices=list(TEXT_FILTER_TYPES), default="any_code",
                   help="'none' keeps text and code solutions alike")
    p.add_argument("--trim-solutions", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--filters", nargs="*", choices=list(FILTERS), default=list(DEFAULT_FILTERS),
                   help="solution filters, in order (give none to disable)")
    p.add_argument("--dedup", action="store_true",
                   help="drop identical solutions of the same question (main's behaviour; v0.1.1 did not)")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                   help="extra field for every output line (VALUE parsed as JSON if it can be)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (reproducible output)")
    p.add_argument("--stats", default=None, metavar="FILE", help="stats JSON (default OUT.stats.json)")
    p.set_defaults(handler=handle_prepare)

    m = sub.add_parser("mask", help="choose one masked reference solution per problem (docs/recipes/openmath.md §8.3)")
    m.add_argument("--dataset-file", required=True, metavar="FILE", help="dataset jsonl with reference_solution")
    m.add_argument("--runs", nargs="+", required=True, metavar="GLOB",
                   help="graded masked-solution runs, aligned by line with the dataset (quote globs)")
    m.add_argument("--output", required=True, metavar="OUT.jsonl")
    m.add_argument("--length-margin", type=float, default=0.5,
                   help="allowed relative length difference to the reference (default 0.5)")
    m.add_argument("--stats", default=None, metavar="FILE")
    m.set_defaults(handler=handle_mask)

    c = sub.add_parser("collect",
                       help="gather correct, de-duplicated labeling solutions (docs/recipes/openmath.md §8.4)")
    c.add_argument("--source", nargs="+", action="append", required=True,
                   metavar="DATASET GENERATION_TYPE GLOB [NAME]",
                   help="one labeling configuration; repeat for each (GENERATION_TYPE: "
                        "without_reference_solution | masked_reference_solution)")
    c.add_argument("--output", required=True, metavar="OUT.jsonl")
    c.add_argument("--stats", default=None, metavar="FILE")
    c.set_defaults(handler=handle_collect)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only ``sft-data``, for ``python -m tasks.openmath.sft_data`` and tests."""
    parser = argparse.ArgumentParser(prog="skillflow")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tasks.openmath.sft_data sft-data ...``; same exit codes as ``skillflow``."""
    from tasks.cli import run_cli

    return run_cli(build_parser(), argv)
