import json

import pytest

from tasks.cli import main
from tasks.openmath.metrics import MetricsError, compute_metrics, sort_sample_files
from tasks.openmath.summarize import format_table, summarize


def _file(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rec(ans, ok):
    return {"predicted_answer": ans, "is_correct": ok}


def test_greedy(tmp_path):
    f = _file(tmp_path / "g.jsonl", [_rec("1", True), _rec("2", False), _rec(None, False), _rec("4", True)])
    assert compute_metrics([f], "greedy") == {
        "num_entries": 4, "correct_answer": 50.0, "wrong_answer": 25.0, "no_answer": 25.0}


def test_sort_sample_files_is_numeric():
    names = ["output-rs10.jsonl", "output-rs2.jsonl", "output-rs0.jsonl", "output-rs1.jsonl"]
    assert [p.name for p in sort_sample_files(names)] == [
        "output-rs0.jsonl", "output-rs1.jsonl", "output-rs2.jsonl", "output-rs10.jsonl"]


def test_majority_pass_and_tie_rule(tmp_path):
    # question 1: "a"(wrong) x2 beats "b"(right) x1; question 2: tie 1-1, the first file's vote wins;
    # question 3: all null -> no answer; question 4: raw strings differ, so "0.5" and "\frac12" split.
    rows = [
        [_rec("a", False), _rec("b", True), _rec(None, False), _rec("0.5", True)],
        [_rec("a", False), _rec("c", False), _rec(None, False), _rec("\\frac12", True)],
        [_rec("b", True), _rec(None, False), _rec(None, False), _rec("1", False)],
    ]
    files = [_file(tmp_path / f"output-rs{i}.jsonl", [r[q] for q in range(4)]) for i, r in enumerate(rows)]
    maj = compute_metrics(files, "majority")
    assert maj == {"num_entries": 4, "correct_answer": 50.0, "wrong_answer": 25.0, "no_answer": 25.0}
    reordered = compute_metrics([files[1], files[0], files[2]], "majority")
    assert reordered["correct_answer"] == 25.0  # question 2's tie now goes to "c" (wrong)
    assert compute_metrics(files, "pass")["correct_answer"] == 75.0


def test_incomplete_is_error_unless_allowed(tmp_path):
    a = _file(tmp_path / "output-rs0.jsonl", [_rec("1", True), _rec("2", True)])
    b = _file(tmp_path / "output-rs1.jsonl", [_rec("1", True)])
    with pytest.raises(MetricsError, match="output-rs1.jsonl: record 2 is missing"):
        compute_metrics([a, b], "majority")
    ungraded = _file(tmp_path / "g.jsonl", [{"predicted_answer": "1"}])
    with pytest.raises(MetricsError, match="g.jsonl: record 1"):
        compute_metrics([ungraded], "greedy")
    assert compute_metrics([ungraded], "greedy", allow_incomplete=True)["wrong_answer"] == 100.0
    # a missing record is a wrong vote that ties with the real one and came second: real one wins
    assert compute_metrics([a, b], "majority", allow_incomplete=True)["correct_answer"] == 100.0
    assert compute_metrics([b, a], "majority", allow_incomplete=True)["correct_answer"] == 50.0


def test_summarize_table_and_results_json(tmp_path, capsys):
    _file(tmp_path / "gsm8k" / "output-greedy.jsonl", [_rec("1", True), _rec("2", False)])
    for i in range(3):
        _file(tmp_path / "gsm8k" / f"output-rs{i}.jsonl", [_rec("1", True), _rec(None, False)])
    _file(tmp_path / "math" / "output-greedy.jsonl", [_rec("1", True)])
    (tmp_path / "empty").mkdir()
    results = summarize(tmp_path)
    assert list(results) == ["gsm8k", "math"]
    assert list(results["gsm8k"]) == ["greedy", "majority@3", "pass@3"]
    assert results["gsm8k"]["majority@3"]["no_answer"] == 50.0
    table = format_table("gsm8k", results["gsm8k"]).splitlines()
    assert table[0].strip("-") == " gsm8k " and len(table[0]) == len(table[1])
    assert table[1].split(" | ")[0].strip() == "evaluation_mode"
    assert table[2].split("|")[2].strip() == "50.00"
    assert main(["summarize", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert "majority@3" in capsys.readouterr().out
