"""Benchmark: MATH-style answer checks per second and per core, ours vs the ``math-verify`` package.

Not a test. Pairs are built from the real MATH test answers (``../shared/data/math/test.jsonl``
beside the repo, or ``--math-test``) with realistic perturbations: the same answer, equal
rewritings (\\frac vs \\dfrac vs a decimal, $...$, \\left/\\right, spaces, a unit in \\text{}), and
wrong answers (another problem's answer, an integer off by one).

The claim is per core. Both graders get the same random sample of distinct pairs and the same number of
cores, side by side in one run: each measurement is a fresh process pinned (``sched_setaffinity``)
to the first N usable CPUs, for N in ``--cores``. Ours is one :class:`MathChecker` with N workers
(its parent process shares those N cores); math-verify runs in-process for N = 1 and as a pool of
N forked processes otherwise. Each side is timed from before its import to its last verdict, so
both pay their own start-up (importing sympy, ours' worker start). Sides alternate over
``--repeats`` rounds, one right after the other, and each round gives a ratio ours/math-verify by
wall clock and by CPU-seconds (process and children); the median of those paired ratios is
reported (on a shared machine the CPU-seconds ratio is the steadier of the two). The per-core
ratio is the one at N = 1.

A second figure is not a comparison: ours alone over ``--pairs`` pairs with the repeats a
majority@50 file has (its pair cache answers those), projected to MATH majority@50. The last line
printed is a JSON summary for ``make bench``.

    python bench/bench_grading.py [--pairs 100000] [--sample 2000] [--cores 1,2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAJ50_CHECKS = 5000 * 50
_FRAC = re.compile(r"^\\frac\{(-?\d+)\}\{(\d+)\}$")


def variants(answer: str, other: str, rng: random.Random) -> list[tuple[str, bool]]:
    """(prediction, should_match) rewrites of ``answer``; ``other`` is a different problem's answer."""
    out = [(answer, True), (f"${answer}$", True), (f" {answer} ", True)]
    if "\\frac" in answer:
        out.append((answer.replace("\\frac", "\\dfrac"), True))
    m = _FRAC.match(answer)
    if m:
        out.append((repr(int(m.group(1)) / int(m.group(2)))[:10], True))
    if answer.lstrip("-").isdigit():
        n = int(answer)
        out += [(f"{n}.0", True), (str(n + 1), False), (f"{n}\\text{{ units}}", True), (f"{n:,}", True)]
    if "(" in answer:
        out.append((answer.replace("(", "\\left(").replace(")", "\\right)"), True))
    out += [(other, False), (answer + "+1", False)]
    return out


