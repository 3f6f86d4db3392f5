"""The pure parts of the CPU trainer: what counts as a resumable checkpoint, the data rules."""
from __future__ import annotations

import pytest

from tasks.sft.local_train import build_parser, complete_checkpoints, encode, main, read_jsonl


class CharTokenizer:
    """One id per character: enough to check masking and truncation by counting."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_output_is_learned_input_is_masked_and_cut_from_the_right():
    rows = [{"input": "abcdef", "output": "XYZ"}]
    ex = encode(rows, CharTokenizer(), max_seq_length=7)[0]
    # 3 output tokens + EOS leave room for 3 input tokens: "abc" (the right end "def" is cut).
    assert ex["input_ids"] == [ord(c) for c in "abc"] + [ord(c) for c in "XYZ"] + [0]
    assert ex["labels"] == [-100] * 3 + [ord(c) for c in "XYZ"] + [0]
    long = encode([{"input": "ab", "output": "0123456789"}], CharTokenizer(), max_seq_length=5)[0]
    assert long["labels"] == [ord(c) for c in "01234"]  # no room for input at all


def test_partial_checkpoints_are_not_resumed_from(tmp_path):
    for step, files in ((2, ("trainer_state.json", "model.safetensors")), (4, ("model.safetensors",)),
                        (3, ("trainer_state.json", "model-00001-of-00002.safetensors"))):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("x")
    (tmp_path / "checkpoint-last").mkdir()
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [2, 3]


def test_bad_data_names_file_and_line(tmp_path):
    bad = tmp_path / "sft.jsonl"
    bad.write_text('{"input": "q", "output": "a"}\n{"input": "q"\n')
    with pytest.raises(ValueError, match=r"sft.jsonl:2: not valid JSON"):
        read_jsonl(bad)
    bad.write_text('{"input": "q", "answer": "a"}\n')
    with pytest.raises(ValueError, match=r"sft.jsonl:1: needs string fields 'input' and 'output'"):
        read_jsonl(bad)
    bad.write_text("\n")
    with pytest.raises(ValueError, match="no training examples"):
        read_jsonl(bad)


def test_cli_refuses_settings_that_cannot_train(tmp_path, capsys):
    base = ["--model", "/m", "--train-data", "/d", "--out", str(tmp_path), "--lr", "1e-5"]
    assert main(base) == 2 and "--validation-data or --holdout" in capsys.readouterr().err
    assert main(base + ["--holdout", "2", "--global-batch-size", "3", "--micro-batch-size", "2"]) == 2
    assert main(base[:-1] + ["nan", "--holdout", "2"]) == 2
    assert build_parser().parse_args(base).max_time_s == 0
