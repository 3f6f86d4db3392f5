"""Paired comparison of two evaluation runs on the same problems (``skillflow compare A B``).

Both runs answered the same benchmark problems, so the question a user asks -- did B get better
than A? -- is answered per problem, not by subtracting two percentages: for every benchmark and
mode present in both (``greedy``, ``majority@k``, ``pass@k``, named as in ``results.json``) the
result holds ``n`` (paired problems), ``a`` and ``b`` (accuracy, percent), ``diff`` (b - a,
points), ``ci95`` (paired bootstrap interval of the difference over problems, 10,000 resamples,
fixed seed), ``p_value`` (exact two-sided McNemar on the discordant pairs), ``gained`` (wrong in
A, right in B) and ``lost`` (right in A, wrong in B). See :mod:`tasks.comparison.stats` for the methods.

Problems pair by position in the benchmark file; every position must hold the same question on
both sides (:func:`tasks.openmath.metrics.problem_identity`) and both sides the same number of problems,
or the comparison stops with an error naming the benchmark. Flipped problems are listed by their
0-based position in the benchmark file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.comparison.stats import mcnemar_exact, paired_bootstrap_ci
from tasks.openmath.summarize import BenchmarkOutcomes, load_benchmark
from tasks.tables import RULED, table


class CompareError(ValueError):
    """The two runs cannot be compared; the message names the benchmark (and position)."""


@dataclass
class Comparison:
    """``rows``: {benchmark: {mode: statistics}}; ``flips``: {benchmark: {mode: {gained, lost}}}."""

    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    flips: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    only_in_a: list[tuple[str, str]] = field(default_factory=list)  # (benchmark, mode) not compared
    only_in_b: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def paired_statistics(a: list[bool], b: list[bool]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The comparison row of two per-problem correctness vectors, and the flipped positions."""
    n = len(a)
    gained = [i for i in range(n) if b[i] and not a[i]]
    lost = [i for i in range(n) if a[i] and not b[i]]
    acc_a, acc_b = 100.0 * sum(a) / n, 100.0 * sum(b) / n
    low, high = paired_bootstrap_ci(a, b)
    row = {"n": n, "a": acc_a, "b": acc_b, "diff": acc_b - acc_a, "ci95": [100.0 * low, 100.0 * high],
           "p_value": mcnemar_exact(len(gained), len(lost)), "gained": len(gained), "lost": len(lost)}
    return row, {"gained": gained, "lost": lost}


def check_paired(name: str, a: BenchmarkOutcomes, b: BenchmarkOutcomes) -> None:
    """Refuse two benchmarks whose problems do not line up position by position."""
    if len(a.identities) != len(b.identities):
        raise CompareError(f"benchmark '{name}': A has {len(a.identities)} problems, B has {len(b.identities)}; "
                           "problems pair by position, so both runs must use the same benchmark file")
    for i, (x, y) in enumerate(zip(a.identities, b.identities)):
        if x != y:
            raise CompareError(f"benchmark '{name}': problem {i} (0-based line of the benchmark file) differs "
                               f"between A and B ({x[:60]!r} vs {y[:60]!r}); the runs used different or "
                               "reordered benchmark files")


def compare_outcomes(a: dict[str, BenchmarkOutcomes], b: dict[str, BenchmarkOutcomes]) -> Comparison:
    """Compare every benchmark and mode present on both sides; what only one side has is noted."""
    result = Comparison()
    for name in sorted(set(a) | set(b)):
        modes_a = list(a[name].correct) if name in a else []
        modes_b = list(b[name].correct) if name in b else []
        result.only_in_a += [(name, m) for m in modes_a if m not in modes_b]
        result.only_in_b += [(name, m) for m in modes_b if m not in modes_a]
        shared = [m for m in modes_a if m in modes_b]
        if shared:
            check_paired(name, a[name], b[name])
        for mode in shared:
            row, flips = paired_statistics(a[name].correct[mode], b[name].correct[mode])
            result.rows.setdefault(name, {})[mode] = row
            result.flips.setdefault(name, {})[mode] = flips
    for side, only in (("A", result.only_in_a), ("B", result.only_in_b)):
        if only:
            result.notes.append(f"only in {side} (not compared): " + ", ".join(f"{b} {m}" for b, m in only))
    if not result.rows:
        raise CompareError("the two runs share no benchmark and mode to compare")
    return result


