"""Build ``samples/mapcoder10/train.jsonl``: solved APPS programs that the `local` profile's
stand-in of ``apps_sft``'s training step trains on, none of them on a test problem of the
``mapcoder10`` sample.

Where the programs come from: MapCoder's published results (``Md-Ashraful-Pramanik/MapCoder`` at
commit ``0027da71030b441cca2bc6f95def86b9aa5c7dea``, ``final-results/{ChatGPT,GPT4}/APPS/
*-APPS-Python3-0-1.jsonl``, MIT license), which the project's shared data folder holds as
``generations/apps/mapcoder/``: ten runs (ChatGPT and GPT-4-Turbo, five prompting methods each)
over the 150 rows of MapCoder's ``data/APPS/selected150.jsonl`` (same commit; shared as
``apps/mapcoder_selected150.jsonl``), one program per row (``source_codes[-1]``) with MapCoder's
verdict (``is_solved``). The problems themselves are from APPS (Hendrycks et al., MIT).

Which programs: for every problem of selected150 that is not a test problem of ``mapcoder10``,
the programs MapCoder judged solved that also pass skillflow's own evaluator (``apps eval``, the
reference harness's semantics) on all of the problem's tests within half the reference's time
limits (:data:`TIMEOUT_S` per test, :data:`BUDGET_S` per program: a program near the limits would
pass or fail with the machine's load, and the file must come out the same on every rebuild); of
those the shortest (the local trainer cuts sequences at 512 tokens), ties broken by run name. At
most ``--max-problems`` problems, in selected150's order.

Layout: codeparrot/apps rows (``problem_id``, ``question``, ``solutions`` = a JSON list string
holding that one program, ``input_output``, ``difficulty``, ``url``, ``starter_code``) plus
``solution_source`` (the MapCoder run of the program), so ``skillflow apps prepare --split train``
turns the file into OpenRLHF's ``train_sft.jsonl``. Problems are converted with MapCoder's
semantics (:func:`tasks.apps.mapcoder.convert_row`, ``"stdin"``): MapCoder's programs for
call-based problems read the arguments from stdin and print the result, so the prompt that
``apps prepare`` builds ("Use Standard Input format") says what the program does.

    python -m devtools.apps_train_fixture            # rewrites the shipped file from ../shared/data
    python -m devtools.apps_train_fixture --shared /path/to/shared/data --out /tmp/train.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "mapcoder10"
OUT = ROOT / "tasks" / "apps" / "samples" / SAMPLE / "train.jsonl"
MAX_PROBLEMS = 60
# Half the reference harness's limits (4 s per test, 11 s per program); see the module docstring.
TIMEOUT_S, BUDGET_S = 2.0, 5.5


def default_shared() -> Path:
    return Path(os.environ.get("SKILLFLOW_SHARED", ROOT.parent / "shared")) / "data"


def test_problem_ids(sample: str = SAMPLE) -> set[int]:
    """The problems the sample's test split evaluates on: the training file must not hold them."""
    from tasks.apps.samples import read_sample

    return {int(r["problem_id"]) for r in read_sample(sample, "test")}


def mapcoder_problems(selected: Path) -> dict[int, dict[str, Any]]:
    """selected150 as APPS-layout rows (stdin semantics), the first row of each id (the file
    repeats some problems)."""
    from tasks.apps.mapcoder import convert_row
    from tasks.storage.jsonl import iter_jsonl

    stats: Counter = Counter()
    problems: dict[int, dict[str, Any]] = {}
    for row in iter_jsonl(selected):
        if int(row["id"]) not in problems:
            converted = convert_row(row, "stdin", stats)
            if converted is not None:
                problems[int(row["id"])] = converted
    return problems


