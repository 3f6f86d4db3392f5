"""Filters, trimming, text filter and downsampling of sft-data, on hand-made cases."""
from __future__ import annotations

import pytest

from tasks.openmath.sft_data.downsample import fair_select, random_select, select
from tasks.openmath.sft_data.filters import (
    is_broken_code,
    is_code_solution,
    is_multi_boxed,
    is_useless_code,
    text_filter_keeps,
    trim_solution,
    validate_filters,
)
from tasks.openmath.sft_data.prompt import sft_input

BLOCK = "<llm-code>\nx = 1\n</llm-code>\n<llm-code-output>\n1\n</llm-code-output>\n"


@pytest.mark.parametrize(
    "solution, expected",
    [
        ("So the answer is \\boxed{3}.", False),
        ("\\boxed{3} or maybe \\boxed{4}", True),
        ("\\boxed{\\frac{1}{2}}", False),  # naive regex: one match, stops at the first }
        ("\\boxed{\\boxed{2}}", False),  # naive regex: the outer match swallows the inner box
        ("no box at all", False),
        ("\\boxed{} and \\boxed{}", True),
    ],
)
def test_multi_boxed(solution: str, expected: bool) -> None:
    assert is_multi_boxed(solution) is expected


@pytest.mark.parametrize(
    "solution, expected",
    [
        ("text only \\boxed{1}", False),
        (BLOCK + "\\boxed{1}", False),
        (BLOCK + "then\n" + BLOCK + "\\boxed{1}", False),
        (BLOCK.replace("</llm-code-output>", ""), True),  # unbalanced
        ("<llm-code>\nx\n</llm-code>\n", True),  # code without output
        ("</llm-code><llm-code><llm-code-output></llm-code-output>", True),  # end before start
        ("<llm-code></llm-code></llm-code-output><llm-code-output>", True),  # output end before output start
        (BLOCK + "<llm-code-output></llm-code-output><llm-code></llm-code>", True),  # 2nd block output first
    ],
)
def test_broken_code(solution: str, expected: bool) -> None:
    assert is_broken_code(solution) is expected


@pytest.mark.parametrize(
    "solution, expected",
    [
        ("\\boxed{2} first, then " + BLOCK, True),
        (BLOCK + "\\boxed{2}", False),
        ("no code \\boxed{2}", False),
        (BLOCK + "no box", False),
    ],
)
def test_useless_code(solution: str, expected: bool) -> None:
    assert is_useless_code(solution) is expected


@pytest.mark.parametrize(
    "solution, expected",
    [
        ("a\nb \\boxed{3}\nc\nd", "a\nb \\boxed{3}"),
        ("a\n$$\\boxed{3}\n$$\nmore", "a\n$$\\boxed{3}\n$$"),
        ("a\n\\boxed{3} \\\\\n\\end{align*}\nx", "a\n\\boxed{3} \\\\\n\\end{align*}"),
        ("a\n\\[ \\boxed{3}\n\\]\ny", "a\n\\[ \\boxed{3}\n\\]"),
        ("first\nsecond\nthird", "first"),  # no box: keep the first line only
        ("a\n\\boxed{1}", "a\n\\boxed{1}"),
        ("\\boxed{1}\nx\n\\boxed{2}", "\\boxed{1}"),  # the first box wins
        ("a\n\\boxed{1}\nplain\n$$", "a\n\\boxed{1}"),  # only the very next line may be kept
    ],
)
def test_trim_solution(solution: str, expected: str) -> None:
    assert trim_solution(solution) == expected


def test_code_solution_is_checked_on_the_given_text() -> None:
    assert is_code_solution(BLOCK)
    assert not is_code_solution("text \\boxed{1}")
    # Trimming can remove the code: box before code means a text solution after trim.
    assert not is_code_solution(trim_solution("\\boxed{1}\n" + BLOCK))


@pytest.mark.parametrize(
    "filter_type, n_code, n_text, n_total, expected",
    [
        ("none", 2, 3, 5, (True, True)),
        ("all", 0, 3, 3, (True, False)),
        ("any_code", 2, 3, 5, (True, False)),
        ("any_code", 0, 3, 5, (False, True)),
        ("majority_code", 2, 3, 5, (True, True)),  # 2 <= 5 // 2
        ("majority_code", 3, 2, 5, (True, False)),
        ("majority_code", 3, 1, 6, (True, True)),  # compared with the count before filters: 3 <= 6 // 2
        ("majority_text", 3, 2, 5, (True, False)),
        ("majority_text", 2, 3, 5, (False, True)),
        ("majority_text", 3, 0, 6, (False, True)),  # 3 is not more than 6 // 2
    ],
)
def test_text_filter_keeps(filter_type: str, n_code: int, n_text: int, n_total: int, expected: tuple) -> None:
    assert text_filter_keeps(filter_type, n_code, n_text, n_total) == expected


def test_text_filter_and_filter_names_are_validated() -> None:
    with pytest.raises(ValueError, match="any_code"):
        text_filter_keeps("mostly_code", 1, 1, 2)
    with pytest.raises(ValueError, match="no_box.*valid: multi_boxed, broken_code, useless_code"):
        validate_filters(["multi_boxed", "no_box"])


def test_fair_select_round_robin_in_first_appearance_order() -> None:
    # group 0 at 0,1,2; group 1 at 3; group 2 at 4,5.
    # rounds: (0: idx0, 1: idx3, 2: idx4), (0: idx1, 2: idx5), (0: idx2)
    assert fair_select([0, 0, 0, 1, 2, 2], 4) == [0, 3, 4, 1]
    assert fair_select([0, 0, 0, 1, 2, 2], 5) == [0, 3, 4, 1, 5]
    # The question order is first appearance, not the group id.
    assert fair_select([5, 2, 5, 5, 7], 3) == [0, 1, 4]
    assert fair_select([5, 2, 5, 5, 7], 4) == [0, 1, 4, 2]


def test_fair_select_without_need_keeps_shuffled_order() -> None:
    assert fair_select([1, 1, 0], 3) == [0, 1, 2]
    assert fair_select([1, 1, 0], 10) == [0, 1, 2]


def test_random_and_dispatch() -> None:
    assert random_select(5, 3) == [0, 1, 2]
    assert random_select(2, 3) == [0, 1]
    assert select("none", [0, 0, 1], None) == [0, 1, 2]
    assert select("random", [0, 0, 1], 2) == [0, 1]
    assert select("fair", [0, 0, 1], 2) == [0, 2]
    with pytest.raises(ValueError, match="fair, random, none"):
        select("balanced", [0], 1)


def test_sft_input_is_the_zero_shot_sft_prompt() -> None:
    assert sft_input("What is 1+1?") == (
        "System:\nYou're an expert Python programmer and mathematician. Help the user to solve this problem "
        "using code when necessary. Make sure to put the answer (and only answer) inside \\boxed{}."
        "\n\nUser:\nWhat is 1+1?\n\nAssistant:\n"
    )


def test_sft_input_matches_the_prompt_package() -> None:
    """The SFT input must be what evaluation later sends to the fine-tuned model."""
    from tasks import prompts  # a broken module must fail here, not turn the test into a skip

    question = "Find $x$ if $2x = 4$.\nShow work."
    assert sft_input(question) == prompts.render_prompt("openmathinstruct/sft", {"question": question})
