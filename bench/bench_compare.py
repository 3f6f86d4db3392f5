"""Benchmark ``skillflow compare`` on two full-size MATH majority@50 runs.

Writes two synthetic results folders (``math/output-greedy.jsonl`` plus ``output-rs0..49.jsonl``,
5,000 problems each, records shaped like graded NeMo-Skills output: question, expected answer, a
~600-character generation, predicted answer, is_correct), where B answers a few hundred problems
differently from A, then runs ``skillflow compare A B --json`` in a child process and reports its
wall time and peak RSS (``ru_maxrss`` of the child). Aim: under 30 s.

    python bench/bench_compare.py                  # 5,000 problems x 50 samples, as MATH
    python bench/bench_compare.py --problems 500    # quick

The last stdout line is a JSON summary. Generated files go to a temporary directory (removed
afterwards) unless ``--workdir`` is given, where they are kept and reused if already there.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILLER = ("Let x be the unknown. We set up the equation and simplify both sides, then check the "
          "result against the constraints of the problem. ")


def write_run(root: Path, problems: int, samples: int, skill: float, seed: int) -> None:
    """One results folder: the greedy file and ``samples`` sampling files for ``math``."""
    shared = random.Random(0)  # how hard each problem is: the same for both runs, as for two checkpoints
    ability = [min(0.98, max(0.02, shared.gauss(skill, 0.25))) for _ in range(problems)]
    rng = random.Random(seed)
    bench = root / "math"
    bench.mkdir(parents=True, exist_ok=True)
    names = ["output-greedy.jsonl"] + [f"output-rs{s}.jsonl" for s in range(samples)]
    for name in names:
        with open(bench / name, "w") as fh:
            for i in range(problems):
                right = rng.random() < ability[i]
                answer = str(i % 97) if right else (None if rng.random() < 0.05 else str(rng.randint(100, 110)))
                fh.write(json.dumps({"problem": f"Problem {i}: compute the value of the expression number {i}.",
                                     "expected_answer": str(i % 97), "generation": FILLER * 4,
                                     "predicted_answer": answer, "is_correct": right}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-compare-"))
    try:
        t0 = time.monotonic()
        for side, skill, seed in (("a", 0.50, 1), ("b", 0.52, 2)):
            marker = work / side / ".complete"
            if not marker.exists():
                write_run(work / side, args.problems, args.samples, skill, seed)
                marker.write_text("")
        generate_s = time.monotonic() - t0
        size_mb = sum(p.stat().st_size for p in work.rglob("*.jsonl")) / 2**20
        cmd = [sys.executable, "-m", "tasks.cli", "compare", str(work / "a"), str(work / "b"),
               "--json", str(work / "cmp.json")]
        t0 = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.monotonic() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(proc.stdout)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows = json.loads((work / "cmp.json").read_text())["math"]
        summary = {
            "input": f"2 runs x {args.problems} problems x ({args.samples} samples + greedy), {size_mb:.0f} MiB of jsonl",
            "compare_wall_s": round(wall, 2),
            "compare_peak_rss_mib": round(max(peak_kb, before) / 1024, 1),
            "target_wall_s": 30,
            "modes": sorted(rows),
            f"majority@{args.samples}.diff": round(rows[f"majority@{args.samples}"]["diff"], 2),
            "generate_s": round(generate_s, 1),
        }
        print(json.dumps(summary))
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