def build_pairs(answers: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        for ref in answers:
            for pred, _ in variants(ref, rng.choice(answers), rng):
                pairs.append((pred, ref))
        rng.shuffle(answers)
    rng.shuffle(pairs)
    return pairs[:n]


def load_pairs(math_test: Path, n: int) -> list[tuple[str, str]]:
    from tasks.openmath.datasets.readers import read_math_tora_test

    answers = [r["expected_answer"] for r in read_math_tora_test(math_test)]
    return build_pairs(list(answers), n)


def bench_sample(math_test: Path, pairs: int, size: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """All pairs, and the sample both graders are timed on: distinct pairs, so that ours' pair cache
    plays no part in the comparison (fixed seeds: the same pairs every run)."""
    everything = load_pairs(math_test, pairs)
    distinct = sorted(set(everything))
    return everything, random.Random(1).sample(distinct, min(size, len(distinct)))


# ---- one measurement, in a fresh process pinned to N cores -------------------------------------

def _pin(cores: int) -> list[int]:
    usable = sorted(os.sched_getaffinity(0))
    if cores > len(usable):
        raise SystemExit(f"bench_grading: {cores} cores asked, {len(usable)} usable")
    chosen = usable[:cores]
    os.sched_setaffinity(0, chosen)
    return chosen


def _grade_ours(pairs, cores: int) -> tuple[list[bool], dict]:
    from tasks.grading.checker import MathChecker

    with MathChecker(workers=cores, timeout=10.0) as checker:
        verdicts = checker.check_many(pairs)
    s = checker.stats
    return verdicts, {"fast": s.fast, "sympy_step": s.symbolic, "cached": s.cached, "timeouts": s.timeouts}


def _math_verify_one(pair) -> bool:
    from math_verify import parse, verify

    pred, ref = pair
    try:
        return bool(verify(parse(f"${ref}$"), parse(f"${pred}$")))
    except Exception:
        return False


def _grade_math_verify(pairs, cores: int) -> tuple[list[bool], dict]:
    import math_verify  # noqa: F401  (timed: ours pays its sympy import too)

    if cores == 1:
        return [_math_verify_one(p) for p in pairs], {}
    import multiprocessing as mp

    with mp.get_context("fork").Pool(cores) as pool:
        verdicts = pool.map(_math_verify_one, pairs, chunksize=max(1, len(pairs) // (cores * 8)))
    return verdicts, {}


def measure(side: str, cores: int, pairs_file: Path) -> dict:
    """Grade the pairs in ``pairs_file`` with one side on ``cores`` pinned CPUs (run in a fresh process)."""
    chosen = _pin(cores)
    pairs = [tuple(p) for p in json.loads(pairs_file.read_text())]
    grade = _grade_ours if side == "ours" else _grade_math_verify
    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    verdicts, extra = grade(pairs, cores)
    wall = time.perf_counter() - start
    return {"side": side, "cores": cores, "cpus": chosen, "wall_s": wall, "cpu_s": _cpu_seconds() - cpu0,
            "verdicts": [int(v) for v in verdicts], **extra}


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _run_child(side: str, cores: int, pairs_file: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--measure", side, "--cores", str(cores),
                           "--pairs-file", str(pairs_file)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_grading: {side} on {cores} cores failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the comparison ------------------------------------------------------------------------------

def compare(sample, core_counts: list[int], repeats: int) -> dict:
    """Median wall time per side and core count, sides alternating, every run in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.json"
        pairs_file.write_text(json.dumps(sample))
        runs: dict[tuple[str, int], list[dict]] = {}
        for round_no in range(repeats):
            for cores in core_counts:
                sides = ("ours", "math-verify") if round_no % 2 == 0 else ("math-verify", "ours")
                for side in sides:
                    r = _run_child(side, cores, pairs_file)
                    runs.setdefault((side, cores), []).append(r)
                    rate = len(sample) / r["wall_s"]
                    print(f"  round {round_no + 1} {side:11s} {cores} core(s): {rate:7.0f} checks/s "
                          f"({r['wall_s']:.2f}s wall, {r['cpu_s']:.2f}s CPU)", flush=True)
    out: dict = {}
    for cores in core_counts:
        row = {}
        for side in ("ours", "math-verify"):
            rs = runs[(side, cores)]
            wall = statistics.median(r["wall_s"] for r in rs)
            cpu = statistics.median(r["cpu_s"] for r in rs)
            verdict_sets = {tuple(r["verdicts"]) for r in rs}
            if len(verdict_sets) != 1:
                raise SystemExit(f"bench_grading: {side} gave different verdicts across repeats on {cores} cores")
            row[side] = {"checks_per_s": len(sample) / wall, "checks_per_s_per_core": len(sample) / wall / cores,
                         "checks_per_cpu_s": len(sample) / cpu, "correct": sum(rs[0]["verdicts"]),
                         "verdicts": rs[0]["verdicts"],
                         **{k: rs[0][k] for k in ("fast", "sympy_step", "cached", "timeouts") if k in rs[0]}}
        paired = list(zip(runs[("ours", cores)], runs[("math-verify", cores)]))
        row["ratio"] = statistics.median(m["wall_s"] / o["wall_s"] for o, m in paired)
        row["ratio_cpu_s"] = statistics.median(m["cpu_s"] / o["cpu_s"] for o, m in paired)
        out[cores] = row
    return out


def projection(pairs, cores: int) -> dict:
    """Ours alone over every pair (repeats included), for the majority@50 projection."""
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.json"
        pairs_file.write_text(json.dumps(pairs))
        r = _run_child("ours", cores, pairs_file)
    distinct = len(set(map(tuple, pairs)))
    rate = len(pairs) / r["wall_s"]
    return {"pairs": len(pairs), "distinct_pairs": distinct, "cores": cores, "checks_per_s": rate,
            "distinct_checks_per_s": distinct / r["wall_s"], "maj50_minutes": MAJ50_CHECKS / rate / 60,
            "maj50_minutes_all_distinct": MAJ50_CHECKS / (distinct / r["wall_s"]) / 60}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--math-test", type=Path, default=ROOT.parent / "shared" / "data" / "math" / "test.jsonl")
    ap.add_argument("--pairs", type=int, default=100_000, help="pairs for ours' majority@50 projection")
    ap.add_argument("--sample", type=int, default=2000, help="pairs both graders are timed on")
    ap.add_argument("--cores", default=None, help="comma list of core counts (default: 1 and every usable core)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--measure", choices=("ours", "math-verify"), help=argparse.SUPPRESS)
    ap.add_argument("--pairs-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, int(args.cores), args.pairs_file)))
        return 0
    if not args.math_test.is_file():
        print(f"bench_grading: {args.math_test} not found (pass --math-test)", file=sys.stderr)
        return 2
    usable = len(os.sched_getaffinity(0))
    core_counts = sorted({int(c) for c in args.cores.split(",")}) if args.cores else sorted({1, usable})
    everything, sample = bench_sample(args.math_test, args.pairs, args.sample)
    print(f"{len(sample)} sampled pairs ({len(set(sample))} distinct) of {len(everything)}; "
          f"cores {core_counts}; {args.repeats} rounds, sides alternating", flush=True)
    rows = compare(sample, core_counts, args.repeats)
    agree = sum(a == b for a, b in zip(rows[core_counts[0]]["ours"]["verdicts"],
                                       rows[core_counts[0]]["math-verify"]["verdicts"]))
    for cores, row in rows.items():
        o, m = row["ours"], row["math-verify"]
        print(f"{cores} core(s): ours {o['checks_per_s']:.0f}/s ({o['checks_per_s_per_core']:.0f} per core), "
              f"math-verify {m['checks_per_s']:.0f}/s ({m['checks_per_s_per_core']:.0f} per core): "
              f"{row['ratio']:.2f}x by wall clock, {row['ratio_cpu_s']:.2f}x per CPU-second "
              "(medians of the rounds' paired ratios)")
    proj = projection(everything, core_counts[-1])
    print(f"ours over {proj['pairs']} pairs ({proj['distinct_pairs']} distinct) on {proj['cores']} cores: "
          f"{proj['checks_per_s']:.0f} checks/s; MATH majority@50 ({MAJ50_CHECKS} checks) projected at "
          f"{proj['maj50_minutes']:.1f} min ({proj['maj50_minutes_all_distinct']:.1f} min if every pair were distinct)")
    one = rows[core_counts[0]]
    summary = {"bench": "grading", "sample_pairs": len(sample), "sample_distinct": len(set(sample)),
               "repeats": args.repeats,
               "per_core_ratio_wall": round(one["ratio"], 2), "per_core_ratio_cpu_s": round(one["ratio_cpu_s"], 2),
               "per_core_ratio_cores": core_counts[0],
               "verdict_agreement_with_math_verify": f"{agree}/{len(sample)}"}
    for cores, row in rows.items():
        for side in ("ours", "math-verify"):
            r = row[side]
            key = f"{side.replace('-', '_')}_{cores}core"
            summary[f"{key}_checks_per_s"] = round(r["checks_per_s"], 1)
            summary[f"{key}_checks_per_cpu_s"] = round(r["checks_per_cpu_s"], 1)
            summary[f"{key}_correct"] = r["correct"]
        summary[f"ratio_{cores}core_wall"] = round(row["ratio"], 2)
        summary[f"ratio_{cores}core_cpu_s"] = round(row["ratio_cpu_s"], 2)
    ours_one = one["ours"]
    summary["ours_sample_fast_sympy_step_cached"] = f"{ours_one['fast']}/{ours_one['sympy_step']}/{ours_one['cached']}"
    summary.update({"projection_pairs": proj["pairs"], "projection_distinct_pairs": proj["distinct_pairs"],
                    "projection_cores": proj["cores"], "projection_checks_per_s": round(proj["checks_per_s"], 1),
                    "projected_maj50_minutes": round(proj["maj50_minutes"], 2),
                    "projected_maj50_minutes_all_distinct": round(proj["maj50_minutes_all_distinct"], 2)})
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
