"""Masked-solution selection (docs/recipes/openmath.md §8.3 step 2) on hand-made candidates."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.openmath.sft_data.cli import main as cli_main
from tasks.openmath.sft_data.masked import choose_masked_solution, count_digits, create_masked_dataset, expand_runs
from tasks.storage.jsonl import JsonlError, read_jsonl


def s(length: int, digits: int, fill: str = "a") -> str:
    """A candidate of ``length`` characters of which ``digits`` are digits."""
    return "7" * digits + fill * (length - digits)


REF = "r" * 100


def test_count_digits() -> None:
    assert count_digits("M = 12 + N_01") == 4
    assert count_digits("no digits") == 0


def test_fewest_digits_among_incorrect_within_length() -> None:
    candidates = [(s(100, 5), False), (s(120, 2), False), (s(40, 0), False), (s(100, 0), True)]
    assert choose_masked_solution(REF, candidates) == (s(120, 2), "masked")


def test_length_bounds_are_inclusive() -> None:
    candidates = [(s(49, 0), False), (s(151, 0), False), (s(150, 3), False), (s(50, 4), False)]
    assert choose_masked_solution(REF, candidates) == (s(150, 3), "masked")


def test_reference_is_stripped_before_measuring() -> None:
    # Stripped reference has 10 chars, so 15 is in range even though the raw one is much longer.
    assert choose_masked_solution("  " + "r" * 10 + "\n" * 50, [(s(15, 1), False)]) == (s(15, 1), "masked")


def test_falls_back_to_leaking_without_length_limit() -> None:
    candidates = [(s(10, 0), False), (s(300, 4), True), (s(900, 2), True)]
    assert choose_masked_solution(REF, candidates) == (s(900, 2), "leaking")


def test_falls_back_to_reference() -> None:
    assert choose_masked_solution("  ref sol 1\n", [("", False), ("   ", True), (s(30, 0), False)]) == (
        "ref sol 1", "reference")
    assert choose_masked_solution("ref", []) == ("ref", "reference")


def test_ties_go_to_the_earliest_run() -> None:
    candidates = [(s(130, 1), False), (s(100, 3, "b"), False), (s(110, 3, "c"), False), (s(90, 1, "d"), False)]
    assert choose_masked_solution(REF, candidates) == (s(130, 1), "masked")
    leaking = [(s(10, 2, "x"), True), (s(20, 2, "y"), True)]
    assert choose_masked_solution(REF, leaking) == (s(10, 2, "x"), "leaking")


def test_expand_runs_sorts_seeds_numerically(tmp_path: Path) -> None:
    for seed in (10, 2, 1):
        (tmp_path / f"output-rs{seed}.jsonl").write_text("")
    runs = expand_runs([str(tmp_path / "output-rs*.jsonl")])
    assert [p.name for p in runs] == ["output-rs1.jsonl", "output-rs2.jsonl", "output-rs10.jsonl"]
    with pytest.raises(ValueError, match="no run file matches"):
        expand_runs([str(tmp_path / "missing-*.jsonl")])


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def masked_case(tmp_path: Path) -> tuple[Path, list[Path]]:
    dataset = _write(tmp_path / "train_full.jsonl", [
        {"question": "P1", "reference_solution": "x = 12 + 30 = \\boxed{42}", "expected_answer": "42"},
        {"question": "P2", "reference_solution": "y = 5 so \\boxed{5}", "expected_answer": "5"},
        {"question": "P3", "reference_solution": "z = 9 \\boxed{9}", "expected_answer": "9"},
    ])
    runs = [
        _write(tmp_path / "output-rs0.jsonl", [
            {"question": "P1", "generation": "x = M + N = \\boxed{42}", "is_correct": True},
            {"question": "P2", "generation": "y = M so \\boxed{M}", "is_correct": False},
            {"question": "P3", "generation": "", "is_correct": False},
        ]),
        _write(tmp_path / "output-rs1.jsonl", [
            {"question": "P1", "generated_solution": "x = 12 + N = \\boxed{M}", "is_correct": False},
            {"question": "P2", "generated_solution": "y = 5 so \\boxed{N}", "is_correct": False},
            {"question": "P3", "generated_solution": "way too long " * 10, "is_correct": False},
        ]),
    ]
    return dataset, runs


def test_create_masked_dataset(masked_case: tuple[Path, list[Path]], tmp_path: Path) -> None:
    dataset, runs = masked_case
    out = tmp_path / "gsm8k-masked" / "train_full.jsonl"
    stats = create_masked_dataset(dataset, runs, out)
    rows = read_jsonl(out)
    assert rows == [
        {"question": "P1", "reference_solution": "x = 12 + 30 = \\boxed{42}", "expected_answer": "42",
         "masked_reference_solution": "x = 12 + N = \\boxed{M}"},
        {"question": "P2", "reference_solution": "y = 5 so \\boxed{5}", "expected_answer": "5",
         "masked_reference_solution": "y = M so \\boxed{M}"},
        {"question": "P3", "reference_solution": "z = 9 \\boxed{9}", "expected_answer": "9",
         "masked_reference_solution": "z = 9 \\boxed{9}"},
    ]
    assert stats["chosen"] == {"masked": 2, "leaking": 0, "reference": 1}
    assert stats["candidates"] == {"total": 6, "correct": 1, "empty": 1}


def test_mask_errors_name_the_file(masked_case: tuple[Path, list[Path]], tmp_path: Path) -> None:
    dataset, runs = masked_case
    out = tmp_path / "out.jsonl"
    short = _write(tmp_path / "output-rs2.jsonl", [{"question": "P1", "generation": "a", "is_correct": False}])
    with pytest.raises(ValueError, match="output-rs2.jsonl has 1 records"):
        create_masked_dataset(dataset, [*runs, short], out)
    ungraded = _write(tmp_path / "output-rs3.jsonl", [{"question": f"P{i}", "generation": "a"} for i in (1, 2, 3)])
    with pytest.raises(JsonlError, match=r"output-rs3.jsonl:1: no 'is_correct'"):
        create_masked_dataset(dataset, [ungraded], out)
    shifted = _write(tmp_path / "output-rs4.jsonl",
                     [{"question": f"P{i}", "generation": "a", "is_correct": False} for i in (2, 3, 1)])
    with pytest.raises(JsonlError, match=r"output-rs4.jsonl:1: question differs from .*train_full.jsonl:1"):
        create_masked_dataset(dataset, [shifted], out)
    assert not out.exists()


def test_cli_mask(masked_case: tuple[Path, list[Path]], tmp_path: Path) -> None:
    dataset, _ = masked_case
    out = tmp_path / "masked.jsonl"
    rc = cli_main(["sft-data", "mask", "--dataset-file", str(dataset), "--runs", str(tmp_path / "output-rs*.jsonl"),
                   "--output", str(out)])
    assert rc == 0
    stats = json.loads((tmp_path / "masked.stats.json").read_text())
    assert stats["problems"] == 3 and [Path(p).name for p in stats["run_files"]] == [
        "output-rs0.jsonl", "output-rs1.jsonl"]
    assert [r["masked_reference_solution"] for r in read_jsonl(out)][1] == "y = M so \\boxed{M}"
