"""Decide the sympy step without sympy when its verdict is certain.

:class:`tasks.grading.symbolic.SympyBackend` parses each side (``parse_expr``, else ``parse_latex``)
and calls a pair equal when ``simplify(a - b) == 0`` or ``isclose(N(a), N(b), rel_tol)``; ``N`` of an
expression with a free symbol cannot become a float, so that comparison then fails. For the
arithmetic most answers are made of (numbers, ``\\frac``, ``\\sqrt``, ``+ - * /``, integer powers,
single-letter variables) that verdict follows from the *values* of the two sides:

* both sides are numbers: True iff they are within ``tolerance`` of each other (equal numbers
  always are, and ``simplify`` never makes unequal numbers equal);
* a side that varies with its variables: never close, since ``N`` keeps the variable; equal only
  when ``a - b`` is identically zero -- so a point where ``a - b`` is non-zero proves False;
* the two sides are the same LaTeX token for token (``\\dfrac`` vs ``\\frac``): sympy builds the
  same expression for both, ``a - b`` is 0, True.

This module computes those values itself -- exactly with :class:`~fractions.Fraction` where the
expression is rational, otherwise in floating point with a bound on the rounding error -- and
answers only when the verdict holds for every value within the bound, with a margin around the
tolerance. Anything else (an unsupported token, a value too close to the tolerance or to zero, a
variable-free side that is not a number) gives ``None`` and sympy decides.

Which parser sympy uses, and so what the text means, is mirrored (sympy 1.14):

* text with a backslash, or with a number written against a name (``5x``), is never valid
  Python, so ``parse_expr`` fails and ``parse_latex`` reads it. Its grammar is
  ``sympy/parsing/latex/LaTeX.g4``: implicit products bind tighter than ``*`` and ``/``, ``\\pi`` is
  a plain symbol, an ``x`` between two constants means "times" (not accepted here), ``d`` before
  a letter is a differential and a letter before ``(`` a function (neither accepted);
* other text is read only when it is digits, ``.``, ``+ - * /`` and parentheses, which
  ``parse_expr`` evaluates as Python arithmetic on sympy numbers (``^`` is Python's XOR there, so
  it is not accepted), or such arithmetic separated by commas, which becomes a Python tuple: then
  ``a - b`` and ``N`` raise and the step says False.

``tests/unit/test_grading_arithmetic.py`` checks the decided verdicts against sympy's own.
"""
from __future__ import annotations

import keyword
import math
import random
import re
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple, Union

MAX_TEXT_CHARS = 200
MAX_DIGITS = 40
MAX_EXPONENT = 64
MAX_EXACT_BITS = 20_000
MAX_MAGNITUDE = 1e300
MIN_MAGNITUDE = 1e-300
# Relative error a float value may carry and still be trusted, and the relative margin kept
# around the tolerance (sympy's own rounding is far below both).
MAX_RELATIVE_ERROR = 1e-9
TOLERANCE_MARGIN = 1e-4
ABSOLUTE_MARGIN = 1e-12
_EPS = 4 * 2.0**-52  # a generous bound on one float operation's relative rounding error
_POINTS = 2  # evaluations with different variable values (to see that a side varies)

_PLAIN_CHARS = frozenset("0123456789.+-*/()")
# A number token that starts at a token boundary, no leading zero, then a name that does not start
# with e/E (exponent) or j/J (imaginary).
_NUMBER_THEN_NAME = re.compile(
    r"(?<![A-Za-z0-9_.])[1-9][0-9]*(?:\.[0-9]+)?(?P<name>[A-DF-IK-Za-df-ik-z][A-Za-z0-9_]*)")
TUPLE = ("tuple",)
_LATEX_COMMANDS = {"frac": "frac", "dfrac": "frac", "tfrac": "frac", "sqrt": "sqrt",
                   "cdot": "*", "times": "*", "pi": "pi"}
_LATEX_PUNCTUATION = frozenset("+-*/(){}^")


class Unsupported(Exception):
    """The text is outside what this module mirrors exactly; sympy must decide."""


class Approx(NamedTuple):
    """A float ``value`` whose distance to the exact value is at most ``error``."""

    value: float
    error: float


Value = Union[Fraction, Approx]


# ---- reading text --------------------------------------------------------------------------------

