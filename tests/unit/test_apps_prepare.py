"""APPS preparation (docs/recipes/apps_sft.md §2.2) on hand-made rows, and the MapCoder converter on real rows."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tasks.apps.mapcoder import convert_row, parse_starter
from tasks.apps.prepare import build_prompt
from tasks.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apps"

ROWS = [
    {"id": 0, "question": "Add.", "solutions": json.dumps(["print(1)", "print(2)"]), "difficulty": "interview",
     "input_output": json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]}), "starter_code": "", "url": "u"},
    {"id": 1, "question": "No solutions.", "solutions": "", "difficulty": "interview",
     "input_output": json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]}), "starter_code": "", "url": "u"},
    {"id": 2, "question": "No tests.", "solutions": json.dumps(["x"]), "difficulty": "competition",
     "input_output": "", "starter_code": "", "url": "u"},
    {"id": 3, "question": "Call.", "solutions": json.dumps(["def f(x):\n    return x"]), "difficulty": "introductory",
     "input_output": json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [[1]]}),
     "starter_code": "def f(x):\n    ", "url": "u"},
    {"id": 4, "question": "Broken.", "solutions": "[\"unterminated", "difficulty": "introductory",
     "input_output": json.dumps({"inputs": [], "outputs": []}), "starter_code": "", "url": "u"},
]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_text_is_exact():
    msg = build_prompt("Q?", "def f(x):\n", True)
    assert msg == [{"role": "user", "content":
                    "Write Python code to solve competitive programming problems in a markdown code block."
                    "\nQUESTION:\nQ?def f(x):\n\nUse Call-Based format\nPlease generate the code in a ```python"
                    " markdown block, ensuring to include the closing ``` at the end."}]
    assert build_prompt("Q", "", False)[0]["content"].endswith(
        "QUESTION:\nQ\nUse Standard Input format\nPlease generate the code in a ```python markdown block, "
        "ensuring to include the closing ``` at the end.")


def test_prepare_both_splits_with_seed_filter(tmp_path, capsys):
    src = tmp_path / "apps"
    src.mkdir()
    _write(src / "train.jsonl", ROWS)
    _write(src / "test.jsonl", ROWS)
    out = tmp_path / "out"
    assert main(["apps", "prepare", "--source", str(src), "--out", str(out)]) == 0
    train = [json.loads(x) for x in (out / "train_sft.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (out / "test_prompts.jsonl").read_text().splitlines()]
    # ids 1 (solutions ""), 2 (input_output ""), 4 (solutions not JSON) are dropped
    assert [r["problem_id"] for r in test] == [0, 3]
    assert [r["problem_id"] for r in train] == [0, 0, 3]
    assert train[1]["response"] == [{"role": "assistant", "content": "```python\nprint(2)\n```\n"}]
    assert "Use Call-Based format" in train[2]["question"][0]["content"]
    assert set(test[0]) == {"question", "problem_id"}
    stats = json.loads((out / "test_stats.json").read_text())
    assert stats["rows_in"] == 5 and stats["problems_kept"] == 2
    assert stats["skipped_invalid_solutions"] == 2 and stats["skipped_invalid_input_output"] == 1
    assert json.loads((out / "train_stats.json").read_text())["sft_rows"] == 3
    assert "Skipping 1" in capsys.readouterr().err


def test_prepare_file_needs_split(tmp_path, capsys):
    f = _write(tmp_path / "raw.jsonl", ROWS[:1])
    assert main(["apps", "prepare", "--source", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "--split" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 0}\n{oops\n')
    assert main(["apps", "prepare", "--source", str(bad), "--split", "test", "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_parse_starter():
    assert parse_starter("\ndef get_score(dice):\n\t") == ("get_score", 1)
    assert parse_starter("class Solution:\n    def f(self, a: Dict[str, int], k: int = 2) -> int:\n") == ("f", 2)
    assert parse_starter("x = 1") is None


def test_convert_mapcoder_real_rows_both_ways(tmp_path):
    rows = {json.loads(x)["id"]: json.loads(x) for x in (FIXTURES / "mapcoder_problems.jsonl").read_text().splitlines()}
    stats: Counter = Counter()
    stdin_row = convert_row(rows[2189], "fn_name", stats)  # no starter code: stdin either way
    io = json.loads(stdin_row["input_output"])
    assert "fn_name" not in io and io["inputs"][0] == rows[2189]["test_list"][0]["input"]
    assert io["outputs"][0] == rows[2189]["test_list"][0]["output"][0]
    call = json.loads(convert_row(rows[4465], "fn_name", stats)["input_output"])
    assert call["fn_name"] == "super_size" and call["inputs"][0] == [69] and call["outputs"][0] == [96]
    as_stdin = json.loads(convert_row(rows[4465], "stdin", stats)["input_output"])
    assert "fn_name" not in as_stdin and as_stdin["inputs"][0] == "69" and as_stdin["outputs"][0] == "96"
    out = tmp_path / "apps.jsonl"
    assert main(["apps", "convert-mapcoder", "--input", str(FIXTURES / "mapcoder_problems.jsonl"),
                 "--out", str(out)]) == 0
    assert [json.loads(x)["problem_id"] for x in out.read_text().splitlines()] == [2189, 2126, 3698, 4465]


def test_convert_rejects_non_mapcoder_rows(tmp_path):
    f = _write(tmp_path / "x.jsonl", [{"name": "a"}])
    assert main(["apps", "convert-mapcoder", "--input", str(f), "--out", str(tmp_path / "o.jsonl")]) == 2


@pytest.mark.parametrize("text,expected", [("[1, 2]", [[1, 2]]), ("Apple Banana", ["Apple Banana"])])
def test_call_arguments_parse_back(text, expected):
    row = {"id": 1, "description": "", "difficulty": "introductory", "starter_code": "def f(x):\n",
           "test_list": [{"input": text, "output": [0]}]}
    assert json.loads(convert_row(row, "fn_name", Counter())["input_output"])["inputs"] == [expected]
