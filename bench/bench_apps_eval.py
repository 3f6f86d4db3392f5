"""APPS evaluator: verdict agreement with MapCoder's labels, and speed against a reference-style harness.

Data (shared, read-only): the 150 problems of ``apps/mapcoder_selected150.jsonl`` and the 10
generation files of ``generations/apps/mapcoder/`` (one program per problem each, labelled
``is_solved`` by MapCoder's executor). Call-based problems are converted the MapCoder way
(``--call-based stdin``) because those models were told to read stdin and print.

Both sides run the same programs with the same semantics (the same driver text) and the same
number of parallel callers, one after the other in this process:

* ours: :func:`tasks.apps.execute.run_program` on a warm :class:`SandboxPool` (one fork per program);
* reference-style: a fresh ``python`` process per program that runs all its tests inside, like
  the seed's evaluator (which in addition starts a multiprocessing Manager and a child per
  program, so this baseline flatters the seed).

Rates are normalised per core (parallel callers = min(workers, cores)) and per core-second of
harness time; programs that hit a time limit cost the same seconds in both harnesses, so the
overhead comparison is also given without them. The last line is a JSON summary. Usage: ``python bench/bench_apps_eval.py [--files 10] [--ref-files 3] [--timeout 4 --budget 11]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.apps.execute import PRELOAD, Problem, pool_runner, run_program  # noqa: E402
from tasks.apps.mapcoder import convert_row  # noqa: E402
from tasks.sandbox import Limits, SandboxPool  # noqa: E402

SHARED = Path(os.environ.get("SKILLFLOW_SHARED", ROOT.parent / "shared")) / "data"


def fresh_process_runner(program: str, stdin: str, timeout: float) -> tuple[str, str, str]:
    """One new interpreter per program, killed at the timeout (the reference's join + kill)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run([sys.executable, "-c", program], input=stdin.encode(), capture_output=True,
                              timeout=timeout, env=env, cwd="/tmp")
    except subprocess.TimeoutExpired as exc:
        return "timeout", (exc.stdout or b"").decode(errors="replace"), ""
    status = "ok" if proc.returncode == 0 else ("signal" if proc.returncode < 0 else "error")
    return status, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def load(files: int) -> tuple[dict[int, Problem], list[dict]]:
    problems = {}
    for line in open(SHARED / "apps" / "mapcoder_selected150.jsonl", encoding="utf-8"):
        row = convert_row(json.loads(line), "stdin", Counter())
        problems[row["problem_id"]] = Problem.from_row(row)
    samples = []
    for path in sorted((SHARED / "generations" / "apps" / "mapcoder").glob("*.jsonl"))[:files]:
        for line in open(path, encoding="utf-8"):
            row = json.loads(line)
            samples.append({"file": path.stem, "problem_id": row["id"], "code": row["source_codes"][-1],
                            "is_solved": bool(row["is_solved"])})
    return problems, samples


