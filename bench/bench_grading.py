"""Benchmark: MATH-style answer checks per second, ours vs the ``math-verify`` package.

Not a test. Pairs are built from the real MATH test answers (``../shared/data/math/test.jsonl``
beside the repo, or ``--math-test``) with realistic perturbations: the same answer, equal
rewritings (\\frac vs \\dfrac vs a decimal, $...$, \\left/\\right, spaces, a unit in \\text{}), and
wrong answers (another problem's answer, an integer off by one). Ours grades every pair with a
fresh :class:`MathChecker` (its pair cache only helps on true repeats, which are reported); math-verify
is timed on a random subsample and reported as a rate. The last line printed is a JSON summary
for ``make bench``.

    python bench/bench_grading.py [--pairs 100000] [--mv-sample 2000] [--workers N]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.datasets.readers import read_math_tora_test  # noqa: E402
from tasks.grading.checker import MathChecker  # noqa: E402

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


def bench_ours(pairs, workers) -> dict:
    start = time.perf_counter()
    with MathChecker(workers=workers, timeout=10.0) as checker:
        verdicts = checker.check_many(pairs)
    seconds = time.perf_counter() - start
    s = checker.stats
    return {"seconds": seconds, "rate": len(pairs) / seconds, "correct": sum(verdicts),
            "fast": s.fast, "sympy": s.symbolic, "cached": s.cached, "timeouts": s.timeouts}


def bench_math_verify(pairs) -> dict:
    from math_verify import parse, verify

    start = time.perf_counter()
    correct = 0
    for pred, ref in pairs:
        try:
            correct += bool(verify(parse(f"${ref}$"), parse(f"${pred}$")))
        except Exception:
            pass
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rate": len(pairs) / seconds, "correct": correct}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--math-test", type=Path, default=ROOT.parent / "shared" / "data" / "math" / "test.jsonl")
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--mv-sample", type=int, default=2000, help="pairs timed for math-verify")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if not args.math_test.is_file():
        print(f"bench_grading: {args.math_test} not found (pass --math-test)", file=sys.stderr)
        return 2
    answers = [r["expected_answer"] for r in read_math_tora_test(args.math_test)]
    pairs = build_pairs(list(answers), args.pairs)
    distinct = len(set(pairs))
    print(f"{len(pairs)} pairs ({distinct} distinct) from {len(answers)} MATH answers; {args.workers} workers")
    ours = bench_ours(pairs, args.workers)
    print(f"ours:        {ours['rate']:10.0f} checks/s  ({ours['seconds']:.1f}s; {ours['fast']} fast, "
          f"{ours['sympy']} sympy, {ours['cached']} cached, {ours['timeouts']} timeouts)")
    sample = random.Random(1).sample(pairs, min(args.mv_sample, len(pairs)))
    mv = bench_math_verify(sample)
    ours_sample = bench_ours(sample, args.workers)
    print(f"math-verify: {mv['rate']:10.0f} checks/s  ({len(sample)} sampled pairs, {mv['seconds']:.1f}s, 1 process)")
    print(f"ours, same sample: {ours_sample['rate']:6.0f} checks/s  ({ours_sample['seconds']:.1f}s incl. worker start)")
    distinct_rate = distinct / ours["seconds"]
    projected = MAJ50_CHECKS / ours["rate"]
    worst = MAJ50_CHECKS / distinct_rate
    print(f"projected MATH majority@50 ({MAJ50_CHECKS} checks): {projected / 60:.1f} min at this run's repeat "
          f"rate; {worst / 60:.1f} min if every pair were distinct ({distinct_rate:.0f} distinct checks/s)")
    print(json.dumps({"bench": "grading", "pairs": len(pairs), "distinct_pairs": distinct,
                      "workers": args.workers, "ours_checks_per_s": round(ours["rate"], 1),
                      "ours_distinct_checks_per_s": round(distinct_rate, 1),
                      "math_verify_checks_per_s": round(mv["rate"], 1), "math_verify_sample": len(sample),
                      "ours_same_sample_checks_per_s": round(ours_sample["rate"], 1),
                      "speedup_same_sample": round(ours_sample["rate"] / mv["rate"], 2),
                      "projected_maj50_minutes": round(projected / 60, 2),
                      "projected_maj50_minutes_all_distinct": round(worst / 60, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
