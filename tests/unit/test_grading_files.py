import json

import pytest

from tasks.cli import main
from tasks.grading.checker import MathChecker
from tasks.grading.grade_files import grade_files
from tasks.storage.jsonl import JsonlError


def _write(path, rows, blank_after=None):
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n")


def _read(path):
    return [json.loads(line) if line.strip() else None for line in path.read_text().splitlines()]


def test_grade_adds_is_correct_keeps_blank_lines_and_reuses(tmp_path):
    f = tmp_path / "output-greedy.jsonl"
    _write(f, [{"predicted_answer": "\\frac{1}{2}", "expected_answer": "0.5"},
               {"predicted_answer": None, "expected_answer": 3},
               {"predicted_answer": "7", "expected_answer": 3, "is_correct": True}], blank_after=1)
    with MathChecker(workers=1) as checker:
        [report] = grade_files([f], checker)
    rows = _read(f)
    assert rows[1] is None
    assert [r["is_correct"] for r in rows if r] == [True, False, True]  # last one reused
    assert (report.graded, report.reused, report.correct) == (2, 1, 2)
    with MathChecker(workers=1) as checker:
        grade_files([f], checker, ignore_cache=True)
    assert [r["is_correct"] for r in _read(f) if r] == [True, False, False]


def test_malformed_line_names_file_and_line_and_writes_nothing(tmp_path):
    good = tmp_path / "a.jsonl"
    _write(good, [{"predicted_answer": "1", "expected_answer": 1}])
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"predicted_answer": "1", "expected_answer": 1}\n{"predicted_answer": \n')
    before = good.read_bytes()
    with MathChecker(workers=1) as checker, pytest.raises(JsonlError, match=r"b\.jsonl:2"):
        grade_files([good, bad], checker)
    assert good.read_bytes() == before


def test_missing_field_is_an_error(tmp_path):
    f = tmp_path / "a.jsonl"
    _write(f, [{"expected_answer": 1}])
    with MathChecker(workers=1) as checker, pytest.raises(JsonlError, match="a.jsonl:1.*predicted_answer"):
        grade_files([f], checker)


def test_crash_during_grading_leaves_file_intact(tmp_path):
    f = tmp_path / "a.jsonl"
    _write(f, [{"predicted_answer": "1", "expected_answer": 1}])
    before = f.read_bytes()

    class Boom(MathChecker):
        def check_many(self, pairs):
            raise RuntimeError("crash")

    with Boom(workers=1) as checker, pytest.raises(RuntimeError):
        grade_files([f], checker)
    assert f.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]


def test_cli_grade(tmp_path, capsys):
    f = tmp_path / "a.jsonl"
    _write(f, [{"predicted_answer": "2", "expected_answer": 2}])
    assert main(["grade", str(f), "--workers", "1"]) == 0
    assert _read(f)[0]["is_correct"] is True
    assert "1 correct" in capsys.readouterr().out
    f.write_text("[1]\n")
    assert main(["grade", str(f)]) == 2
    assert "a.jsonl:1" in capsys.readouterr().err