def run_all(runner, problems, samples, callers: int, timeout: float, budget: float) -> tuple[list, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as ex:
        results = list(ex.map(lambda s: run_program(runner, problems[s["problem_id"]], s["code"],
                                                    timeout=timeout, budget=budget), samples))
    return results, time.perf_counter() - start


def rates(results: list, wall: float, callers: int) -> dict:
    """Throughput over the wall clock, and per core-second of harness time (sum of per-program
    durations: each program holds one worker), with and without programs that hit a time limit
    (those cost the same seconds in any harness with the same limits)."""
    limited = [r for r in results if r.status == "budget" or "timeout" in r.outcomes]
    free = [r for r in results if not (r.status == "budget" or "timeout" in r.outcomes)]
    busy = sum(r.duration_s for r in results)
    busy_free = sum(r.duration_s for r in free)
    return {"samples": len(results), "wall_s": round(wall, 2), "samples_per_s": round(len(results) / wall, 2),
            "per_core_per_s": round(len(results) / wall / callers, 2),
            "per_core_second": round(len(results) / busy, 2) if busy else None,
            "time_limited_samples": len(limited),
            "per_core_second_without_time_limited": round(len(free) / busy_free, 2) if busy_free else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10, help="generation files checked for agreement (max 10)")
    parser.add_argument("--ref-files", type=int, default=3, help="of those, files timed on both harnesses")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=1.0,
                        help="seconds per test (default 1 to keep the run short; the seed uses 4)")
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds per program (default 3 to keep the run short; the seed uses 11)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 2
    problems, samples = load(args.files)
    cores = os.cpu_count() or 1
    callers = min(args.workers, cores)
    timed_files = sorted({s["file"] for s in samples})[:args.ref_files]
    timed = [s for s in samples if s["file"] in timed_files]
    rest = [s for s in samples if s["file"] not in timed_files]

    t0 = time.perf_counter()
    pool = SandboxPool(workers=callers, limits=Limits(timeout_s=args.budget + 2, memory_mb=4096,
                                                      max_output_bytes=64 << 20), preload=PRELOAD)
    startup = time.perf_counter() - t0
    with pool:
        ours_timed, ours_s = run_all(pool_runner(pool), problems, timed, callers, args.timeout, args.budget)
        ours_rest, _ = run_all(pool_runner(pool), problems, rest, callers, args.timeout, args.budget)
    ref, ref_s = run_all(fresh_process_runner, problems, timed, callers, args.timeout, args.budget)
    ours = ours_timed + ours_rest
    ordered = timed + rest

    agree = sum(r.passed == s["is_solved"] for r, s in zip(ours, ordered))
    confusion = Counter((("ours_pass" if r.passed else "ours_fail"), ("mapcoder_pass" if s["is_solved"] else "mapcoder_fail"))
                        for r, s in zip(ours, ordered))
    same_as_ref = sum(a.passed == b.passed for a, b in zip(ours_timed, ref))
    by_file: dict = {}
    for r, s in zip(ours, ordered):
        f = by_file.setdefault(s["file"], {"ours": 0, "mapcoder": 0, "n": 0})
        f["ours"] += r.passed
        f["mapcoder"] += s["is_solved"]
        f["n"] += 1
    disagree = [{"file": s["file"], "problem_id": s["problem_id"], "ours": r.passed, "mapcoder": s["is_solved"],
                 "status": r.status, "outcomes": dict(Counter(r.outcomes)), "detail": r.detail[:120]}
                for r, s in zip(ours, ordered) if r.passed != s["is_solved"]]
    for d in disagree:
        print(json.dumps(d), file=sys.stderr)
    for name in sorted(by_file):
        f = by_file[name]
        print(f"{name:50s} solved: ours {f['ours']:3d}  mapcoder {f['mapcoder']:3d}  of {f['n']}")
    ours_rates = rates(ours_timed, ours_s, callers)
    ref_rates = rates(ref, ref_s, callers)
    summary = {
        "samples": len(samples), "problems": len(problems), "cores": cores, "callers": callers,
        "timeout_s": args.timeout, "budget_s": args.budget,
        "agreement_with_mapcoder": round(agree / len(samples), 4),
        "confusion": {f"{a}/{b}": n for (a, b), n in sorted(confusion.items())},
        "verdicts_same_as_reference_style": f"{same_as_ref}/{len(ref)}",
        "ours": {**ours_rates, "pool_startup_s": round(startup, 2), "status": dict(Counter(r.status for r in ours))},
        "reference_style": ref_rates,
        "speedup_wall": round(ours_rates["samples_per_s"] / ref_rates["samples_per_s"], 2),
        "speedup_per_core_second_without_time_limited": (
            round(ours_rates["per_core_second_without_time_limited"] / ref_rates["per_core_second_without_time_limited"], 2)
            if ours_rates["per_core_second_without_time_limited"] and ref_rates["per_core_second_without_time_limited"]
            else None),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
