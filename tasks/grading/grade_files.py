"""Add ``is_correct`` to every record of NeMo-Skills output files (evaluate_results, docs/recipes/openmath.md §6.1).

Each record needs ``predicted_answer`` (string or null) and ``expected_answer``. Records that
already carry ``is_correct`` keep it unless ``ignore_cache`` is set, so re-running after a partial
failure only grades what is new. All files are read and checked before anything is written; each
file is then replaced atomically, so a crash leaves every file either as it was or fully graded.
Blank lines are kept.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tasks.grading.checker import MathChecker
from tasks.storage.jsonl import JsonlError, atomic_writer, parse_jsonl_line


@dataclass
class GradeReport:
    path: str
    records: int
    graded: int
    reused: int
    correct: int


def _read_keeping_blanks(path: Path) -> list[tuple[int, dict[str, Any] | None]]:
    """``(line_no, record)`` per line, ``record=None`` for a blank line (kept when rewriting)."""
    with open(path, "rb") as fh:
        return [(n, None if not raw.strip() else parse_jsonl_line(path, n, raw))
                for n, raw in enumerate(fh, start=1)]


def _load(path: Path) -> list[tuple[int, dict[str, Any] | None]]:
    rows = _read_keeping_blanks(path)
    for line_no, obj in rows:
        if obj is None:
            continue
        for key in ("predicted_answer", "expected_answer"):
            if key not in obj:
                raise JsonlError(path, line_no, f"record has no {key!r} field")
    return rows


def grade_files(paths: Sequence[os.PathLike | str], checker: MathChecker, *,
                ignore_cache: bool = False) -> list[GradeReport]:
    """Grade ``paths`` in place with ``checker``; returns one report per file, in order.

    Raises :class:`tasks.storage.jsonl.JsonlError` (naming file and line) before writing anything if any
    file is malformed or a record lacks a needed field.
    """
    loaded = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        loaded.append((path, _load(path)))

    todo: list[tuple[int, int]] = []  # (file number, row number) needing a verdict
    pairs: list[tuple[Any, Any]] = []
    for f, (_, rows) in enumerate(loaded):
        for r, (_, obj) in enumerate(rows):
            if obj is not None and (ignore_cache or "is_correct" not in obj):
                todo.append((f, r))
                pairs.append((obj["predicted_answer"], obj["expected_answer"]))
    verdicts = checker.check_many(pairs)
    for (f, r), verdict in zip(todo, verdicts):
        loaded[f][1][r][1]["is_correct"] = verdict

    graded_per_file = [0] * len(loaded)
    for f, _ in todo:
        graded_per_file[f] += 1
    reports = []
    for f, (path, rows) in enumerate(loaded):
        with atomic_writer(path) as fh:
            for _, obj in rows:
                fh.write("\n" if obj is None else json.dumps(obj, ensure_ascii=False) + "\n")
        records = [obj for _, obj in rows if obj is not None]
        reports.append(GradeReport(
            path=str(path), records=len(records), graded=graded_per_file[f],
            reused=len(records) - graded_per_file[f],
            correct=sum(1 for obj in records if obj.get("is_correct") is True),
        ))
    return reports
