"""``sft-data mask``: pick one masked reference solution per problem (docs/recipes/openmath.md §8.3 step 2).

The masked-solution runs (``output-rs<seed>.jsonl``, one per seed, graded) are aligned line by line
with the dataset file. For each problem:

1. candidates that are *not* graded correct (the mask hides the answer) and whose length is within
   ``±length_margin`` (default 50%) of the stripped reference solution; pick the fewest digit
   characters (fewer digits = more intermediate values masked);
2. else the graded-correct (answer-leaking) candidates, any length, fewest digits;
3. else the stripped reference solution itself.

Ties on the digit count go to the earliest run in run order, which is the natural sort of the run
file paths (``output-rs2`` before ``output-rs10``). This is deterministic and equals v0.1.1's
stable sort whenever its file list was in seed order.

Choices where v0.1.1 was looser, made because a silent mistake here poisons every later step:

- a run line without ``is_correct`` is an error (the run was not graded), not "incorrect";
- run files with a different number of lines from the dataset are an error (an unfinished run),
  not silently truncated;
- when a run line and the dataset line both carry ``question`` they must be equal (misalignment);
- empty or whitespace-only candidates are never chosen (v0.1.1 excluded only exact "").

The output is each dataset line unchanged plus ``masked_reference_solution``. Memory: one line of
each file at a time (files are read in lockstep).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator, Sequence

from tasks.storage.jsonl import JsonlError, atomic_writer, iter_jsonl_numbered

LOG = logging.getLogger(__name__)

GENERATION_KEYS = ("generation", "generated_solution")  # main, then v0.1.1


def count_digits(text: str) -> int:
    """Number of characters for which ``str.isdigit`` is true (as v0.1.1 counted)."""
    return sum(ch.isdigit() for ch in text)


def choose_masked_solution(
    reference_solution: str, candidates: Sequence[tuple[str, bool]], length_margin: float = 0.5
) -> tuple[str, str]:
    """Return ``(text, source)`` with source ``masked``, ``leaking`` or ``reference``.

    ``candidates`` are ``(generation, is_correct)`` in run order; see the module docstring for the
    rule and the tie-break.
    """
    ref = reference_solution.strip()
    low, high = (1 - length_margin) * len(ref), (1 + length_margin) * len(ref)
    best_masked: tuple[int, int] | None = None
    best_leaking: tuple[int, int] | None = None
    for idx, (text, correct) in enumerate(candidates):
        if not text.strip():
            continue
        key = (count_digits(text), idx)
        if correct:
            if best_leaking is None or key < best_leaking:
                best_leaking = key
        elif low <= len(text) <= high and (best_masked is None or key < best_masked):
            best_masked = key
    if best_masked is not None:
        return candidates[best_masked[1]][0], "masked"
    if best_leaking is not None:
        return candidates[best_leaking[1]][0], "leaking"
    return ref, "reference"


def natural_key(path: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically: ``rs2`` < ``rs10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def expand_runs(patterns: Sequence[str]) -> list[Path]:
    """Expand glob patterns (or plain paths) to a de-duplicated, naturally sorted list of files.

    Raises ``ValueError`` naming a pattern that matches nothing.
    """
    found: set[str] = set()
    for pattern in patterns:
        matches = [m for m in glob.glob(pattern) if os.path.isfile(m)]
        if not matches:
            raise ValueError(f"no run file matches {pattern!r}")
        found.update(matches)
    return [Path(p) for p in sorted(found, key=natural_key)]


def _generation(path: Path, line_no: int, obj: dict[str, Any]) -> str:
    for key in GENERATION_KEYS:
        value = obj.get(key)
        if isinstance(value, str):
            return value
    raise JsonlError(path, line_no, f"no string field {' or '.join(GENERATION_KEYS)}")


def _lockstep(paths: Sequence[Path], stack: ExitStack) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Yield one ``(line_no, obj)`` per file per step; raise if the files differ in length."""
    iters = [iter_jsonl_numbered(p) for p in paths]
    for it in iters:
        stack.callback(it.close)
    sentinel = (0, None)
    step = 0
    while True:
        row = [next(it, sentinel) for it in iters]
        ended = [p for p, r in zip(paths, row) if r[1] is None]
        if len(ended) == len(paths):
            return
        if ended:
            longer = [p for p, r in zip(paths, row) if r[1] is not None]
            raise ValueError(
                f"files are not aligned: {ended[0]} has {step} records but {longer[0]} has more; "
                "an unfinished run? every run must have one line per dataset line"
            )
        step += 1
        yield row  # type: ignore[misc]


def create_masked_dataset(
    dataset_file: os.PathLike | str,
    run_files: Sequence[os.PathLike | str],
    output: os.PathLike | str,
    length_margin: float = 0.5,
) -> dict[str, Any]:
    """Write ``output`` (atomically): each dataset line plus ``masked_reference_solution``; return stats."""
    if not 0 <= length_margin:
        raise ValueError(f"length_margin must be >= 0; got {length_margin}")
    dataset = Path(dataset_file)
    runs = [Path(p) for p in run_files]
    if not runs:
        raise ValueError("at least one masked-solution run file is needed")
    stats: dict[str, Any] = {
        "dataset_file": str(dataset),
        "runs": len(runs),
        "problems": 0,
        "chosen": {"masked": 0, "leaking": 0, "reference": 0},
        "candidates": {"total": 0, "correct": 0, "empty": 0},
    }
    with ExitStack() as stack:
        out = stack.enter_context(atomic_writer(output))
        for row in _lockstep([dataset, *runs], stack):
            (ds_line, problem), run_rows = row[0], row[1:]
            reference = problem.get("reference_solution")
            if not isinstance(reference, str):
                raise JsonlError(dataset, ds_line, "field 'reference_solution' is missing or not a string")
            candidates: list[tuple[str, bool]] = []
            for run, (line_no, obj) in zip(runs, run_rows):
                if "is_correct" not in obj:
                    raise JsonlError(run, line_no, "no 'is_correct': grade the run before choosing masked solutions")
                if "question" in obj and "question" in problem and obj["question"] != problem["question"]:
                    raise JsonlError(run, line_no, f"question differs from {dataset}:{ds_line}; files are misaligned")
                text = _generation(run, line_no, obj)
                candidates.append((text, bool(obj["is_correct"])))
                stats["candidates"]["total"] += 1
                stats["candidates"]["correct"] += bool(obj["is_correct"])
                stats["candidates"]["empty"] += not text.strip()
            text, source = choose_masked_solution(reference, candidates, length_margin)
            stats["problems"] += 1
            stats["chosen"][source] += 1
            problem["masked_reference_solution"] = text
            out.write(json.dumps(problem, ensure_ascii=False) + "\n")
    LOG.info(
        "masked solutions for %d problems: %d masked, %d answer-leaking, %d reference fallback",
        stats["problems"], stats["chosen"]["masked"], stats["chosen"]["leaking"], stats["chosen"]["reference"],
    )
    return stats
