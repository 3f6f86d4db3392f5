"""Rendered prompts against the strings docs/recipes/openmath.md §8.1 describes."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tasks.prompts import PromptError, available_prompts, few_shot_sets, load_prompt, render_prompt

DATA = Path(__file__).resolve().parents[2] / "tasks" / "prompts" / "data"
SYSTEM = ("You're an expert Python programmer and mathematician. Help the user to solve this problem using code "
          "when necessary. Make sure to put the answer (and only answer) inside \\boxed{}.")
Q = {"question": "What is $\\frac{1}{2}+{x}$?", "reference_solution": "It is \\boxed{3}.",
     "masked_reference_solution": "It is \\boxed{M}.", "expected_answer": "3"}


def test_sft_prompt_is_exactly_system_user_assistant():
    assert render_prompt("openmathinstruct/sft", Q) == f"System:\n{SYSTEM}\n\nUser:\n{Q['question']}\n\nAssistant:\n"
    assert load_prompt("openmathinstruct/sft").stop_phrases == ()


def test_sft_prompt_matches_the_sft_data_input():
    from tasks.openmath.sft_data.prompt import sft_input

    assert render_prompt("openmathinstruct/sft", Q) == sft_input(Q["question"])


def test_base_prompt_with_five_examples():
    prompt = render_prompt("openmathinstruct/base", Q, num_few_shots=5, examples_type="gsm8k_text_with_code")
    assert prompt.startswith("Here are some examples of questions and solutions followed by a new question that "
                             "you need to solve.\nMake sure to put the answer (and only answer) inside \\boxed{}.\n\n"
                             "Question:\n")
    assert prompt.endswith("\n\n\n\n\n\nQuestion:\n" + Q["question"] + "\n\nMy solution:\n")
    assert prompt.count("Question:\n") == 6 and prompt.count("\n\nMy solution:\n") == 6
    first = few_shot_sets()["gsm8k_text_with_code"][0]
    assert f"Question:\n{first['question']}\n\nMy solution:\n{first['generation']}\n\n\n\n\n\n" in prompt
    assert load_prompt("openmathinstruct/base").stop_phrases == ("\n\n\n\n\n\n",)


@pytest.mark.parametrize("context_type,expected", [
    ("empty", ""),
    ("reference_solution", "\n\nReference solution (do not copy it):\nIt is \\boxed{3}."),
    ("masked_solution", "\n\nReference solution:\nIt is \\boxed{M}."),
])
def test_context_types_apply_to_examples_and_question(context_type, expected):
    prompt = render_prompt("openmathinstruct/base", Q, num_few_shots=2, examples_type="math_algebra",
                           context_type=context_type)
    assert prompt.endswith(f"Question:\n{Q['question']}{expected}\n\nMy solution:\n")
    example = few_shot_sets()["math_algebra"][1]
    ctx = {"empty": "", "reference_solution": "\n\nReference solution (do not copy it):\n" +
           example["reference_solution"], "masked_solution": "\n\nReference solution:\n" +
           example["masked_reference_solution"]}[context_type]
    assert f"Question:\n{example['question']}{ctx}\n\nMy solution:\n{example['generation']}" in prompt


def test_text_masked_base_prompt():
    prompt = render_prompt("openmathinstruct/text_masked_base", Q, num_few_shots=5,
                           examples_type="math_generate_masked", context_type="reference_solution")
    assert prompt.startswith("Here are some examples of questions, solutions, and their masked solutions")
    assert "capitalized variables, such as M, N, M_01.\n\nQuestion:\n" in prompt
    assert prompt.endswith(f"Question:\n{Q['question']}\n\nReference solution (do not copy it):\n"
                           f"{Q['reference_solution']}\n\nMy masked solution:\n")
    assert prompt.count("\n\nMy masked solution:\n") == 6


def test_few_shot_set_sizes_match_the_spec():
    sizes = {name: len(examples) for name, examples in few_shot_sets().items()}
    assert sizes["gsm8k_text_with_code"] == sizes["gsm8k_generate_masked"] == 5
    assert sizes["gsm8k_standard_few_shot"] == 8
    assert sizes["math_text_with_code"] == sizes["math_generate_masked"] == 5
    assert sizes["math_text_detailed"] == sizes["math_standard_few_shot"] == 4
    for subject in ("algebra", "probability", "prealgebra", "number_theory", "geometry", "precalculus",
                    "intermediate_algebra"):
        assert sizes[f"math_{subject}"] == 5
    assert not any(re.search(r"\{(start|end)_code(_output)?\}", ex.get("generation", ""))
                   for examples in few_shot_sets().values() for ex in examples)


def test_errors_name_the_problem():
    with pytest.raises(PromptError, match="unknown prompt 'openmathinstruct/nope'"):
        load_prompt("openmathinstruct/nope")
    with pytest.raises(PromptError, match="lacks field 'question'"):
        render_prompt("openmathinstruct/sft", {"problem": "x"})
    with pytest.raises(PromptError, match="has only 4 examples"):
        render_prompt("openmathinstruct/base", Q, num_few_shots=5, examples_type="math_standard_few_shot")
    with pytest.raises(PromptError, match="needs examples_type"):
        render_prompt("openmathinstruct/base", Q, num_few_shots=1)
    with pytest.raises(PromptError, match="unknown context_type 'masked'"):
        render_prompt("openmathinstruct/base", Q, context_type="masked")
    with pytest.raises(PromptError, match="few-shot example 0 of gsm8k_standard_few_shot lacks field "
                                          "'reference_solution'"):
        render_prompt("openmathinstruct/base", Q, num_few_shots=1, examples_type="gsm8k_standard_few_shot",
                      context_type="reference_solution")


def test_data_files_are_the_credited_upstream_files():
    credits = (DATA / "CREDITS.md").read_text()
    listed = dict(reversed(line.split()) for line in credits.splitlines() if re.fullmatch(r"[0-9a-f]{64}  \S+", line))
    assert sorted(listed) == sorted(["few_shot_examples.json", *(f"{p}.yaml" for p in available_prompts())])
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
