"""Raw APPS rows (codeparrot/apps layout) to the SFT training file and the test prompts
(docs/recipes/apps_sft.md §2.2).

The filter is exactly the seed's: a problem is dropped when ``input_output`` or ``solutions`` is
not valid JSON (an empty string is invalid), which is how problems without solutions or tests
leave the test split (5,000 -> 3,765). Valid but empty lists are kept, as the seed keeps them.
Train rows: one per reference solution, unverified and not deduplicated.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from tasks.storage.jsonl import atomic_writer, iter_jsonl_numbered

INSTRUCTION = "Write Python code to solve competitive programming problems in a markdown code block."
CLOSING = "\nPlease generate the code in a ```python markdown block, ensuring to include the closing ``` at the end."
OUTPUT_NAMES = {"train": "train_sft.jsonl", "test": "test_prompts.jsonl"}


def problem_id(row: dict[str, Any]) -> Any:
    """Raw files carry ``id``; the HF loading script calls it ``problem_id``."""
    return row["id"] if "id" in row else row.get("problem_id")


def build_prompt(question: str, starter_code: str, call_based: bool) -> list[dict[str, str]]:
    """The single user message the seed trains and samples with."""
    content = (INSTRUCTION + "\nQUESTION:\n" + question + (starter_code or "")
               + ("\nUse Call-Based format" if call_based else "\nUse Standard Input format") + CLOSING)
    return [{"role": "user", "content": content}]


def build_response(solution: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": "```python\n" + solution + "\n```\n"}]


def convert_rows(rows: Iterable[tuple[str, dict[str, Any]]], split: str, stats: Counter) -> Iterator[dict]:
    """Yield output rows for ``split`` ("train": SFT rows, "test": prompt rows) and count in ``stats``.

    ``rows`` yields ``(where, row)`` so skips can name the file and line.
    """
    for where, row in rows:
        stats["rows_in"] += 1
        pid = problem_id(row)
        parsed = {}
        bad = None
        for key in ("input_output", "solutions"):
            try:
                parsed[key] = json.loads(row.get(key) or "")
            except (json.JSONDecodeError, TypeError):
                bad = key
                break
        if bad:
            stats[f"skipped_invalid_{bad}"] += 1
            print(f"Skipping {pid} ({where}): invalid JSON in {bad}", file=sys.stderr)
            continue
        io = parsed["input_output"]
        call_based = bool(isinstance(io, dict) and io.get("fn_name"))
        question = build_prompt(row.get("question") or "", row.get("starter_code") or "", call_based)
        stats["problems_kept"] += 1
        stats[f"kept_{row.get('difficulty') or 'unknown'}"] += 1
        stats["call_based" if call_based else "standard_input"] += 1
        if split == "test":
            yield {"question": question, "problem_id": pid}
            continue
        solutions = parsed["solutions"] if isinstance(parsed["solutions"], list) else []
        if not solutions:
            stats["kept_without_solutions"] += 1
        for sol in solutions:
            stats["sft_rows"] += 1
            yield {"question": question, "response": build_response(str(sol)), "problem_id": pid}


def _numbered(path: Path) -> Iterator[tuple[str, dict]]:
    for line_no, row in iter_jsonl_numbered(path):
        yield f"{path}:{line_no}", row


def prepare_split(source: Path, out_dir: Path, split: str) -> dict[str, Any]:
    """Convert one raw file; writes the output and ``<split>_stats.json`` atomically, returns stats."""
    stats: Counter = Counter()
    out = out_dir / OUTPUT_NAMES[split]
    with atomic_writer(out) as fh:
        for row in convert_rows(_numbered(source), split, stats):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    report = {"split": split, "source": str(source), "output": str(out), **dict(sorted(stats.items()))}
    with atomic_writer(out_dir / f"{split}_stats.json") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
    return report


def resolve_sources(source: Path, split: str | None) -> list[tuple[Path, str]]:
    """``--source DIR`` means DIR/{train,test}.jsonl (those present, or the one asked for);
    ``--source FILE`` needs ``--split``. Raises ``ValueError`` naming what is missing."""
    if source.is_dir():
        splits = [split] if split else ["train", "test"]
        found = [(source / f"{s}.jsonl", s) for s in splits if (source / f"{s}.jsonl").is_file()]
        if not found:
            raise ValueError(f"--source {source}: no {' or '.join(s + '.jsonl' for s in splits)} in this folder")
        return found
    if not source.is_file():
        raise ValueError(f"--source {source}: no such file or folder")
    if split is None:
        raise ValueError(f"--source {source} is a file: say which split it is with --split train|test")
    return [(source, split)]