def solved_programs(generations: Path, exclude: set[int]) -> list[dict[str, Any]]:
    """Every program MapCoder judged solved, outside ``exclude``: ``{problem_id, run, code}``."""
    from tasks.storage.jsonl import iter_jsonl

    runs = sorted(generations.glob("*.jsonl"))
    if not runs:
        raise FileNotFoundError(f"{generations}: no MapCoder generation files (*.jsonl)")
    found = []
    for path in runs:
        for row in iter_jsonl(path):
            pid = int(row["id"])
            if row.get("is_solved") is True and pid not in exclude and row.get("source_codes"):
                found.append({"problem_id": pid, "run": path.stem, "code": row["source_codes"][-1]})
    return found


def passing(problems: dict[int, dict[str, Any]], candidates: list[dict[str, Any]],
            workers: int | None = None) -> list[bool]:
    """Whether each candidate passes all tests of its problem in skillflow's evaluator, within
    :data:`TIMEOUT_S` per test and :data:`BUDGET_S` per program."""
    from tasks.apps.evaluate import evaluate
    from tasks.storage.jsonl import write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        probs, samples, out = Path(tmp, "problems.jsonl"), Path(tmp, "samples.jsonl"), Path(tmp, "eval")
        write_jsonl(probs, (problems[pid] for pid in sorted({c["problem_id"] for c in candidates})))
        write_jsonl(samples, ({"problem_id": c["problem_id"], "code": c["code"]} for c in candidates))
        evaluate(samples, probs, out, workers=workers, timeout=TIMEOUT_S, budget=BUDGET_S, progress=False)
        results = {(str(r["problem_id"]), int(r["sample"])): bool(r["passed"])
                   for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    index: Counter = Counter()
    verdicts = []
    for c in candidates:  # the evaluator numbers a problem's samples in file order
        verdicts.append(results[(str(c["problem_id"]), index[c["problem_id"]])])
        index[c["problem_id"]] += 1
    return verdicts


def build(shared: Path, max_problems: int = MAX_PROBLEMS, verify: bool = True,
          workers: int | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The fixture rows and counts of what was left out."""
    problems = mapcoder_problems(shared / "apps" / "mapcoder_selected150.jsonl")
    exclude = test_problem_ids()
    candidates = [c for c in solved_programs(shared / "generations" / "apps" / "mapcoder", exclude)
                  if c["problem_id"] in problems]
    ok = passing(problems, candidates, workers) if verify else [True] * len(candidates)
    best: dict[int, dict[str, Any]] = {}
    for cand, good in zip(candidates, ok):
        pid = cand["problem_id"]
        if good and (pid not in best or (len(cand["code"]), cand["run"]) < (len(best[pid]["code"]), best[pid]["run"])):
            best[pid] = cand
    order = [pid for pid in problems if pid in best][:max_problems]
    rows = [{**problems[pid], "solutions": json.dumps([best[pid]["code"]]), "solution_source": best[pid]["run"]}
            for pid in order]
    counts = {"candidates": len(candidates), "failed_our_evaluator": ok.count(False), "problems": len(rows),
              "excluded_test_problems": len(exclude)}
    return rows, counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.apps_train_fixture", description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=default_shared(),
                   help="the shared data folder (default: $SKILLFLOW_SHARED/data or ../shared/data)")
    p.add_argument("--out", type=Path, default=OUT, help=f"default: the shipped {OUT.relative_to(ROOT)}")
    p.add_argument("--max-problems", type=int, default=MAX_PROBLEMS)
    p.add_argument("--workers", type=int, default=None, help="evaluator workers (default: all cores)")
    p.add_argument("--no-verify", action="store_true", help="trust MapCoder's verdicts, skip skillflow's evaluator")
    args = p.parse_args(argv)
    from tasks.storage.jsonl import write_jsonl

    try:
        rows, counts = build(args.shared, args.max_problems, verify=not args.no_verify, workers=args.workers)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_jsonl(args.out, rows)
    args.out.chmod(0o644)  # the atomic writer's temporary file is private; this one ships
    print(json.dumps({**counts, "difficulties": dict(Counter(r["difficulty"] for r in rows)),
                      "bytes": args.out.stat().st_size, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
