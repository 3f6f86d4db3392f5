"""End-to-end tests of ``sft-data prepare`` on small hand-made files, and one streaming test."""
from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from tasks.openmath.sft_data.cli import main as cli_main
from tasks.openmath.sft_data.prepare import PrepareConfig, prepare_sft_data
from tasks.storage.jsonl import JsonlError, read_jsonl

CODE = "Use code.\n<llm-code>\nprint({a})\n</llm-code>\n<llm-code-output>\n{a}\n</llm-code-output>\nSo \\boxed{{{a}}}.\nBye."
TEXT = "Think.\nSo \\boxed{{{a}}}.\nBye."


def _row(question: str, solution: str, dataset: str = "gsm8k", gen_type: str = "without_reference_solution") -> dict:
    return {
        "question": question,
        "generated_solution": solution,
        "expected_answer": "1",
        "is_correct": True,
        "dataset": dataset,
        "generation_type": gen_type,
    }


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    """9 lines: A has 3 code + 1 text, B 2 text, C a multi-boxed, a broken-code and a good code solution."""
    rows = [
        _row("A?", CODE.format(a=1)),
        _row("B?", TEXT.format(a=10)),
        _row("A?", TEXT.format(a=2)),
        _row("C?", "\\boxed{1} \\boxed{2}", dataset="math"),
        _row("A?", CODE.format(a=3), gen_type="masked_reference_solution"),
        _row("C?", "<llm-code>\nx\n</llm-code>\n\\boxed{5}", dataset="math"),
        _row("B?", TEXT.format(a=11)),
        _row("A?", CODE.format(a=4)),
        _row("C?", CODE.format(a=6), dataset="math"),
    ]
    return _write(tmp_path / "in.jsonl", rows)


def _run(tmp_path: Path, inputs: list[Path], **kw) -> tuple[list[dict], dict]:
    out = tmp_path / kw.pop("name", "out.jsonl")
    kw.setdefault("downsampling_method", "none")
    kw.setdefault("num_output_samples", None)
    stats = prepare_sft_data(PrepareConfig(inputs=inputs, output=out, **kw))
    return read_jsonl(out), stats


def _trimmed_code(a: int) -> str:
    return f"Use code.\n<llm-code>\nprint({a})\n</llm-code>\n<llm-code-output>\n{a}\n</llm-code-output>\nSo \\boxed{{{a}}}."


def test_filters_text_filter_trim_and_format(small: Path, tmp_path: Path) -> None:
    rows, stats = _run(tmp_path, [small], metadata={"origin": "test"})
    outputs = Counter(r["output"] for r in rows)
    assert outputs == Counter(
        [_trimmed_code(1), _trimmed_code(3), _trimmed_code(4), "Think.\nSo \\boxed{10}.", "Think.\nSo \\boxed{11}.",
         _trimmed_code(6)]
    )
    row = next(r for r in rows if r["output"] == _trimmed_code(3))
    assert row == {
        "question": "A?",
        "expected_answer": "1",
        "is_correct": True,
        "dataset": "gsm8k",
        "generation_type": "masked_reference_solution",
        "input": "System:\nYou're an expert Python programmer and mathematician. Help the user to solve this problem "
        "using code when necessary. Make sure to put the answer (and only answer) inside \\boxed{}."
        "\n\nUser:\nA?\n\nAssistant:\n",
        "output": _trimmed_code(3),
        "origin": "test",
    }
    assert list(row)[-3:] == ["input", "output", "origin"]
    assert stats["input_lines"] == 9
    assert stats["questions"] == 3
    assert stats["after_filters"] == {"multi_boxed": 8, "broken_code": 7}
    assert stats["after_text_filter"] == stats["output_entries"] == 6
    assert stats["coverage"] == 1.0
    assert stats["samples_per_question"]["mean"] == 2.0
    gsm8k, math = stats["per_dataset"]["gsm8k"], stats["per_dataset"]["math"]
    assert (gsm8k["input_lines"], gsm8k["after_filters"], gsm8k["after_text_filter"]) == (
        6, {"multi_boxed": 6, "broken_code": 6}, 5)
    assert (math["input_lines"], math["after_filters"], math["after_text_filter"]) == (
        3, {"multi_boxed": 2, "broken_code": 1}, 1)
    assert stats["per_generation_type"]["masked_reference_solution"]["output_entries"] == 1


