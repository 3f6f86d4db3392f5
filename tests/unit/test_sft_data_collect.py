"""Collecting correct labeling solutions (docs/recipes/openmath.md §8.4) on hand-made runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.openmath.sft_data.cli import main as cli_main
from tasks.openmath.sft_data.collect import Source, collect_correct_solutions
from tasks.openmath.sft_data.stats import flatten_metrics
from tasks.storage.jsonl import JsonlError, read_jsonl


def _write(path: Path, lines: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines), encoding="utf-8")
    return path


def _g(q: str, sol: str, correct: bool | None, key: str = "generation") -> dict:
    row = {"question": q, key: sol, "expected_answer": "1", "predicted_answer": "1" if correct else "2",
           "error_message": "", "reference_solution": "dropped from output"}
    if correct is not None:
        row["is_correct"] = correct
    return row


@pytest.fixture()
def labeling(tmp_path: Path) -> list[Source]:
    plain = [
        _write(tmp_path / "gsm8k" / "output-rs0.jsonl", [_g("Q1", "A", True), _g("Q2", "X", False), _g("Q3", "F", True)]),
        _write(tmp_path / "gsm8k" / "output-rs1.jsonl", [_g("Q1", "A", True), _g("Q2", "Y", None), {}]),
    ]
    masked = [
        _write(tmp_path / "gsm8k-masked" / "output-rs0.jsonl",
               [_g("Q1", "A", True), _g("Q2", "C", True, key="generated_solution"), ""]),
        _write(tmp_path / "gsm8k-masked" / "output-rs1.jsonl", [_g("Q1", "B", True)]),  # unfinished run
    ]
    return [Source("gsm8k", "without_reference_solution", plain),
            Source("gsm8k", "masked_reference_solution", masked)]


def test_collect_correct_solutions(labeling: list[Source], tmp_path: Path) -> None:
    out = tmp_path / "correct.jsonl"
    stats = collect_correct_solutions(labeling, out)
    base = {"expected_answer": "1", "predicted_answer": "1", "error_message": "", "is_correct": True,
            "dataset": "gsm8k"}
    assert read_jsonl(out) == [
        {"question": "Q1", "generated_solution": "A", **base, "generation_type": "without_reference_solution"},
        {"question": "Q3", "generated_solution": "F", **base, "generation_type": "without_reference_solution"},
        {"question": "Q1", "generated_solution": "B", **base, "generation_type": "masked_reference_solution"},
        {"question": "Q2", "generated_solution": "C", **base, "generation_type": "masked_reference_solution"},
    ]
    assert list(read_jsonl(out)[0]) == ["question", "generated_solution", "expected_answer", "predicted_answer",
                                        "error_message", "is_correct", "dataset", "generation_type"]
    plain, masked = stats["per_source"]["gsm8k"], stats["per_source"]["gsm8k-masked"]
    assert {k: plain[k] for k in ("problems", "correct", "incorrect", "ungraded_lines", "empty_lines",
                                  "duplicates_dropped", "solutions", "covered_questions")} == {
        "problems": 3, "correct": 3, "incorrect": 1, "ungraded_lines": 1, "empty_lines": 1,
        "duplicates_dropped": 1, "solutions": 2, "covered_questions": 2}
    assert plain["coverage"] == pytest.approx(2 / 3)
    assert plain["solutions_per_question"]["max"] == 1
    # Masked: Q1's "A" duplicates the plain source; its coverage still counts Q1 as solved.
    assert (masked["problems"], masked["missing_lines"], masked["empty_lines"], masked["duplicates_dropped"],
            masked["solutions"], masked["coverage"]) == (3, 2, 1, 1, 2, 1.0)
    ds = stats["per_dataset"]["gsm8k"]
    assert (ds["questions"], ds["solutions"], ds["covered_questions"], ds["coverage"]) == (3, 4, 3, 1.0)
    assert ds["solutions_per_question"]["mean"] == pytest.approx(4 / 3)
    metrics = flatten_metrics(stats)
    assert metrics["per_source.gsm8k-masked.coverage"] == 1.0 and metrics["solutions"] == 4.0


def test_misaligned_runs_are_an_error(tmp_path: Path) -> None:
    runs = [_write(tmp_path / "m" / "output-rs0.jsonl", [_g("Q1", "A", True)]),
            _write(tmp_path / "m" / "output-rs1.jsonl", [_g("Q9", "A", True)])]
    with pytest.raises(JsonlError, match=r"output-rs1.jsonl:1: question differs from .*output-rs0.jsonl:1"):
        collect_correct_solutions([Source("math", "without_reference_solution", runs)], tmp_path / "o.jsonl")
    with pytest.raises(ValueError, match="generation_type must be one of"):
        Source("math", "masked", runs)


def test_cli_collect(labeling: list[Source], tmp_path: Path, capsys) -> None:
    out = tmp_path / "all.jsonl"
    rc = cli_main(["sft-data", "collect", "--output", str(out),
                   "--source", "gsm8k", "without_reference_solution", str(tmp_path / "gsm8k" / "output-rs*.jsonl"),
                   "--source", "gsm8k", "masked_reference_solution", str(tmp_path / "gsm8k-masked" / "*.jsonl"),
                   "masked"])
    assert rc == 0
    stats = json.loads((tmp_path / "all.stats.json").read_text())
    assert set(stats["per_source"]) == {"gsm8k", "masked"} and stats["solutions"] == 4
    rc = cli_main(["sft-data", "collect", "--output", str(out), "--source", "gsm8k", "text", str(tmp_path / "x*")])
    assert rc == 2 and "no run file matches" in capsys.readouterr().err
