"""``skillflow summarize RESULTS_DIR``: per-benchmark metrics table and ``results.json``
(docs/recipes/openmath.md §7.2).

Layout read (that of NeMo-Skills' run_eval): ``RESULTS_DIR/<benchmark>/output-greedy.jsonl`` and
``RESULTS_DIR/<benchmark>/output-rs<seed>.jsonl``. For each benchmark folder, in name order:
``greedy`` from the greedy file, and ``majority@n`` / ``pass@n`` from the n sampling files
(ordered rs0, rs1, ..., rs10 by number). Folders with neither are skipped. The table format and
the ``{benchmark: {mode: metrics}}`` shape of ``results.json`` are those of main@9b7f9d57, with
additions no upstream reader looks at: every mode carries the 95% Wilson interval of its accuracy
(``correct_answer.ci_low`` / ``correct_answer.ci_high``, percent; :func:`tasks.comparison.stats.wilson_interval`),
and the sampled modes the mean and standard deviation across seeds of each seed's own accuracy
(``seed_accuracy.mean`` / ``seed_accuracy.std``, percent, and ``seeds``). The table shows both as
two extra columns at the end.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from dataclasses import dataclass, field

from tasks.comparison.stats import seed_mean_std, wilson_interval
from tasks.openmath.metrics import GradedFile, MetricsError, as_percentages, question_outcomes, sort_sample_files
from tasks.tables import PLAIN, table

COLUMNS = ("evaluation_mode", "num_entries", "correct_answer", "wrong_answer", "no_answer")
EXTRA_COLUMNS = ("correct_ci95", "seed_mean_std")
CI_LOW, CI_HIGH = "correct_answer.ci_low", "correct_answer.ci_high"
SEED_MEAN, SEED_STD = "seed_accuracy.mean", "seed_accuracy.std"


@dataclass
class BenchmarkOutcomes:
    """One benchmark folder read once: per-problem correctness per mode, and what pairs problems."""

    name: str
    identities: list[str]
    correct: dict[str, list[bool]] = field(default_factory=dict)  # mode name as in results.json
    no_answer: dict[str, list[bool]] = field(default_factory=dict)
    seed_accuracies: list[float] = field(default_factory=list)  # percent, one per sampling file

    def metrics(self, mode: str) -> dict[str, Any]:
        """The results.json entry of ``mode``: upstream's keys plus the interval (and seed spread)."""
        correct, no_answer = self.correct[mode], self.no_answer[mode]
        values: dict[str, Any] = as_percentages(len(correct), sum(correct), sum(no_answer))
        low, high = wilson_interval(sum(correct), len(correct))
        values[CI_LOW], values[CI_HIGH] = 100.0 * low, 100.0 * high
        if mode != "greedy" and self.seed_accuracies:
            mean, std = seed_mean_std(self.seed_accuracies)
            values[SEED_MEAN], values[SEED_STD], values["seeds"] = mean, std, len(self.seed_accuracies)
        return values


def load_benchmark(folder: os.PathLike | str, *, allow_incomplete: bool = False) -> BenchmarkOutcomes | None:
    """Per-problem outcomes of every mode in ``folder``; None when it has no graded outputs.

    Each sampling file is read once and serves majority@n, pass@n and the per-seed accuracies."""
    folder = Path(folder)
    greedy = folder / "output-greedy.jsonl"
    samples = sort_sample_files(folder.glob("output-rs*.jsonl"))
    if not greedy.is_file() and not samples:
        return None
    out = BenchmarkOutcomes(folder.name, [])
    if greedy.is_file():
        graded = GradedFile(greedy)
        out.identities = graded.identities
        out.correct["greedy"], out.no_answer["greedy"] = question_outcomes(
            [graded], "greedy", allow_incomplete=allow_incomplete)
    if samples:
        graded_samples = [GradedFile(p) for p in samples]
        longest = max(graded_samples, key=len)
        if not out.identities or len(longest) > len(out.identities):
            out.identities = longest.identities
        n = len(samples)
        for mode, name in (("majority", f"majority@{n}"), ("pass", f"pass@{n}")):
            out.correct[name], out.no_answer[name] = question_outcomes(
                graded_samples, mode, allow_incomplete=allow_incomplete)
        entries = len(out.correct[f"pass@{n}"])
        out.seed_accuracies = [100.0 * g.correct_count() / entries if entries else 0.0 for g in graded_samples]
    return out


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
        outcomes = load_benchmark(folder, allow_incomplete=allow_incomplete)
        if outcomes is not None:
            results[folder.name] = {mode: outcomes.metrics(mode) for mode in outcomes.correct}
    missing = sorted(set(benchmarks or ()) - set(results))
    if missing:
        raise FileNotFoundError(f"{root}: no graded outputs for benchmark(s) {', '.join(missing)}")
    return results


def format_table(benchmark: str, modes: dict[str, dict[str, Any]]) -> str:
    """One benchmark's block: a centred title padded with '-', a header, one row per mode.

    After upstream's columns: the 95% Wilson interval of correct_answer and, for sampled modes,
    the per-seed accuracy as mean +- standard deviation (blank where the entry lacks them)."""
    rows = []
    for mode, metrics in modes.items():
        ci = f"[{metrics[CI_LOW]:.2f}, {metrics[CI_HIGH]:.2f}]" if CI_LOW in metrics else ""
        seeds = f"{metrics[SEED_MEAN]:.2f} +- {metrics[SEED_STD]:.2f}" if SEED_MEAN in metrics else ""
        rows.append([mode] + [_cell(metrics[c]) for c in COLUMNS[1:]] + [ci, seeds])
    text = table(COLUMNS + EXTRA_COLUMNS, rows, PLAIN)
    width = max(len(line) for line in text.splitlines())
    return f" {benchmark} ".center(width, "-") + "\n" + text + "\n"


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
    from tasks.storage.jsonl import JsonlError, atomic_writer

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
