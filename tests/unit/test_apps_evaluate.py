"""``skillflow apps eval`` end to end: sample formats, real model programs, resume, hostile samples."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.apps.evaluate import extract_code, sample_code
from tasks.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apps"


def test_extract_code_joins_every_python_block():
    text = "Plan\n```python\na = 1\n```\nthen\n```python\nprint(a)\n```\n```\nnot python\n```"
    assert extract_code(text) == "a = 1\nprint(a)"
    assert extract_code("no code") == ""
    seed = {"problem_id": 1, "response": [{"role": "assistant", "content": "```python\nprint(1)\n```"}]}
    assert sample_code(seed, "f:1") == "print(1)"
    assert sample_code({"problem_id": 1, "completion": "```python\nx\n```"}, "f:1") == "x"
    assert sample_code({"problem_id": 1, "code": "raw"}, "f:1") == "raw"
    with pytest.raises(ValueError, match="f:3"):
        sample_code({"problem_id": 1}, "f:3")


@pytest.fixture(scope="module")
def problems(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("apps") / "problems.jsonl"
    assert main(["apps", "convert-mapcoder", "--input", str(FIXTURES / "mapcoder_problems.jsonl"),
                 "--out", str(out), "--call-based", "stdin"]) == 0
    return out


def _samples(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_real_model_programs_get_mapcoders_verdicts(tmp_path, problems, capsys):
    programs = [json.loads(x) for x in (FIXTURES / "mapcoder_programs.jsonl").read_text().splitlines()]
    samples = _samples(tmp_path / "s.jsonl", [
        {"problem_id": p["id"], "response": [{"role": "assistant", "content": f"```python\n{p['source_code']}\n```"}]}
        for p in programs])
    out = tmp_path / "r"
    assert main(["apps", "eval", "--samples", str(samples), "--problems", str(problems), "--out", str(out),
                 "--workers", "2", "--timeout", "2", "--budget", "6"]) == 0
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 30
    got = {(r["problem_id"], r["sample"]): r["passed"] for r in results}
    index: dict = {}
    for p in programs:
        i = index.get(p["id"], 0)
        index[p["id"]] = i + 1
        assert got[(p["id"], i)] == p["is_solved"], (p["file"], p["id"])
    summary = json.loads((out / "summary.json").read_text())
    solved = {pid: sum(p["is_solved"] for p in programs if p["id"] == pid) for pid in (2189, 2126, 3698)}
    expected_p1 = sum(solved.values()) / 30
    assert summary["pass_at_k"]["total"]["pass@1"] == pytest.approx(expected_p1)
    assert summary["pass_at_k"]["total"]["pass@10"] == 1.0  # every problem has a solving program
    table = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert table[0] == {"difficulty": "total", "k": 1, "pass@k": pytest.approx(expected_p1)}
    assert [t["difficulty"] for t in table[:3]] == ["total", "competition", "introductory"]


def test_resume_and_hostile_samples(tmp_path, problems):
    hostile = [
        {"problem_id": 4465, "code": "while True:\n    pass"},
        {"problem_id": 4465, "code": "print(''.join(sorted(input(), reverse=True)))"},
        {"problem_id": 4465, "code": "import os\nwhile True:\n    try:\n        os.posix_spawn('/bin/sleep', ['sleep', '60'], {})\n"
                                     "    except Exception:\n        break"},
        {"problem_id": 4465, "code": "for fd in range(1, 20):\n    try:\n        __import__('os').write(fd, b'@@apps-x@@ {\"end\": true}\\n')\n"
                                     "    except OSError:\n        pass\nprint(input())"},
    ]
    samples = _samples(tmp_path / "s.jsonl", hostile[:2])
    out = tmp_path / "r"
    args = ["apps", "eval", "--samples", str(samples), "--problems", str(problems), "--out", str(out),
            "--workers", "2", "--timeout", "0.5", "--budget", "1.5"]
    assert main(args) == 0
    first = (out / "results.jsonl").read_text()
    with open(out / "results.jsonl", "a") as fh:
        fh.write('{"problem_id": 4465, "sam')  # a torn line from a killed run
    _samples(samples, hostile)
    assert main(args) == 0
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert (out / "results.jsonl").read_text().startswith(first)
    assert sorted(r["sample"] for r in results) == [0, 1, 2, 3]
    by_index = {r["sample"]: r for r in results}
    assert by_index[0]["passed"] is False and by_index[0]["status"] == "budget"
    assert by_index[1]["passed"] is True
    assert by_index[2]["passed"] is False and by_index[3]["passed"] is False
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reused"] == 2 and summary["evaluated_now"] == 2
    assert summary["pass_at_k"]["total"]["pass@1"] == pytest.approx(0.25)
    assert summary["pass_at_k"]["total"]["pass@5"] is None  # n = 4 < 5: unavailable, not guessed


def test_unknown_problem_is_named(tmp_path, problems, capsys):
    samples = _samples(tmp_path / "s.jsonl", [{"problem_id": 4465, "code": "x"}, {"problem_id": 99, "code": "x"}])
    assert main(["apps", "eval", "--samples", str(samples), "--problems", str(problems),
                 "--out", str(tmp_path / "r")]) == 2
    assert f"{samples}:2: problem_id 99" in capsys.readouterr().err
