"""``sft-data collect``: the correct solutions of the labeling runs, one file (docs/recipes/openmath.md §8.4).

A *source* is one labeling configuration: a dataset (gsm8k, math), a generation type
(``without_reference_solution`` for the empty context, ``masked_reference_solution`` for the
masked context) and its graded run files ``output-rs*.jsonl``, which are aligned line by line
(line i of every run is problem i). Per line, as v0.1.1 read prediction files:

- empty lines (``{}``) and lines without ``is_correct`` (ungraded, e.g. an unfinished run) are
  skipped and counted; incorrect solutions are skipped;
- exact duplicate solutions of the same question are dropped. The key is the question and the
  solution text, across all sources and runs, first one kept in the order the sources are given
  (v0.1.1 de-duplicated within one line index of one call; across sources is our choice, since a
  duplicate is a duplicate for SFT whichever prompt produced it);
- runs of different length are allowed (a shorter run just contributes fewer solutions) and the
  missing lines are counted; runs that disagree on a line's ``question`` are an error.

Output lines carry the fields of OpenMathInstruct-1's ``correct_solutions`` files, in its order
(``question, generated_solution, expected_answer, predicted_answer, error_message, is_correct,
dataset, generation_type``); main's ``generation`` field is written as ``generated_solution``, so
``sft-data prepare`` reads the output directly. Other labeling fields are not carried.

Memory: one line per run file at a time, per question a few counters, and one 8-byte hash per
kept solution in a set for the de-duplication (~60 bytes each, ~300 MB for 5M solutions).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from tasks.openmath.sft_data.masked import GENERATION_KEYS
from tasks.openmath.sft_data.stats import distribution
from tasks.storage.jsonl import JsonlError, atomic_writer, parse_jsonl_line

LOG = logging.getLogger(__name__)

GENERATION_TYPES = ("without_reference_solution", "masked_reference_solution")
CARRIED_FIELDS = ("expected_answer", "predicted_answer", "error_message")


@dataclass
class Source:
    """One labeling configuration; ``name`` defaults to the run files' folder name."""

    dataset: str
    generation_type: str
    run_files: list[Path]
    name: str = ""

    def __post_init__(self) -> None:
        if self.generation_type not in GENERATION_TYPES:
            raise ValueError(
                f"generation_type must be one of {', '.join(GENERATION_TYPES)}; got {self.generation_type!r}"
            )
        if not self.run_files:
            raise ValueError(f"source {self.name or self.dataset}: no run files")
        self.run_files = [Path(p) for p in self.run_files]
        if not self.name:
            self.name = self.run_files[0].parent.name or self.dataset


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every line, blank ones as ``{}``: the line index is the problem index, so none may be skipped."""
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            yield line_no, (parse_jsonl_line(path, line_no, raw) if raw.strip() else {})


def _lockstep(paths: Sequence[Path], stack: ExitStack) -> Iterator[list[tuple[Path, int, dict[str, Any]] | None]]:
    """One entry per file per line index; ``None`` once a file has ended (zip_longest)."""
    iters = [_lines(p) for p in paths]
    for it in iters:
        stack.callback(it.close)
    while True:
        row: list[tuple[Path, int, dict[str, Any]] | None] = []
        for path, it in zip(paths, iters):
            item = next(it, None)
            row.append(None if item is None else (path, item[0], item[1]))
        if all(r is None for r in row):
            return
        yield row


def _solution(path: Path, line_no: int, obj: dict[str, Any]) -> str:
    for key in GENERATION_KEYS:
        value = obj.get(key)
        if isinstance(value, str):
            return value
    raise JsonlError(path, line_no, f"no string field {' or '.join(GENERATION_KEYS)}")


def collect_correct_solutions(sources: Sequence[Source], output: os.PathLike | str) -> dict[str, Any]:
    """Write the correct, de-duplicated solutions of ``sources`` to ``output`` atomically; return stats.

    The stats hold, per source and per dataset, the problems seen, the correct lines, what was
    dropped, the kept solutions, the distribution of kept solutions per question and the coverage
    (share of questions with at least one correct solution; per dataset, after de-duplication
    over all its sources).
    """
    if not sources:
        raise ValueError("at least one source is needed")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique; got {names}")
    seen: set[int] = set()
    per_source: dict[str, dict[str, Any]] = {}
    dataset_counts: dict[str, dict[bytes, int]] = {}
    with atomic_writer(output) as out:
        for source in sources:
            per_source[source.name] = _collect_one(source, out, seen, dataset_counts.setdefault(source.dataset, {}))
    per_dataset = {}
    for dataset, counts in dataset_counts.items():
        covered = sum(1 for c in counts.values() if c)
        per_dataset[dataset] = {
            "questions": len(counts),
            "solutions": sum(counts.values()),
            "covered_questions": covered,
            "coverage": covered / len(counts) if counts else 0.0,
            "solutions_per_question": distribution(counts.values()),
        }
    total = sum(block["solutions"] for block in per_dataset.values())
    LOG.info("collected %d correct solutions from %d source(s)", total, len(sources))
    return {"output": str(output), "solutions": total, "per_dataset": per_dataset, "per_source": per_source}


def _collect_one(source: Source, out: Any, seen: set[int], dataset_counts: dict[bytes, int]) -> dict[str, Any]:
    st = {"runs": len(source.run_files), "problems": 0, "lines": 0, "missing_lines": 0, "empty_lines": 0,
          "ungraded_lines": 0, "incorrect": 0, "correct": 0, "duplicates_dropped": 0, "solutions": 0}
    kept_per_question: dict[bytes, int] = {}
    covered: set[bytes] = set()
    with ExitStack() as stack:
        for row in _lockstep(source.run_files, stack):
            st["problems"] += 1
            question: str | None = None
            where = ""
            for item in row:
                if item is None:
                    st["missing_lines"] += 1
                    continue
                path, line_no, obj = item
                st["lines"] += 1
                if not obj:
                    st["empty_lines"] += 1
                    continue
                q = obj.get("question")
                if not isinstance(q, str):
                    raise JsonlError(path, line_no, "field 'question' is missing or not a string")
                if question is None:
                    question, where = q, f"{path}:{line_no}"
                elif q != question:
                    raise JsonlError(path, line_no, f"question differs from {where}; run files are misaligned")
                if "is_correct" not in obj:
                    st["ungraded_lines"] += 1
                    continue
                if not obj["is_correct"]:
                    st["incorrect"] += 1
                    continue
                st["correct"] += 1
                qd = _digest(question)
                covered.add(qd)
                solution = _solution(path, line_no, obj)
                key = int.from_bytes(
                    hashlib.blake2b(qd + solution.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
                )
                if key in seen:
                    st["duplicates_dropped"] += 1
                    continue
                seen.add(key)
                kept_per_question[qd] = kept_per_question.get(qd, 0) + 1
                dataset_counts[qd] = dataset_counts.get(qd, 0) + 1
                record: dict[str, Any] = {"question": question, "generated_solution": solution}
                for name in CARRIED_FIELDS:
                    if name in obj:
                        record[name] = obj[name]
                record["is_correct"] = True
                record["dataset"] = source.dataset
                record["generation_type"] = source.generation_type
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                st["solutions"] += 1
            if question is not None:
                qd = _digest(question)
                kept_per_question.setdefault(qd, 0)
                dataset_counts.setdefault(qd, 0)
    n_q = len(kept_per_question)
    st["questions"] = n_q
    st["covered_questions"] = len(covered)
    st["coverage"] = len(covered) / n_q if n_q else 0.0
    st["solutions_per_question"] = distribution(kept_per_question.values())
    st["dataset"] = source.dataset
    st["generation_type"] = source.generation_type
    LOG.info(
        "%s: %d problems, %d correct, %d kept, coverage %.2f%%",
        source.name, st["problems"], st["correct"], st["solutions"], 100 * st["coverage"],
    )
    return st