def _latex_tokens(text: str) -> list[str]:
    """sympy's LaTeX lexer on the subset we accept: single digits, letters, known commands."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            j = i + 1
            while j < len(text) and text[j].isascii() and text[j].isalpha():
                j += 1
            name = text[i + 1 : j]  # the lexer takes the longest run of letters: "\pix" is one symbol
            if name not in _LATEX_COMMANDS:
                raise Unsupported(name)
            tokens.append("\\" + _LATEX_COMMANDS[name])
            i = j
        elif ch.isascii() and (ch.isdigit() or ch in _LATEX_PUNCTUATION or ch == "."):
            tokens.append(ch)
            i += 1
        elif ch.isascii() and ch.isalpha() and ch != "d":  # "d" + letter is a differential
            tokens.append(ch)
            i += 1
        else:
            raise Unsupported(ch)
    return tokens


def _plain_tokens(text: str) -> list[str]:
    if not set(text) <= _PLAIN_CHARS:
        raise Unsupported(text)
    return list(text)


class _Parser:
    """Recursive descent over single-character tokens; builds a tuple tree.

    Nodes: ``("num", Fraction, is_float)``, ``("sym", name)``, ``("add"|"sub"|"mul"|"div", a, b)``,
    ``("neg", a)``, ``("pow", a, n)``, ``("sqrt", a)``.
    """

    def __init__(self, tokens: list[str], latex: bool):
        self.tokens = tokens
        self.latex = latex
        self.pos = 0

    def peek(self, offset: int = 0) -> str | None:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unsupported(f"expected {expected!r} at {self.pos}")
        self.pos += 1
        return token

    def parse(self):
        tree = self.expr()
        if self.pos != len(self.tokens):
            raise Unsupported(f"trailing text at {self.pos}")
        return tree

    def expr(self):
        node = self.product()
        while self.peek() in ("+", "-"):
            op = "add" if self.take() == "+" else "sub"
            node = (op, node, self.product())
        return node

    def product(self):
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            if not self.latex and self.peek() in ("*", "/"):
                raise Unsupported("** or //")
            node = ("div" if op == "/" else "mul", node, self.unary())
        return node

    def unary(self):
        if self.peek() in ("+", "-"):
            sign = self.take()
            inner = self.unary()
            return ("neg", inner) if sign == "-" else inner
        if not self.latex:
            return self.plain_atom()
        # LaTeX: one or more factors written side by side multiply (sympy's "postfix+").
        factors = [self.power()]
        while self.peek() is not None and self.starts_factor(self.peek()):
            factors.append(self.power())
        for i in range(1, len(factors) - 1):
            # sympy reads an "x" between two factors without variables as "times" ("2x3" is 6)
            if _mentions_x(factors[i]) and not (_has_symbols(factors[i - 1]) or _has_symbols(factors[i + 1])):
                raise Unsupported("x between constant factors")
        node = factors[-1]
        for factor in reversed(factors[:-1]):
            node = ("mul", factor, node)
        return node

    @staticmethod
    def starts_factor(token: str) -> bool:
        return token.isdigit() or token.isalpha() or token in ("(", "{", "\\frac", "\\sqrt", "\\pi")

    def power(self):
        node = self.factor()
        while self.peek() == "^":
            self.take()
            if self.peek() == "{":
                self.take()
                exponent = self.expr()
                self.take("}")
            elif self.peek() is not None and self.peek().isdigit():
                exponent = self.number()
            else:
                raise Unsupported("exponent")
            node = ("pow", node, exponent)
        return node

    def factor(self):
        token = self.peek()
        if token is None:
            raise Unsupported("end of text")
        if token.isdigit():
            return self.number()
        if token in ("(", "{"):
            self.take()
            inner = self.expr()
            self.take(")" if token == "(" else "}")
            return inner
        if token == "\\frac":
            self.take()
            return ("div", self.frac_part(), self.frac_part())
        if token == "\\sqrt":
            self.take()
            self.take("{")  # "\sqrt[n]{...}" is not accepted
            inner = self.expr()
            self.take("}")
            return ("sqrt", inner)
        if token.isalpha() or token == "\\pi":
            self.take()
            if self.peek() == "(":  # "f(x)" is a function call in sympy's grammar
                raise Unsupported("function call")
            return ("sym", token.lstrip("\\"))
        raise Unsupported(token)

    def frac_part(self):
        if self.peek() == "{":
            self.take()
            inner = self.expr()
            self.take("}")
            return inner
        token = self.take()
        if not token.isdigit():  # "\frac12": one digit each
            raise Unsupported("\\frac argument")
        return ("num", Fraction(int(token)), False)

    def number(self):
        digits = []
        while self.peek() is not None and self.peek().isdigit():
            digits.append(self.take())
        text = "".join(digits)
        is_float = False
        if self.peek() == ".":
            self.take()
            decimals = []
            while self.peek() is not None and self.peek().isdigit():
                decimals.append(self.take())
            if not decimals:
                raise Unsupported("number ending in '.'")
            text += "." + "".join(decimals)
            is_float = True
        if len(text) > MAX_DIGITS:
            raise Unsupported("long number")
        if not self.latex and len(digits) > 1 and digits[0] == "0":
            raise Unsupported("leading zero")  # not valid Python: parse_expr fails, parse_latex reads it
        return ("num", Fraction(text), is_float)

    def plain_atom(self):
        token = self.peek()
        if token == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        if token is not None and token.isdigit():
            return self.number()
        raise Unsupported(f"token {token!r}")


def _mentions_x(tree) -> bool:
    return tree == ("sym", "x") or (tree[0] != "num" and any(
        _mentions_x(t) for t in tree[1:] if isinstance(t, tuple)))


def _never_python(text: str) -> bool:
    """True when ``parse_expr`` must fail on ``text``: a number written against a name (``5x``).

    Python has no expression in which a number token is followed by a name token other than a
    keyword (``2 if ...``, ``2 or 3``); ``0x``/``0o``/``0b`` and ``e``/``j`` could continue the
    number itself, so those are not counted.
    """
    return any(not keyword.iskeyword(found.group("name")) for found in _NUMBER_THEN_NAME.finditer(text))


def _plain_tuple(text: str) -> bool:
    """``1,-3`` or ``(2,4)``: Python arithmetic separated by commas, which ``parse_expr`` makes a tuple."""
    inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
    parts = inner.split(",")
    if len(parts) < 2:
        return False
    try:
        for part in parts:
            _Parser(_plain_tokens(part), latex=False).parse()
    except (Unsupported, RecursionError):
        return False
    return True


@lru_cache(maxsize=8192)
def parse(text: str):
    """``(tree, latex tokens or None)``, or ``None`` outside the mirrored subset (cached both ways).

    A Python tuple comes back as ``(TUPLE, None)``.
    """
    if len(text) > MAX_TEXT_CHARS or not text:
        return None
    try:
        if "\\" in text or _never_python(text):  # parse_expr fails; parse_latex reads it
            tokens = _latex_tokens(text)
            return _Parser(tokens, latex=True).parse(), tuple(tokens)
        if "," in text:
            return (TUPLE, None) if _plain_tuple(text) else None
        return _Parser(_plain_tokens(text), latex=False).parse(), None
    except (Unsupported, RecursionError):
        return None


# ---- values --------------------------------------------------------------------------------------

def _approx(x: Value) -> Approx:
    if isinstance(x, Approx):
        return x
    value = float(x)
    return Approx(value, abs(value) * _EPS)


def _checked(result: Approx) -> Approx:
    if not math.isfinite(result.value) or abs(result.value) > MAX_MAGNITUDE or result.error > MAX_MAGNITUDE:
        raise Unsupported("magnitude")
    return result


def _add(a: Value, b: Value) -> Value:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a + b
    x, y = _approx(a), _approx(b)
    value = x.value + y.value
    return _checked(Approx(value, x.error + y.error + abs(value) * _EPS))


def _mul(a: Value, b: Value) -> Value:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a * b
    x, y = _approx(a), _approx(b)
    value = x.value * y.value
    error = abs(x.value) * y.error + abs(y.value) * x.error + x.error * y.error + abs(value) * _EPS
    return _checked(Approx(value, error))


def _div(a: Value, b: Value) -> Value:
    if isinstance(b, Fraction) and b == 0:
        raise Unsupported("division by zero")
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a / b
    x, y = _approx(a), _approx(b)
    if abs(y.value) <= 2 * y.error:
        raise Unsupported("division by a value near zero")
    value = x.value / y.value
    error = (abs(x.value) * y.error + abs(y.value) * x.error) / (abs(y.value) * (abs(y.value) - y.error))
    return _checked(Approx(value, error + abs(value) * _EPS))


def _sqrt(a: Value) -> Value:
    if isinstance(a, Fraction):
        if a < 0:
            raise Unsupported("square root of a negative number")
        num, den = math.isqrt(a.numerator), math.isqrt(a.denominator)
        if num * num == a.numerator and den * den == a.denominator:
            return Fraction(num, den)
    x = _approx(a)
    if x.value - x.error <= 0:
        raise Unsupported("square root of a value that may be negative")
    value = math.sqrt(x.value)
    return _checked(Approx(value, x.error / value + value * _EPS))


def _pow(base: Value, exponent: Value) -> Value:
    if not isinstance(exponent, Fraction) or exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise Unsupported("exponent")
    n = int(exponent)
    if isinstance(base, Fraction):
        if base == 0 and n <= 0:
            raise Unsupported("0 to a power <= 0")
        if (base.numerator.bit_length() + base.denominator.bit_length()) * abs(n) > MAX_EXACT_BITS:
            raise Unsupported("power too large")
        return base**n
    if n == 0:
        raise Unsupported("float to the power 0")
    result: Value = Fraction(1)
    for _ in range(abs(n)):
        result = _mul(result, base)
    return _div(Fraction(1), result) if n < 0 else result


def _symbol_value(name: str, point: int) -> Fraction:
    """A fixed rational in [2, 5) per (variable, point): deterministic, unlikely to be special."""
    rng = random.Random(f"{name}/{point}")
    return Fraction(2) + Fraction(rng.randrange(3 * 10**6), 10**6 + 3)


def evaluate(tree, point: int) -> Value:
    kind = tree[0]
    if kind == "num":
        return _approx(tree[1]) if tree[2] else tree[1]
    if kind == "sym":
        return _symbol_value(tree[1], point)
    if kind == "neg":
        return _mul(Fraction(-1), evaluate(tree[1], point))
    if kind == "sqrt":
        return _sqrt(evaluate(tree[1], point))
    a, b = evaluate(tree[1], point), evaluate(tree[2], point)
    if kind == "add":
        return _add(a, b)
    if kind == "sub":
        return _add(a, _mul(Fraction(-1), b))
    if kind == "mul":
        return _mul(a, b)
    if kind == "div":
        return _div(a, b)
    if kind == "pow":
        return _pow(a, b)
    raise AssertionError(kind)


def _has_symbols(tree) -> bool:
    if tree[0] == "sym":
        return True
    return tree[0] != "num" and any(_has_symbols(t) for t in tree[1:] if isinstance(t, tuple))


# ---- the verdict ---------------------------------------------------------------------------------

def _trusted(x: Value) -> Value:
    """``x`` if it is safely inside float range with a small relative error, else Unsupported."""
    if isinstance(x, Fraction):
        if x != 0 and not MIN_MAGNITUDE < abs(x) < MAX_MAGNITUDE:
            raise Unsupported("magnitude")
        return x
    if not MIN_MAGNITUDE < abs(x.value) < MAX_MAGNITUDE or x.error > MAX_RELATIVE_ERROR * abs(x.value):
        raise Unsupported("value not known well enough")
    return x


def _surely_different(x: Value, y: Value) -> bool:
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x != y
    x, y = _approx(x), _approx(y)
    return abs(x.value - y.value) > 2 * (x.error + y.error)


def _numbers_close(a: Value, b: Value, tolerance: float) -> bool:
    """``math.isclose(a, b, rel_tol=tolerance)`` for every value within the error bounds, or raise."""
    a, b = _trusted(a), _trusted(b)
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        if a == b:
            return True
        if a == 0 or b == 0:
            return False
        relative = abs(a - b) / max(abs(a), abs(b))
    else:
        if a == 0 or b == 0:  # the other is an Approx, trusted, so certainly not zero
            return False
        x, y = _approx(a), _approx(b)
        relative = Fraction(abs(x.value - y.value)) / Fraction(max(abs(x.value), abs(y.value)))
    exact = isinstance(a, Fraction) and isinstance(b, Fraction)
    slack = tolerance * TOLERANCE_MARGIN + ABSOLUTE_MARGIN + (0 if exact else 10 * MAX_RELATIVE_ERROR)
    if relative < tolerance - slack:
        return True
    if relative > tolerance + slack:
        return False
    raise Unsupported("too close to the tolerance")


def certain_verdict(prediction: str, reference: str, tolerance: float) -> bool | None:
    """The sympy step's verdict on this pair when it is certain without sympy, else ``None``."""
    parsed_a, parsed_b = parse(prediction), parse(reference)
    if parsed_a is None or parsed_b is None:
        return None
    (tree_a, tokens_a), (tree_b, tokens_b) = parsed_a, parsed_b
    if tree_a == TUPLE or tree_b == TUPLE:
        # ``a - b`` with a tuple raises, and so does ``N`` of a tuple: sympy's step says False.
        return False
    try:
        symbolic_a, symbolic_b = _has_symbols(tree_a), _has_symbols(tree_b)
        values_a = [evaluate(tree_a, p) for p in range(_POINTS if symbolic_a else 1)]
        values_b = [evaluate(tree_b, p) for p in range(_POINTS if symbolic_b else 1)]
        if not (symbolic_a or symbolic_b):
            return _numbers_close(values_a[0], values_b[0], tolerance)
        if tokens_a is not None and tokens_a == tokens_b:
            return True  # sympy parses both to the same expression
        varies = (symbolic_a and _surely_different(values_a[0], values_a[1])) or (
            symbolic_b and _surely_different(values_b[0], values_b[1]))
        if varies and _surely_different(values_a[0], values_b[0]):
            return False
        return None
    except (Unsupported, RecursionError, ZeroDivisionError, OverflowError, ValueError):
        return None
