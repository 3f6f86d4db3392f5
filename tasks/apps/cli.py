"""``skillflow apps prepare|convert-mapcoder|samples|sample|eval``: APPS data, sampling and evaluation."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("apps", help="APPS: prepare SFT data/test prompts, convert MapCoder data, evaluate samples",
                              description=__doc__)
    sub = p.add_subparsers(dest="apps_command", required=True, metavar="SUBCOMMAND")

    prep = sub.add_parser("prepare", help="raw APPS jsonl -> train_sft.jsonl / test_prompts.jsonl + stats")
    prep.add_argument("--source", required=True, type=Path, help="folder with train.jsonl/test.jsonl, or one file")
    prep.add_argument("--out", required=True, type=Path, help="output folder")
    prep.add_argument("--split", choices=["train", "test"], help="which split (required when --source is a file)")
    prep.set_defaults(handler=run_prepare)

    conv = sub.add_parser("convert-mapcoder", help="MapCoder/xCodeEval APPS subset -> APPS-layout jsonl")
    conv.add_argument("--input", required=True, type=Path, help="e.g. shared/data/apps/mapcoder_selected150.jsonl")
    conv.add_argument("--out", required=True, type=Path, help="APPS-layout jsonl to write")
    conv.add_argument("--call-based", choices=["fn_name", "stdin"], default="fn_name",
                      help="fn_name: APPS call-based problems (default); stdin: MapCoder's way, programs read "
                           "the arguments from stdin and print the result")
    conv.set_defaults(handler=run_convert)

    smp = sub.add_parser("sample", help="n programs per problem from an OpenAI-compatible chat server (resumable)")
    src = smp.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", type=Path, help="test_prompts.jsonl of `apps prepare`")
    src.add_argument("--problems", type=Path,
                     help="APPS rows instead: prompts built as `apps prepare` does, keeping problems without "
                          "solutions (e.g. the MapCoder sample)")
    smp.add_argument("--out", required=True, type=Path, help="samples jsonl (appended; <out>.done when complete)")
    smp.add_argument("--server-url", required=True, help="base URL of the server (…/v1/chat/completions is used)")
    smp.add_argument("--model", required=True, help="model name the server serves")
    smp.add_argument("--n-sample", type=int, default=10, help="samples per problem (default 10, as the seed)")
    smp.add_argument("--temperature", type=float, default=0.6, help="default 0.6 (seed)")
    smp.add_argument("--top-p", type=float, default=0.95, help="default 0.95 (seed)")
    smp.add_argument("--max-tokens", type=int, default=2048, help="new tokens per sample (default 2048, seed)")
    smp.add_argument("--seed", type=int, default=42, help="sample i is requested with seed + i (default 42)")
    smp.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    smp.add_argument("--limit", type=int, default=None, help="only the first N problems (smoke runs)")
    smp.add_argument("--extra-body", default=None,
                     help="JSON object merged into every request, e.g. server-specific sampling switches")
    smp.add_argument("--timeout", type=float, default=1800.0, help="seconds per request (default 1800)")
    smp.set_defaults(handler=run_sample)

    shp = sub.add_parser("samples", help="copy an APPS problem sample shipped with skillflow (offline runs)")
    shp.add_argument("name", nargs="?", default="mapcoder10", help="sample name (default mapcoder10)")
    shp.add_argument("--out", required=True, type=Path, help="APPS-layout jsonl to write")
    shp.add_argument("--split", choices=["test", "train"], default="test",
                     help="test: the problems (default); train: the sample's training problems with solutions")
    shp.set_defaults(handler=run_samples)

    ev = sub.add_parser("eval", help="run samples against APPS tests; write results.jsonl and summary.json")
    ev.add_argument("--samples", required=True, type=Path, help="jsonl: problem_id + code | completion | response")
    ev.add_argument("--problems", required=True, type=Path, help="APPS jsonl (problem_id or id, input_output, difficulty)")
    ev.add_argument("--out", required=True, type=Path, help="output folder (resumable)")
    ev.add_argument("--workers", type=int, default=None, help="sandbox workers (default: all cores)")
    ev.add_argument("--timeout", type=float, default=4.0, help="seconds per test case (default 4, as the reference)")
    ev.add_argument("--budget", type=float, default=11.0, help="seconds per program, all tests (default 11, as the seed)")
    ev.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per program (default 4096)")
    ev.set_defaults(handler=run_eval)


def run_prepare(args: argparse.Namespace) -> int:
    from tasks.apps.prepare import prepare_split, resolve_sources
    from tasks.cli import UserError
    from tasks.storage.jsonl import JsonlError

    try:
        sources = resolve_sources(args.source, args.split)
        for path, split in sources:
            report = prepare_split(path, args.out, split)
            print(json.dumps(report, sort_keys=True), file=sys.stderr)
            print(f"{split}: {report.get('problems_kept', 0)} of {report.get('rows_in', 0)} problems kept -> {report['output']}")
    except (ValueError, JsonlError) as exc:
        raise UserError(str(exc)) from None
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from tasks.apps.mapcoder import convert_row
    from tasks.cli import UserError
    from tasks.storage.jsonl import JsonlError, atomic_writer, iter_jsonl_numbered

    stats: Counter = Counter()
    try:
        with atomic_writer(args.out) as fh:
            for line_no, row in iter_jsonl_numbered(args.input):
                if "id" not in row or "test_list" not in row:
                    raise UserError(f"{args.input}:{line_no}: not a MapCoder row (needs 'id' and 'test_list')")
                out = convert_row(row, args.call_based, stats)
                if out is not None:
                    fh.write(json.dumps(out, ensure_ascii=False) + "\n")
    except (JsonlError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(dict(sorted(stats.items()))))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from tasks.apps.evaluate import evaluate, print_table
    from tasks.cli import UserError
    from tasks.storage.jsonl import JsonlError

    for name in ("timeout", "budget"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    for path, flag in ((args.samples, "--samples"), (args.problems, "--problems")):
        if not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
    try:
        summary = evaluate(args.samples, args.problems, args.out, workers=args.workers, timeout=args.timeout,
                           budget=args.budget, memory_mb=args.memory_mb)
    except (ValueError, JsonlError) as exc:
        raise UserError(str(exc)) from None
    print_table(summary)
    print(f"apps eval: {summary['samples']} samples, {summary['problems']} problems, "
          f"{summary['evaluated_now']} run now in {summary['seconds']}s -> {args.out}", file=sys.stderr)
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from tasks.apps.sample import GenerationError, SamplingConfig, parse_extra, run
    from tasks.cli import UserError
    from tasks.storage.jsonl import JsonlError

    for name in ("n_sample", "max_tokens", "concurrency", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for path, flag in ((args.prompts, "--prompts"), (args.problems, "--problems")):
        if path is not None and not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
    try:
        config = SamplingConfig(n_sample=args.n_sample, temperature=args.temperature, top_p=args.top_p,
                                max_tokens=args.max_tokens, seed=args.seed, extra=parse_extra(args.extra_body))
        report = run(args.prompts, args.problems, args.out, args.server_url, args.model, config,
                     concurrency=args.concurrency, limit=args.limit, timeout_s=args.timeout)
    except (ValueError, JsonlError, GenerationError) as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(report, sort_keys=True))
    return 0


def run_samples(args: argparse.Namespace) -> int:
    from tasks.apps.samples import copy_sample
    from tasks.cli import UserError

    try:
        path = copy_sample(args.name, args.out, args.split)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(path)
    return 0
