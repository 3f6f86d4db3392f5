"""Evaluate sampled programs on APPS problems: results per sample and pass@k (docs/recipes/apps_sft.md §2.4, §4).

Throughput comes from warm sandbox workers (one per core) each running a whole program, all its
tests, in one fork (:mod:`tasks.apps.execute`); a thread per worker feeds them. The run is
resumable: ``results.jsonl`` is appended as samples finish, and a rerun skips every
``(problem_id, sample)`` already there. A sample can never hang the run: the sandbox kills it at
the per-program budget plus a small slack.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.apps.execute import PRELOAD, Problem, ProblemError, pool_runner, run_program
from tasks.apps.passk import seed_lines, summarise
from tasks.storage.jsonl import JsonlError, atomic_writer, iter_jsonl_numbered

_CODE_BLOCK = re.compile(r"```python(.*?)```", re.S)


def extract_code(text: str) -> str:
    """All ```python blocks of a response, each stripped, joined by newlines; "" if there are none."""
    return "\n".join(block.strip() for block in _CODE_BLOCK.findall(text or ""))


def sample_code(sample: dict[str, Any], where: str) -> str:
    """The program of one sample line: ``code`` as given, else extracted from ``response`` (a string
    or the seed's ``[{role, content}]`` list, first message) or ``completion``."""
    if isinstance(sample.get("code"), str):
        return sample["code"]
    for key in ("response", "completion"):
        value = sample.get(key)
        if isinstance(value, list):
            if not value:
                return ""
            first = value[0]
            value = first.get("content") if isinstance(first, dict) else first
        if isinstance(value, str):
            return extract_code(value)
    raise ValueError(f"{where}: sample has none of 'code', 'response', 'completion'")


def load_problems(path: Path) -> dict[str, Problem]:
    """APPS jsonl keyed by ``str(problem_id)``; rows without valid tests are left out (they
    cannot be evaluated) and counted on stderr."""
    problems: dict[str, Problem] = {}
    skipped = 0
    for line_no, row in iter_jsonl_numbered(path):
        try:
            p = Problem.from_row(row, f"{path}:{line_no}")
        except ProblemError:
            skipped += 1
            continue
        problems[str(p.problem_id)] = p
    if skipped:
        print(f"apps eval: {skipped} problems in {path} have no valid input_output and were left out",
              file=sys.stderr)
    return problems


@dataclass
class Sample:
    problem_id: str
    index: int
    code: str
    where: str


def load_samples(path: Path, problems: dict[str, Problem]) -> list[Sample]:
    """Samples in file order, numbered per problem (the n-th line of a problem is sample n)."""
    seen: Counter = Counter()
    out = []
    for line_no, row in iter_jsonl_numbered(path):
        where = f"{path}:{line_no}"
        if "problem_id" not in row:
            raise ValueError(f"{where}: sample has no 'problem_id'")
        pid = str(row["problem_id"])
        if pid not in problems:
            raise ValueError(f"{where}: problem_id {pid} is not in the problems file (or has no valid tests)")
        out.append(Sample(pid, seen[pid], sample_code(row, where), where))
        seen[pid] += 1
    return out


def read_done(path: Path) -> dict[tuple[str, int], dict]:
    """Results already written; a torn last line (crash mid-write) is cut off so appends stay valid."""
    done: dict[tuple[str, int], dict] = {}
    if not path.exists():
        return done
    good_bytes = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                break
            done[(str(rec["problem_id"]), int(rec["sample"]))] = rec
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return done


def evaluate(samples_path: Path, problems_path: Path, out_dir: Path, *, workers: int | None = None,
             timeout: float = 4.0, budget: float = 11.0, memory_mb: int = 4096,
             progress: bool = True) -> dict[str, Any]:
    """Run every sample not yet in ``out_dir/results.jsonl``; write ``summary.json``; return it."""
    from tasks.sandbox import Limits, SandboxPool

    problems = load_problems(problems_path)
    samples = load_samples(samples_path, problems)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.jsonl"
    done = read_done(results_path)
    todo = [s for s in samples if (s.problem_id, s.index) not in done]
    workers = workers or os.cpu_count() or 1
    started = time.monotonic()
    if todo:
        limits = Limits(timeout_s=budget + 2, memory_mb=memory_mb, max_output_bytes=64 << 20)
        with SandboxPool(workers=workers, limits=limits, preload=PRELOAD) as pool, \
                open(results_path, "a", encoding="utf-8") as out, ThreadPoolExecutor(workers) as ex:
            runner = pool_runner(pool)
            pending = set()
            queue = iter(todo)
            finished, last_report = 0, 0.0

            def submit_next() -> bool:
                s = next(queue, None)
                if s is None:
                    return False
                fut = ex.submit(run_program, runner, problems[s.problem_id], s.code, timeout=timeout, budget=budget)
                fut.sample = s  # type: ignore[attr-defined]
                pending.add(fut)
                return True

            for _ in range(workers * 2):
                if not submit_next():
                    break
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in ready:
                    pending.discard(fut)
                    s = fut.sample  # type: ignore[attr-defined]
                    res = fut.result()
                    rec = {"problem_id": problems[s.problem_id].problem_id, "sample": s.index, **res.to_dict()}
                    out.write(json.dumps(rec) + "\n")
                    done[(s.problem_id, s.index)] = rec
                    finished += 1
                    submit_next()
                out.flush()
                now = time.monotonic()
                if progress and (now - last_report > 2 or not pending):
                    last_report = now
                    rate = finished / max(now - started, 1e-9)
                    print(f"apps eval: {finished}/{len(todo)} samples, {rate:.1f}/s, "
                          f"isolation={'namespaces' if pool.isolation['namespaces'] else 'none'}", file=sys.stderr)
    elapsed = time.monotonic() - started

    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in samples:
        rec = done[(s.problem_id, s.index)]
        counts[s.problem_id][0] += 1
        counts[s.problem_id][1] += int(bool(rec["passed"]))
    difficulty = {pid: problems[pid].difficulty for pid in counts}
    groups = summarise({pid: tuple(nc) for pid, nc in counts.items()}, difficulty)
    ns = Counter(n for n, _ in counts.values())
    typical = ns.most_common(1)[0][0] if ns else 0
    status = Counter(done[(s.problem_id, s.index)].get("status") for s in samples)
    summary = {
        "samples": len(samples), "problems": len(counts), "evaluated_now": len(todo), "reused": len(samples) - len(todo),
        "seconds": round(elapsed, 2), "samples_per_second": round(len(todo) / elapsed, 2) if todo and elapsed else None,
        "workers": workers, "timeout_s": timeout, "budget_s": budget, "status_counts": dict(status),
        "samples_per_problem": dict(sorted(ns.items())),
        "problems_with_unusual_n": sorted((p for p, (n, _) in counts.items() if n != typical), key=str)[:100],
        "pass_at_k": groups,
    }
    with atomic_writer(out_dir / "summary.json") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    return summary


def print_table(summary: dict[str, Any]) -> None:
    """The seed's 12 stdout lines: ``{"difficulty", "k", "pass@k"}`` per k and group."""
    for line in seed_lines(summary["pass_at_k"]):
        print(json.dumps(line))


__all__ = ["evaluate", "extract_code", "sample_code", "load_problems", "load_samples", "print_table",
           "JsonlError"]
