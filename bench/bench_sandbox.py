"""Sandbox throughput for trivial snippets: our warm pool against a fresh ``python -c`` per run.

Both sides run the same snippets with the same number of concurrent callers, in one process, one
after the other; the pool's start-up is reported separately and not counted. The last line is a
JSON summary. Usage: ``python bench/bench_sandbox.py [--runs 400] [--concurrency N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.sandbox import SandboxPool  # noqa: E402

SNIPPETS = ["print(1 + 1)", "x = [i * i for i in range(100)]\nprint(sum(x))", "import math\nprint(math.pi)"]


def measure(run_one, runs: int, concurrency: int) -> dict:
    latencies: list[float] = []

    def timed(i: int) -> None:
        start = time.perf_counter()
        run_one(SNIPPETS[i % len(SNIPPETS)])
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(timed, range(runs)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {"runs": runs, "seconds": round(wall, 3), "per_second": round(runs / wall, 1),
            "median_ms": round(statistics.median(latencies) * 1e3, 2),
            "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1e3, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    started = time.perf_counter()
    with SandboxPool(workers=args.concurrency) as pool:
        startup = time.perf_counter() - started

        def pool_run(code: str) -> None:
            res = pool.run(code)
            assert res.status == "ok", res.stderr

        measure(pool_run, min(50, args.runs), args.concurrency)  # warm-up
        ours = measure(pool_run, args.runs, args.concurrency)
        isolation = pool.isolation

    def fresh_process(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)

    baseline = measure(fresh_process, args.runs, args.concurrency)
    print(f"{'':28}{'runs/s':>10}{'median ms':>12}{'p95 ms':>10}")
    print(f"{'warm pool (ours)':28}{ours['per_second']:>10}{ours['median_ms']:>12}{ours['p95_ms']:>10}")
    print(f"{'python -c per execution':28}{baseline['per_second']:>10}{baseline['median_ms']:>12}"
          f"{baseline['p95_ms']:>10}")
    contained = {k: isolation.get(k) for k in ("namespaces", "uid_drop", "minimal_root", "cgroups")}
    print(f"pool start-up {startup:.2f}s for {args.concurrency} workers; "
          + ", ".join(f"{k}={v}" for k, v in contained.items()))
    summary = {"benchmark": "sandbox_trivial_snippets", "concurrency": args.concurrency, "cpus": os.cpu_count(),
               "pool": ours, "subprocess": baseline, "speedup": round(ours["per_second"] / baseline["per_second"], 1),
               "pool_startup_s": round(startup, 3), **contained}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