def test_no_trim_and_other_filters(small: Path, tmp_path: Path) -> None:
    rows, stats = _run(tmp_path, [small], trim_solutions=False, text_filter_type="none", filters=[])
    assert len(rows) == 9
    assert {r["output"] for r in rows} >= {CODE.format(a=1), TEXT.format(a=2)}
    rows, _ = _run(tmp_path, [small], text_filter_type="all", filters=["multi_boxed", "broken_code", "useless_code"])
    assert sorted(r["output"] for r in rows) == sorted([_trimmed_code(a) for a in (1, 3, 4, 6)])


def test_text_filter_majority_counts_before_filters(tmp_path: Path) -> None:
    # Q: 1 code + 1 text + 2 multi-boxed. Code 1 <= 4 // 2, so majority_code keeps text too;
    # counted after the filters (2 solutions) it would be 1 <= 1 as well, so add a case that differs:
    # R: 2 code + 1 text + 2 broken. 2 <= 5 // 2 keeps R's text; after filters 2 > 3 // 2 would drop it.
    rows = [_row("R?", CODE.format(a=a)) for a in (1, 2)] + [_row("R?", TEXT.format(a=3))]
    rows += [_row("R?", "<llm-code>\\boxed{9}")] * 2
    rows, _ = _run(tmp_path, [_write(tmp_path / "r.jsonl", rows)], text_filter_type="majority_code")
    assert sorted(r["output"] for r in rows) == sorted([_trimmed_code(1), _trimmed_code(2), "Think.\nSo \\boxed{3}."])


def test_dedup_is_optional(tmp_path: Path) -> None:
    # Identical after trimming ("Bye." is cut), so --dedup drops one; v0.1.1 default keeps both.
    rows = [_row("D?", TEXT.format(a=1)), _row("D?", "Think.\nSo \\boxed{1}.\nOther tail."), _row("E?", TEXT.format(a=1))]
    src = _write(tmp_path / "d.jsonl", rows)
    kept, _ = _run(tmp_path, [src])
    assert len(kept) == 3
    kept, stats = _run(tmp_path, [src], dedup=True)
    assert sorted((r["question"], r["output"]) for r in kept) == [
        ("D?", "Think.\nSo \\boxed{1}."), ("E?", "Think.\nSo \\boxed{1}.")]
    assert stats["duplicates_dropped"] == 1


def _fair_input(tmp_path: Path) -> Path:
    rows = [_row("Q1?", CODE.format(a=a)) for a in range(5)]
    rows += [_row("Q2?", CODE.format(a=10))]
    rows += [_row("Q3?", CODE.format(a=a), dataset="math") for a in range(20, 23)]
    return _write(tmp_path / "fair.jsonl", rows)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_fair_downsampling_balances_questions(tmp_path: Path, seed: int) -> None:
    # Counts 5, 1, 3 and N=7: rounds take 3, then 2 (Q1, Q3), then 2 (Q1, Q3) -> 3, 1, 3, whatever the shuffle.
    rows, stats = _run(tmp_path, [_fair_input(tmp_path)], downsampling_method="fair", num_output_samples=7, seed=seed)
    assert Counter(r["question"] for r in rows) == {"Q1?": 3, "Q2?": 1, "Q3?": 3}
    assert {r["question"] for r in rows[:3]} == {"Q1?", "Q2?", "Q3?"}  # round 0 comes first
    assert {r["question"] for r in rows[3:5]} == {"Q1?", "Q3?"}
    assert stats["downsampling"]["applied"] is True
    assert stats["per_dataset"]["math"]["output_entries"] == 3


def test_random_downsampling_is_the_head_of_the_shuffle(tmp_path: Path) -> None:
    src = _fair_input(tmp_path)
    full, _ = _run(tmp_path, [src], seed=3, name="full.jsonl")
    head, stats = _run(tmp_path, [src], downsampling_method="random", num_output_samples=4, seed=3)
    assert head == full[:4]
    assert stats["output_entries"] == 4 and stats["total_entries"] == 9
    # N not below the total: no downsampling, the shuffled order is kept for both methods.
    for method in ("random", "fair"):
        rows, stats = _run(tmp_path, [src], downsampling_method=method, num_output_samples=9, seed=3)
        assert rows == full and stats["downsampling"]["applied"] is False


