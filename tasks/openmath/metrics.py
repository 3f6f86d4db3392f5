"""Greedy, majority@k and pass@k over graded NeMo-Skills files (docs/recipes/openmath.md §7.1, main@9b7f9d57).

Per question (the i-th record of every file):

* ``greedy`` (one file): correct if ``is_correct``; no answer if ``predicted_answer`` is null.
* ``majority``: the votes are the (predicted_answer, is_correct) pairs of the non-null answers,
  compared as raw strings -- no normalisation, so "0.5" and "\\frac{1}{2}" are different votes,
  exactly as upstream. All answers null -> no answer. Otherwise the pair with the most votes wins
  and decides correctness. **Tie rule:** among pairs with equally many votes, the one whose first
  vote comes earliest wins, scanning files in :func:`sort_sample_files` order (rs0, rs1, ...,
  rs10 by number). Upstream's order was filesystem glob order, which is not reproducible.
* ``pass`` (pass@k): correct if any file is correct; no answer if every answer is null.

The result dict has exactly the upstream keys: ``num_entries`` and the percentages
``correct_answer``, ``wrong_answer`` (= 100 - correct - no_answer) and ``no_answer``.

Missing data (files of unequal length, a record without ``is_correct`` or ``predicted_answer``)
is an error naming the file and line, unless ``allow_incomplete`` is set. Then a missing record
is treated as a wrong, non-null answer that matches no other vote: a question whose records are
all missing counts as wrong (not "no answer"), and a missing record can never win a majority
tie against a real answer that has as many votes and came first.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from tasks.storage.jsonl import iter_jsonl

MODES = ("greedy", "majority", "pass")
_RS_NUMBER = re.compile(r"rs(\d+)")


class MetricsError(ValueError):
    """Graded data is missing or inconsistent; the message names the file and line."""


def sort_sample_files(paths: Sequence[os.PathLike | str]) -> list[Path]:
    """Order sampling files by the number after ``rs`` (rs2 before rs10), then by name."""
    def key(p: Path):
        found = _RS_NUMBER.findall(p.name)
        return (int(found[-1]) if found else -1, p.name)

    return sorted((Path(p) for p in paths), key=key)


class _Missing:
    """A placeholder vote for a missing record: wrong, non-null, equal to nothing else."""


class GradedFile:
    """The graded fields of every record of one file, and the identity of each problem.

    Only what the metrics need is kept (not the generations), so 50 sampling files of MATH fit
    in a few MB. A record lacking ``is_correct`` or ``predicted_answer`` is kept as ``None``.
    """

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        self.votes: list[tuple[Any, bool] | None] = []
        self.identities: list[str] = []
        for obj in iter_jsonl(self.path):
            if "is_correct" in obj and "predicted_answer" in obj:
                self.votes.append((_hashable(obj["predicted_answer"]), obj["is_correct"] is True))
            else:
                self.votes.append(None)
            self.identities.append(problem_identity(obj))

    def __len__(self) -> int:
        return len(self.votes)

    def correct_count(self) -> int:
        """Records graded correct (missing or ungraded records count as wrong)."""
        return sum(1 for v in self.votes if v is not None and v[1])


def problem_identity(record: dict[str, Any]) -> str:
    """What makes a record *this* problem: its question text (``question``, or ``problem``).

    ``skillflow compare`` pairs problems by position and checks this per position, so two runs of
    different or reordered benchmark files are refused instead of compared. The expected answer
    is left out on purpose: a corrected answer key is the same problem, and the benchmark digest
    (not this check) is what tells such runs apart."""
    text = record.get("question", record.get("problem"))
    return text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)


def question_outcomes(files: Sequence[GradedFile], mode: str, *,
                      allow_incomplete: bool = False) -> tuple[list[bool], list[bool]]:
    """Per question: (is correct, has no answer) under ``mode``; see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not files:
        raise MetricsError("no files given")
    if mode == "greedy" and len(files) != 1:
        raise MetricsError(f"greedy takes one file, got {len(files)}")
    num_entries = max(len(f) for f in files)
    correct: list[bool] = []
    no_answer: list[bool] = []
    for i in range(num_entries):
        votes: list[tuple[Any, bool] | _Missing] = []
        for graded in files:
            vote = graded.votes[i] if i < len(graded.votes) else None
            if vote is None:
                if not allow_incomplete:
                    what = "missing" if i >= len(graded.votes) else "not graded (no is_correct or predicted_answer)"
                    raise MetricsError(f"{graded.path}: record {i + 1} is {what}; run `skillflow grade` "
                                       "on complete files or pass allow_incomplete")
                votes.append(_Missing())
            else:
                votes.append(vote)
        is_correct, is_no_answer = _decide(votes, mode)
        correct.append(is_correct)
        no_answer.append(is_no_answer)
    return correct, no_answer


def compute_metrics(files: Sequence[os.PathLike | str], mode: str, *,
                    allow_incomplete: bool = False) -> dict[str, float | int]:
    """Metrics of ``mode`` over ``files`` (graded with ``skillflow grade``).

    ``greedy`` takes exactly one file; ``majority``/``pass`` take the files in the given order
    (use :func:`sort_sample_files`; the order only matters for majority ties). The number of files
    is checked by :func:`question_outcomes`; the mode here too, before any file is read.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    correct, no_answer = question_outcomes([GradedFile(f) for f in files], mode, allow_incomplete=allow_incomplete)
    return as_percentages(len(correct), sum(correct), sum(no_answer))


def _hashable(answer: Any) -> Any:
    if answer is None or isinstance(answer, (str, int, float, bool)):
        return answer
    return json.dumps(answer, sort_keys=True)


def _decide(votes: list, mode: str) -> tuple[bool, bool]:
    answered = [v for v in votes if isinstance(v, _Missing) or v[0] is not None]
    if not answered:
        return False, True
    if mode == "greedy":
        vote = answered[0]
        return (not isinstance(vote, _Missing) and vote[1]), False
    if mode == "pass":
        return any(not isinstance(v, _Missing) and v[1] for v in answered), False
    counts = Counter(answered)  # _Missing instances hash by identity: each is its own vote
    top = max(counts.values())
    winner = next(v for v in answered if counts[v] == top)  # earliest first vote wins ties
    return (not isinstance(winner, _Missing) and winner[1]), False


def as_percentages(num_entries: int, correct: int, no_answer: int) -> dict[str, float | int]:
    if num_entries == 0:
        return {"num_entries": 0, "correct_answer": 0.0, "wrong_answer": 0.0, "no_answer": 0.0}
    correct_pct = 100.0 * correct / num_entries
    no_answer_pct = 100.0 * no_answer / num_entries
    return {
        "num_entries": num_entries,
        "correct_answer": correct_pct,
        "wrong_answer": 100.0 - correct_pct - no_answer_pct,
        "no_answer": no_answer_pct,
    }
