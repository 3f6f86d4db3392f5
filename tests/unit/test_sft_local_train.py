"""The pure parts of the CPU trainer: what counts as a resumable checkpoint, the data rules."""
from __future__ import annotations

import pytest

from tasks.sft.local_train import build_parser, complete_checkpoints, encode, encode_chat, main, read_jsonl


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


class ChatTokenizer(CharTokenizer):
    """SmolLM2's template shape ("<s>role\ncontent</s>\n"), with one id per character and the
    end-of-turn marker as EOS."""

    eos_token = "$"
    eos_token_id = ord("$")

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role']}\n{m['content']}$\n" for m in messages)
        return text + ("<assistant\n" if add_generation_prompt else "")


def test_chat_format_masks_the_templated_prompt_and_learns_the_reply_with_its_end_of_turn():
    """OpenRLHF 0.5.3 with --apply_chat_template (apps spec 1.3): prompt = template + generation
    prompt, response = the rest of the templated conversation, trailing newline stripped."""
    q = [{"role": "user", "content": "ab"}]
    rows = [{"question": q, "response": [{"role": "assistant", "content": "XY"}]}]
    (ex,), dropped = encode_chat(rows, ChatTokenizer(), 64, "question", "response")
    prompt = "<user\nab$\n<assistant\n"
    assert dropped == 0
    assert ex["input_ids"] == [ord(c) for c in prompt + "XY$"]  # ends with EOS: none appended
    assert ex["labels"] == [-100] * len(prompt) + [ord(c) for c in "XY$"]


def test_chat_format_drops_long_prompts_and_cuts_long_replies_to_end_in_eos():
    q = [{"role": "user", "content": "ab"}]
    long = {"question": q, "response": [{"role": "assistant", "content": "0123456789"}]}
    prompt_len = len("<user\nab$\n<assistant\n")  # 20
    (ex,), dropped = encode_chat([long], ChatTokenizer(), prompt_len + 4, "question", "response")
    assert dropped == 0 and len(ex["input_ids"]) == prompt_len + 4
    assert ex["labels"][-4:] == [ord("0"), ord("1"), ord("2"), ord("$")]  # the last token is forced to EOS
    # a prompt of max_len - 2 tokens or more leaves no room: OpenRLHF drops the row
    assert encode_chat([long], ChatTokenizer(), prompt_len + 2, "question", "response") == ([], 1)
    assert len(encode_chat([long], ChatTokenizer(), prompt_len + 3, "question", "response")[0]) == 1


def test_chat_data_needs_message_lists_under_the_keys(tmp_path):
    data = tmp_path / "train_sft.jsonl"
    data.write_text('{"question": [{"role": "user", "content": "q"}], "response": [{"role": "assistant", '
                    '"content": "a"}], "problem_id": 1}\n')
    assert read_jsonl(data, "question", "response", chat=True)[0]["problem_id"] == 1
    with pytest.raises(ValueError, match=r"needs string fields 'question' and 'response'"):
        read_jsonl(data, "question", "response")
    data.write_text('{"question": "q", "response": [{"role": "assistant", "content": "a"}]}\n')
    with pytest.raises(ValueError, match=r"train_sft.jsonl:1: needs chat message lists 'question' and 'response'"):
        read_jsonl(data, "question", "response", chat=True)
    args = build_parser().parse_args(["--model", "/m", "--train-data", "/d", "--out", "/o", "--lr", "1e-5",
                                      "--apply-chat-template", "--input-key", "question", "--output-key", "response"])
    assert args.apply_chat_template and (args.input_key, args.output_key) == ("question", "response")
    assert not build_parser().parse_args(["--model", "/m", "--train-data", "/d", "--out", "/o", "--lr", "1e-5"]
                                         ).apply_chat_template


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
