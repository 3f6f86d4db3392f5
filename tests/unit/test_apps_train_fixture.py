"""The training problems shipped for the local stand-in of ``apps_sft``'s SFT step
(``tasks/apps/samples/mapcoder10/train.jsonl``): disjoint from the test problems, in
codeparrot/apps layout, prepared by ``apps prepare`` into OpenRLHF's format, and reproducible."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools import apps_train_fixture as train_fixture
from tasks.apps.prepare import CLOSING, INSTRUCTION
from tasks.apps.samples import copy_sample, read_sample
from tasks.cli import main

SHIPPED = train_fixture.OUT


def test_no_training_problem_is_a_test_problem():
    train, test = read_sample("mapcoder10", "train"), read_sample("mapcoder10", "test")
    assert {r["problem_id"] for r in train}.isdisjoint({r["problem_id"] for r in test})
    assert {r["question"] for r in train}.isdisjoint({r["question"] for r in test})
    assert train_fixture.test_problem_ids() == {r["problem_id"] for r in test}


def test_rows_are_codeparrot_apps_rows_with_one_solution_each():
    rows = read_sample("mapcoder10", "train")
    assert 10 <= len(rows) <= train_fixture.MAX_PROBLEMS and SHIPPED.stat().st_size < 250_000
    assert len({r["problem_id"] for r in rows}) == len(rows)
    for row in rows:
        assert {"problem_id", "question", "solutions", "input_output", "difficulty", "url", "starter_code"} <= set(row)
        solutions = json.loads(row["solutions"])  # codeparrot/apps: a JSON list in a string
        assert isinstance(solutions, list) and len(solutions) == 1 and solutions[0].strip()
        io = json.loads(row["input_output"])
        assert io["inputs"] and len(io["inputs"]) == len(io["outputs"]) and "fn_name" not in io  # stdin programs
        assert row["difficulty"] in ("introductory", "interview", "competition")
        assert row["solution_source"].endswith("-APPS-Python3-0-1")


def test_apps_prepare_turns_the_fixture_into_openrlhf_chat_rows(tmp_path, capsys):
    raw = tmp_path / "apps" / "train.jsonl"
    assert main(["apps", "samples", "mapcoder10", "--split", "train", "--out", str(raw)]) == 0
    assert raw.read_bytes() == SHIPPED.read_bytes()
    assert main(["apps", "prepare", "--source", str(raw), "--split", "train", "--out", str(tmp_path)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "train_sft.jsonl").read_text().splitlines()]
    shipped = read_sample("mapcoder10", "train")
    assert len(rows) == len(shipped)
    for row, src in zip(rows, shipped):
        (user,), (assistant,) = row["question"], row["response"]
        assert user["role"] == "user" and user["content"].startswith(INSTRUCTION + "\nQUESTION:\n" + src["question"])
        assert user["content"].endswith("\nUse Standard Input format" + CLOSING)
        assert assistant == {"role": "assistant", "content": "```python\n" + json.loads(src["solutions"])[0] + "\n```\n"}


def test_samples_name_their_splits(tmp_path):
    assert copy_sample("mapcoder10", tmp_path / "t.jsonl").read_bytes() == (SHIPPED.parent / "test.jsonl").read_bytes()
    with pytest.raises(ValueError, match="split 'validation' is not one of test, train"):
        copy_sample("mapcoder10", tmp_path / "v.jsonl", "validation")


@pytest.mark.slow
def test_the_builder_reproduces_the_shipped_file(shared_data: Path, tmp_path):
    """From the shared MapCoder files, with every candidate run through the evaluator (~10 s)."""
    out = tmp_path / "train.jsonl"
    assert train_fixture.main(["--shared", str(shared_data), "--out", str(out), "--workers", "2"]) == 0
    assert out.read_bytes() == SHIPPED.read_bytes()