def load_results_dir(results_dir: os.PathLike | str, *, allow_incomplete: bool = False) -> dict[str, BenchmarkOutcomes]:
    """Every benchmark folder of a results folder, as ``skillflow summarize`` reads it."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        outcomes = load_benchmark(folder, allow_incomplete=allow_incomplete)
        if outcomes is not None:
            found[folder.name] = outcomes
    if not found:
        raise FileNotFoundError(f"{root}: no <benchmark>/output-greedy.jsonl or output-rs*.jsonl found")
    return found


def format_comparison(comparison: Comparison, label_a: str = "A", label_b: str = "B") -> str:
    """The printed table: one row per benchmark and mode, then the notes."""
    header = ["benchmark", "mode", "n", label_a[:24], label_b[:24], "diff", "ci95", "p_value", "gained", "lost"]
    rows = []
    for bench, modes in comparison.rows.items():
        for mode, r in modes.items():
            rows.append([bench, mode, str(r["n"]), f"{r['a']:.2f}", f"{r['b']:.2f}", f"{r['diff']:+.2f}",
                         f"[{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}]", _p(r["p_value"]), str(r["gained"]),
                         str(r["lost"])])
    return "\n".join([table(header, rows, RULED)] + [f"note: {n}" for n in comparison.notes]) + "\n"


def _p(value: float) -> str:
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


# Command line -----------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="paired comparison of two evaluation runs (A -> B)",
                              description=__doc__.splitlines()[0])
    p.add_argument("a", metavar="A", help="results folder (as `skillflow summarize` reads it) or MLflow run id")
    p.add_argument("b", metavar="B", help="results folder or MLflow run id")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="write {benchmark: {mode: statistics}} here; flipped problems go beside it (OUT.flips.json)")
    p.add_argument("--flips", type=Path, default=None, metavar="FILE",
                   help="where the flipped problems go without --json (default: compare-flips.json)")
    p.add_argument("--allow-different-data", action="store_true",
                   help="compare runs whose benchmark files (MLflow dataset digests) differ, and say so")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="count missing or ungraded records as wrong instead of failing")
    p.add_argument("--mlflow-experiment", default=None, metavar="NAME",
                   help="also log the comparison as a run of this experiment (MLFLOW_TRACKING_URI), tagged "
                        "with both run ids, with the table, the flipped problems and an A-beside-B plot")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    import tempfile

    from tasks.cli import UserError
    from tasks.openmath.metrics import MetricsError
    from tasks.openmath.run_sources import RunSourceError
    from tasks.storage.jsonl import JsonlError, atomic_writer

    with tempfile.TemporaryDirectory(prefix="skillflow-compare-") as tmp:
        try:
            (dir_a, digests_a), (dir_b, digests_b) = (_resolve(x, Path(tmp, side))
                                                      for x, side in ((args.a, "a"), (args.b, "b")))
            notes = _data_notes(digests_a, digests_b, args.allow_different_data)
            comparison = compare_outcomes(load_results_dir(dir_a, allow_incomplete=args.allow_incomplete),
                                          load_results_dir(dir_b, allow_incomplete=args.allow_incomplete))
        except (CompareError, RunSourceError, MetricsError, JsonlError, FileNotFoundError) as exc:
            raise UserError(str(exc)) from None
    comparison.notes = notes + comparison.notes
    table = format_comparison(comparison, f"A {_short(args.a)}", f"B {_short(args.b)}")
    print(table, end="")
    flips_path = args.json.with_suffix(".flips.json") if args.json else (args.flips or Path("compare-flips.json"))
    if args.json:
        with atomic_writer(args.json) as fh:
            json.dump(comparison.rows, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    with atomic_writer(flips_path) as fh:
        json.dump(comparison.flips, fh, indent=1)
        fh.write("\n")
    print(f"wrote {flips_path} (flipped problems by 0-based position in the benchmark file)")
    if args.mlflow_experiment:
        from mlflow.tracking import MlflowClient

        from tasks.comparison.tracking import log_comparison

        # The URI the help names, not whatever an earlier caller in this process made mlflow's global.
        mlc = MlflowClient(os.environ.get("MLFLOW_TRACKING_URI"))
        exp = mlc.get_experiment_by_name(args.mlflow_experiment)
        exp_id = exp.experiment_id if exp else mlc.create_experiment(args.mlflow_experiment)
        run_id = log_comparison(mlc, exp_id, comparison.rows, comparison.flips, table, run_a=args.a, run_b=args.b,
                                label_a=f"A {_short(args.a)}", label_b=f"B {_short(args.b)}")
        print(f"logged the comparison as MLflow run {run_id} in experiment {args.mlflow_experiment}")
    return 0


def _short(source: str) -> str:
    return Path(source).name if Path(source).is_dir() else source[:12]


def _resolve(source: str, scratch: Path) -> tuple[Path, dict[str, str] | None]:
    """A results folder as it is (no digests), or an MLflow run's checked and unpacked predictions."""
    if Path(source).is_dir():
        return Path(source), None
    import os

    from tasks.openmath.run_sources import RunSourceError, dataset_digests, fetch_predictions

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise RunSourceError(f"{source}: not a folder, and MLFLOW_TRACKING_URI is unset to look it up as a run id")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from tasks.storage.s3 import client as s3_from_env

    try:
        run = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(source)
    except MlflowException as exc:
        raise RunSourceError(f"{source}: not a folder and not an MLflow run ({exc.message})") from None
    missing = [k for k in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k not in os.environ]
    if missing:
        raise RunSourceError(f"run {source}: fetching its predictions from S3 needs {', '.join(missing)} set")
    return fetch_predictions(run, s3_from_env(os.environ), scratch), dataset_digests(run)


def _data_notes(a: dict[str, str] | None, b: dict[str, str] | None, allow: bool) -> list[str]:
    """Refuse differing benchmark digests (unless allowed, then say so); say when digests are unknown."""
    if a is None or b is None:
        return ["benchmark digests unknown for a results folder: problems were checked by question text only"]
    from tasks.openmath.run_sources import digest_mismatches

    differ = digest_mismatches(a, b)
    if differ and not allow:
        raise CompareError("benchmark data differs between the runs (MLflow dataset digests): "
                           + ", ".join(f"{n} ({a[n][:12]} vs {b[n][:12]})" for n in differ)
                           + "; pass --allow-different-data to compare anyway")
    return [f"benchmark '{n}': data digests differ ({a[n][:12]} vs {b[n][:12]}); compared anyway "
            "(--allow-different-data)" for n in differ]
