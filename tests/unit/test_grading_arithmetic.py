"""The sympy-free fast path of the sympy step must answer exactly as sympy does, or not at all.

Every decided verdict is checked against :func:`tasks.grading.symbolic.sympy_equal` (the sympy
computation itself), on hand-picked pairs for each rule and quirk, and on seeded random
expressions of the supported grammar.
"""
import random

import pytest

from tasks.grading.arithmetic import certain_verdict, parse
from tasks.grading.symbolic import sympy_equal

TOL = 1e-4


@pytest.mark.parametrize("pred, ref, verdict", [
    ("\\frac{1}{2}", "0.5", True),
    ("\\dfrac{3}{4}", "\\frac{3}{4}", True),
    ("\\tfrac{3}{4}", "0.75", True),
    ("\\frac12", "\\frac{1}{2}", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\sqrt{3}", "1.7320508", True),
    ("\\frac{1}{3}", "0.33333333", True),
    ("\\frac{1}{3}", "0.5", False),
    ("\\frac{2}{3}+1", "\\frac{2}{3}", False),
    ("2500+1", "2500", False),
    ("2*(\\frac{3}{7})", "\\frac{6}{7}", True),
    ("\\sqrt{4}-2", "0", True),
    ("1-1", "0", True),
    ("0", "\\frac{1}{3}", False),
    ("\\frac{20001}{2}", "10000", True),  # within the relative tolerance
    ("10002", "10000", False),
    ("12\\pi", "87", False),            # \pi is a plain symbol in sympy's LaTeX grammar
    ("\\dfrac{3\\pi}{4}", "\\frac{3\\pi}{4}", True),
    ("6t-5+1", "6t-5", False),          # "6t" is not Python: sympy reads it as LaTeX
    ("x^3-3x^2+9x-9", "16", False),
    ("4x^2(8x^2-x+5)", "90", False),
    ("(15,-29)", "20", False),          # a Python tuple: sympy's step can only say False
    ("1,-3", "\\frac{1}{2}", False),
    ("2x", "\\frac{4x}{2}", None),      # equal but different: left to sympy
])
def test_decided_pairs_agree_with_sympy(pred, ref, verdict):
    assert certain_verdict(pred, ref, TOL) is verdict
    if verdict is not None:
        assert sympy_equal(pred, ref, TOL) is verdict


@pytest.mark.parametrize("text", [
    "2^3",             # plain text goes to parse_expr, where ^ is XOR
    "05",              # not Python; parse_latex reads it
    "2x3",             # sympy's LaTeX reader drops an "x" between constants
    "\\frac{1}{0}",
    "f(x)+1",          # a function call in sympy's grammar
    "4x(8x^2-x+5)",    # "x(" too
    "dx",              # a differential
    "\\sqrt[3]{2}",
    "\\sqrt{-2}",
    "\\infty",
    "(1,2)+1",
    "1.",
    "x+2",             # plain text that parse_expr reads: not mirrored
    "2^{1000}",
    "9**9",
])
def test_unsupported_text_is_left_to_sympy(text):
    assert certain_verdict(text, "1", TOL) is None


def test_values_near_the_tolerance_are_left_to_sympy():
    assert certain_verdict("1.0001", "\\frac{1}{1}", TOL) is None


def test_tolerance_is_respected_in_both_directions():
    for tol in (1e-2, 1e-6, 0.0):
        for pred in ("\\frac{101}{100}", "\\frac{1000001}{1000000}", "\\sqrt{2}"):
            verdict = certain_verdict(pred, "1", tol)
            if verdict is not None:
                assert verdict is sympy_equal(pred, "1", tol), (pred, tol)


def _random_expr(rng: random.Random, depth: int, symbols: bool) -> str:
    if depth == 0 or rng.random() < 0.3:
        choice = rng.random()
        if symbols and choice < 0.2:
            return rng.choice(["x", "y", "\\pi"])
        if choice < 0.5:
            return str(rng.randint(1, 30))
        if choice < 0.65:
            return f"{rng.randint(0, 9)}.{rng.randint(1, 99)}"
        if choice < 0.85:
            return f"\\frac{{{rng.randint(1, 20)}}}{{{rng.randint(1, 20)}}}"
        return f"\\sqrt{{{rng.randint(1, 30)}}}"
    a, b = _random_expr(rng, depth - 1, symbols), _random_expr(rng, depth - 1, symbols)
    op = rng.choice(["+", "-", "\\cdot", "/", "frac", "implicit", "pow", "paren"])
    if op == "frac":
        return f"\\frac{{{a}}}{{{b}}}"
    if op == "implicit":
        return f"{rng.randint(2, 9)}({a})"
    if op == "pow":
        return f"({a})^{{{rng.randint(0, 3)}}}"
    if op == "paren":
        return f"({a})+{b}"
    return f"{a}{op}{b}"


def _perturb(rng: random.Random, text: str) -> str:
    return rng.choice([
        text.replace("\\frac", "\\dfrac"),
        f"{text}+1",
        f"2({text})",
        f"({text})\\cdot\\frac{{10000}}{{10001}}",
        f"\\frac{{{text}}}{{2}}",
    ])


@pytest.mark.parametrize("seed", range(4))
def test_random_expressions_agree_with_sympy(seed):
    rng = random.Random(seed)
    decided = 0
    for _ in range(30):
        symbols = rng.random() < 0.4
        a = _random_expr(rng, 3, symbols)
        b = _perturb(rng, a) if rng.random() < 0.7 else _random_expr(rng, 3, symbols)
        verdict = certain_verdict(a, b, TOL)
        if verdict is None:
            continue
        decided += 1
        assert verdict is sympy_equal(a, b, TOL), (a, b)
    assert decided >= 10  # the grammar above is mostly inside what the fast path mirrors


def test_parse_is_cached_and_rejects_long_text():
    assert parse("1" * 500) is None
    assert parse("\\frac{1}{2}") is parse("\\frac{1}{2}")
