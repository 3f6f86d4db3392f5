import pytest

from tasks.grading.answer import extract_all_boxed, extract_boxed


@pytest.mark.parametrize("text, expected", [
    ("so $\\boxed{18}$ dollars", "18"),
    ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{{a}{b}}", "{a}{b}"),
    ("\\boxed{}", ""),
    ("no box here", None),
    ("", None),
    (None, None),
    ("\\boxed{\\frac{1}{2}", None),
    ("\\boxed 5", None),
    ("\\fbox{5}", None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_all_boxed_keeps_order_and_stops_at_unbalanced():
    assert extract_all_boxed("\\boxed{1}, \\boxed{x^{2}} and \\boxed{3") == ["1", "x^{2}"]
