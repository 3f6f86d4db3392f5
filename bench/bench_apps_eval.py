"""APPS evaluator: verdict agreement with MapCoder's labels, and speed against the seed's way of evaluating.

Data (shared, read-only): the 150 problems of ``apps/mapcoder_selected150.jsonl`` and the 10
generation files of ``generations/apps/mapcoder/`` (one program per problem each, labelled
``is_solved`` by MapCoder's executor). Call-based problems are converted the MapCoder way
(``--call-based stdin``) because those models were told to read stdin and print.

Every harness runs the same driver text (:data:`tasks.apps.execute.PROGRAM`), so the verdict
rules are identical and only the way programs are started, isolated and scheduled differs.
The first ``--ref-files`` files are timed on each harness, one harness after the other:

* ours: :func:`tasks.apps.execute.run_program` on a warm :class:`SandboxPool` (one fork of a
  preloaded worker per program, with limits), ``callers`` parallel callers;
* ``fresh_process`` (summary key ``reference_style``): a new ``python -c`` interpreter per program,
  killed at the time limit, with the same ``callers`` parallel callers. It pays the interpreter
  start and the numpy import per program, but none of the seed's Manager, child process, half-size
  pool or retries: a lower bound for a one-process-per-program harness, not the seed;
* ``seed_style`` (:mod:`devtools.apps_seed_style`): the seed's harness as docs/recipes/apps_sft.md §2.4
  describes it. A forked pool of ``cpu_count // 2`` workers (the seed's chunk size, a new pool per
  round); per program a ``multiprocessing.Manager()`` and a forked child that runs all tests
  in-process and reports through the Manager list, joined for the time limit and killed if alive;
  then the flake-retry loop (samples with a -1/-2 code re-run, up to 10 rounds, until two runs in a
  row agree; still-unstable ones dropped when 5 or more). The pool's processes fork from a parent
  that has numpy and the driver loaded, as the seed's do, so no import is charged per program.
  Left out: tqdm's progress bar, the ``debug.jsonl`` file of unstable samples, and the seed's
  in-child comparison (our parent judges the child's raw outputs instead, the same work).

Rates: ``samples_per_s`` over the wall clock of the timed files (seed_style: the whole retry loop,
pools included); ``per_core_per_s`` divides it by the cores the harness occupies: ``callers``
(``min(--workers, cpu_count)``) for ours and fresh_process, the machine's ``cpu_count`` for
seed_style, whose ``cpu_count // 2`` workers each hold a child and a manager (it reserves the
machine even where those sit idle). With the default ``--workers`` both divisors are the machine's
cores, so the two seed_style ratios are equal. ``per_core_second`` (ours, fresh_process) counts
harness time per program instead; programs that hit a time limit cost the same seconds in any
harness with the same limits, so it is also given without them. ``seed_style.verdicts_same_as_ours``
counts, over the timed samples, final pass/fail equal to ours after the retry loop; a dropped
sample has no verdict and counts as different (``dropped_samples`` names them).
``seed_style_all_cores`` is the same harness with as many pool workers as ours has callers, not
the seed's half: it credits the seed with every core busy, so its ratio is the strictest one.

The last line is a JSON summary. Usage: ``python bench/bench_apps_eval.py [--files 10]
[--ref-files 3] [--timeout 4 --budget 11] [--baselines fresh_process,seed_style,seed_style_all_cores]``.
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

from devtools.apps_seed_style import map_samples, preload, retry_until_stable, seed_workers  # noqa: E402
from tasks.apps.execute import PRELOAD, Problem, pool_runner, run_program  # noqa: E402
from tasks.apps.mapcoder import convert_row  # noqa: E402
from tasks.sandbox import Limits, SandboxPool  # noqa: E402

SHARED = Path(os.environ.get("SKILLFLOW_SHARED", ROOT.parent / "shared")) / "data"
BASELINES = ("fresh_process", "seed_style", "seed_style_all_cores")


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


def run_seed_style(problems, samples, ours: list, cores: int, timeout: float, budget: float,
                   workers: int) -> dict:
    """Time the seed's harness (pools, Manager + child per program, retry loop) with ``workers``
    pool processes on ``samples`` and compare its final verdicts with ``ours`` (same order)."""
    preload()  # the seed's parent has these loaded before its pool forks; not timed
    jobs = [(problems[s["problem_id"]], s["code"]) for s in samples]
    start = time.perf_counter()
    outcome = retry_until_stable(jobs, lambda batch: map_samples(batch, workers=workers, timeout=timeout,
                                                                   budget=budget))
    wall = time.perf_counter() - start
    same = sum(i in outcome.results and outcome.results[i].passed == r.passed for i, r in enumerate(ours))

    def name(i: int) -> str:
        return f"{samples[i]['file']}:{samples[i]['problem_id']}"

    return {"samples": len(samples), "wall_s": round(wall, 2), "samples_per_s": round(len(samples) / wall, 2),
            "per_core_per_s": round(len(samples) / wall / cores, 2), "cores": cores, "pool_workers": workers,
            "executions": outcome.executions, "rerun_samples": outcome.rerun_samples, "rounds": outcome.rounds,
            "verdicts_same_as_ours": f"{same}/{len(samples)}",
            "dropped": len(outcome.dropped), "dropped_samples": [name(i) for i in outcome.dropped],
            "kept_unstable_samples": [name(i) for i in outcome.kept_unstable],
            "status": dict(Counter(r.status for r in outcome.results.values()))}


def parse_baselines(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise SystemExit(f"--baselines: unknown baseline(s) {unknown}; valid names: {', '.join(BASELINES)}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10, help="generation files checked for agreement (max 10)")
    parser.add_argument("--ref-files", type=int, default=3, help="of those, files timed on ours and on each baseline")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=1.0,
                        help="seconds per test (default 1 to keep the run short; the seed uses 4)")
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds per program (default 3 to keep the run short; the seed uses 11)")
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help=f"comma-separated baselines timed against ours, any of {', '.join(BASELINES)} (or empty)")
    args = parser.parse_args()
    baselines = parse_baselines(args.baselines)
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
    contained = {k: pool.isolation.get(k) for k in ("namespaces", "uid_drop", "minimal_root", "cgroups")}
    with pool:
        ours_timed, ours_s = run_all(pool_runner(pool), problems, timed, callers, args.timeout, args.budget)
        ours_rest, _ = run_all(pool_runner(pool), problems, rest, callers, args.timeout, args.budget)
    ours = ours_timed + ours_rest
    ordered = timed + rest

    agree = sum(r.passed == s["is_solved"] for r, s in zip(ours, ordered))
    confusion = Counter((("ours_pass" if r.passed else "ours_fail"), ("mapcoder_pass" if s["is_solved"] else "mapcoder_fail"))
                        for r, s in zip(ours, ordered))
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
    summary = {
        "samples": len(samples), "problems": len(problems), "cores": cores, "callers": callers,
        "timeout_s": args.timeout, "budget_s": args.budget,
        "agreement_with_mapcoder": round(agree / len(samples), 4),
        "confusion": {f"{a}/{b}": n for (a, b), n in sorted(confusion.items())},
        "ours": {**ours_rates, "pool_startup_s": round(startup, 2), "status": dict(Counter(r.status for r in ours)),
                 "isolation": contained},
    }
    if "fresh_process" in baselines:
        ref, ref_s = run_all(fresh_process_runner, problems, timed, callers, args.timeout, args.budget)
        ref_rates = rates(ref, ref_s, callers)
        same_as_ref = sum(a.passed == b.passed for a, b in zip(ours_timed, ref))
        ours_free, ref_free = (r["per_core_second_without_time_limited"] for r in (ours_rates, ref_rates))
        summary["verdicts_same_as_reference_style"] = f"{same_as_ref}/{len(ref)}"
        summary["reference_style"] = ref_rates
        summary["speedup_wall"] = round(ours_rates["samples_per_s"] / ref_rates["samples_per_s"], 2)
        summary["speedup_per_core_second_without_time_limited"] = (
            round(ours_free / ref_free, 2) if ours_free and ref_free else None)
    if "seed_style" in baselines:
        # Last: it imports numpy into this process (the seed's parent has it) before forking its pools.
        seed = run_seed_style(problems, timed, ours_timed, cores, args.timeout, args.budget, seed_workers(cores))
        summary["seed_style"] = seed
        summary["speedup_vs_seed_style_wall"] = round(ours_rates["samples_per_s"] / seed["samples_per_s"], 2)
        summary["speedup_vs_seed_style_per_core"] = round(ours_rates["per_core_per_s"] / seed["per_core_per_s"], 2)
    if "seed_style_all_cores" in baselines:
        # The seed's mechanics with as many pool workers as ours has callers: the strictest peer.
        seed_all = run_seed_style(problems, timed, ours_timed, cores, args.timeout, args.budget, callers)
        summary["seed_style_all_cores"] = seed_all
        summary["speedup_vs_seed_style_all_cores"] = round(ours_rates["samples_per_s"] / seed_all["samples_per_s"], 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
