"""``skillflow summarize RESULTS_DIR``: per-benchmark metrics table and ``results.json`` (§7.2).

Layout read (that of NeMo-Skills' run_eval): ``RESULTS_DIR/<benchmark>/output-greedy.jsonl`` and
``RESULTS_DIR/<benchmark>/output-rs<seed>.jsonl``. For each benchmark folder, in name order:
``greedy`` from the greedy file, and ``majority@n`` / ``pass@n`` from the n sampling files
(ordered rs0, rs1, ..., rs10 by number). Folders with neither are skipped. The table format and
the ``{benchmark: {mode: metrics}}`` shape of ``results.json`` are those of main@9b7f9d57.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from tasks.metrics import compute_metrics, sort_sample_files

COLUMNS = ("evaluation_mode", "num_entries", "correct_answer", "wrong_answer", "no_answer")


def summarize(results_dir: os.PathLike | str, *, benchmarks: list[str] | None = None,
              allow_incomplete: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Compute ``{benchmark: {mode: metrics}}`` for the benchmark folders of ``results_dir``."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if benchmarks and folder.name not in benchmarks:
            continue
        modes: dict[str, dict[str, Any]] = {}
        greedy = folder / "output-greedy.jsonl"
        if greedy.is_file():
            modes["greedy"] = compute_metrics([greedy], "greedy", allow_incomplete=allow_incomplete)
        samples = sort_sample_files(folder.glob("output-rs*.jsonl"))
        if samples:
            n = len(samples)
            modes[f"majority@{n}"] = compute_metrics(samples, "majority", allow_incomplete=allow_incomplete)
            modes[f"pass@{n}"] = compute_metrics(samples, "pass", allow_incomplete=allow_incomplete)
        if modes:
            results[folder.name] = modes
    missing = sorted(set(benchmarks or ()) - set(results))
    if missing:
        raise FileNotFoundError(f"{root}: no graded outputs for benchmark(s) {', '.join(missing)}")
    return results


def format_table(benchmark: str, modes: dict[str, dict[str, Any]]) -> str:
    """One benchmark's block: a centred title padded with '-', a header, one row per mode."""
    rows = [list(COLUMNS)]
    for mode, metrics in modes.items():
        rows.append([mode] + [_cell(metrics[c]) for c in COLUMNS[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
    width = max(len(line) for line in lines)
    return "\n".join([f" {benchmark} ".center(width, "-")] + lines) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def register(subparsers) -> None:
    p = subparsers.add_parser("summarize", help="print metrics per benchmark and write results.json",
                              description=__doc__.splitlines()[0])
    p.add_argument("results_dir", metavar="RESULTS_DIR")
    p.add_argument("--benchmarks", nargs="+", default=None, help="only these benchmark folders")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="count missing or ungraded records as wrong instead of failing")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.cli import UserError
    from tasks.jsonl import JsonlError, atomic_writer
    from tasks.metrics import MetricsError

    try:
        results = summarize(args.results_dir, benchmarks=args.benchmarks,
                            allow_incomplete=args.allow_incomplete)
    except (MetricsError, JsonlError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    if not results:
        raise UserError(f"{args.results_dir}: no <benchmark>/output-greedy.jsonl or output-rs*.jsonl found")
    for benchmark, modes in results.items():
        print(format_table(benchmark, modes))
    out = Path(args.results_dir) / "results.json"
    with atomic_writer(out) as fh:
        json.dump(results, fh, indent=2)
        fh.write("\n")
    print(f"wrote {out}")
    return 0