def test_seed_makes_output_reproducible(tmp_path: Path) -> None:
    src = _fair_input(tmp_path)
    a, _ = _run(tmp_path, [src], seed=5, name="a.jsonl")
    b, _ = _run(tmp_path, [src], seed=5, name="b.jsonl")
    c, _ = _run(tmp_path, [src], seed=6, name="c.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert a != c and sorted(map(json.dumps, a)) == sorted(map(json.dumps, c))


def test_malformed_line_names_file_and_line_and_keeps_old_output(small: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_row("A?", "x")) + "\n\n{not json\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with pytest.raises(JsonlError, match=r"bad\.jsonl:3: invalid JSON"):
        prepare_sft_data(PrepareConfig(inputs=[small, bad], output=out, downsampling_method="none",
                                       num_output_samples=None))
    assert out.read_text() == "old\n"
    missing = _write(tmp_path / "missing.jsonl", [_row("A?", "x"), {"question": "B?"}])
    with pytest.raises(JsonlError, match=r"missing\.jsonl:2: field 'generated_solution'"):
        prepare_sft_data(PrepareConfig(inputs=[missing], output=out, downsampling_method="none",
                                       num_output_samples=None))


def test_cli_prepare_writes_stats_and_reports_user_errors(small: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sft.jsonl"
    rc = cli_main(["sft-data", "prepare", "--input", str(small), "--output", str(out),
                   "--num-output-samples", "4", "--seed", "2", "--metadata", "round=1"])
    assert rc == 0
    stats = json.loads((tmp_path / "sft.stats.json").read_text())
    assert stats["config"]["downsampling_method"] == "fair" and stats["output_entries"] == 4
    assert all(r["round"] == 1 for r in read_jsonl(out))
    # Defaults are the seed command's: fair to 1,024,000 (not applied here), any_code, trimmed.
    rc = cli_main(["sft-data", "prepare", "--input", str(small), "--output", str(out)])
    assert rc == 0
    stats = json.loads((tmp_path / "sft.stats.json").read_text())
    assert stats["config"]["num_output_samples"] == 1_024_000 and stats["output_entries"] == 6
    capsys.readouterr()
    rc = cli_main(["sft-data", "prepare", "--input", str(small), "--output", str(out),
                   "--downsampling-method", "none", "--num-output-samples", "5"])
    assert rc == 2 and "num_output_samples needs a downsampling_method" in capsys.readouterr().err
    rc = cli_main(["sft-data", "prepare", "--input", str(tmp_path / "nope.jsonl"), "--output", str(out)])
    assert rc == 2 and "nope.jsonl" in capsys.readouterr().err


def test_registered_in_skillflow_cli() -> None:
    from tasks.cli import COMMAND_MODULES

    assert "tasks.openmath.sft_data.cli" in COMMAND_MODULES


def test_streaming_memory_is_bounded(tmp_path: Path) -> None:
    """~20 MB of input through small buckets: peak Python allocation stays a small fraction of it.

    The same input with one big bucket gives a byte-identical output, so the bucketing is exact.
    """
    n_lines = 12_000
    filler = "word " * 60
    src = tmp_path / "big.jsonl"
    with open(src, "w", encoding="utf-8") as fh:
        for i in range(n_lines):
            q = f"Question {i % 1500}: {filler}"
            sol = CODE.format(a=i) + " " + filler * 2 if i % 4 else TEXT.format(a=i) + filler * 2
            fh.write(json.dumps(_row(q, sol, dataset="math" if i % 3 else "gsm8k")) + "\n")
    size = src.stat().st_size
    tracemalloc.start()
    try:
        stats = prepare_sft_data(PrepareConfig(inputs=[src], output=tmp_path / "small.jsonl",
                                               num_output_samples=6000, bucket_lines=500))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats["output_entries"] == 6000
    assert peak < size / 5, f"peak {peak} bytes for {size} bytes of input"
    prepare_sft_data(PrepareConfig(inputs=[src], output=tmp_path / "one.jsonl", num_output_samples=6000,
                                   bucket_lines=1_000_000))
    assert (tmp_path / "small.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    # Fair: 1500 questions with 8 solutions each (all code or all text, i % 4 == q % 4) -> 4 per question.
    assert set(Counter(r["question"] for r in read_jsonl(tmp_path / "one.jsonl")).values()) == {4}
