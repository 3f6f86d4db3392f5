"""The sympy step of :func:`tasks.grading.math_equal.math_equal` (docs/recipes/openmath.md §6.2 step 8).

Most pairs that reach this step are plain arithmetic whose verdict
:func:`tasks.grading.arithmetic.certain_verdict` knows for certain without sympy (in a fraction of
a millisecond, where sympy's parsers and ``simplify`` take milliseconds); sympy sees the rest,
as :func:`sympy_equal`. Each side is parsed with ``parse_expr`` and, failing that,
``parse_latex`` (which needs ``antlr4-python3-runtime==4.11.0``); a side that parses with neither
stays a string, which makes the comparison fail. The pair is equal when ``simplify(a - b) == 0``
or the numeric values are within ``tolerance`` (relative).

Safety: ``parse_expr`` (and ``sympify``, which sympy calls when an expression meets a string)
*evaluate Python*. Upstream ran it inside a sandbox container; we run it
in worker processes on the grading host, so text that could reach anything but arithmetic is
never given to it (quotes, dunders, attribute access, ``lambda``, and names of Python builtins or
of sympy helpers that evaluate strings, unless on a short allow-list of math functions). Such
text still gets ``parse_latex``, which does not evaluate code. Time and memory are bounded by
:mod:`tasks.grading.checker`, not here: sympy can hang in C code where no signal reaches it.
"""
from __future__ import annotations

import builtins
import math
import re
from functools import lru_cache

from tasks.grading.arithmetic import certain_verdict

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ATTRIBUTE = re.compile(r"\.\s*[A-Za-z_]")
_ALLOWED_NAMES = frozenset(
    """sqrt cbrt root exp log ln sin cos tan cot sec csc asin acos atan acot asec acsc sinh cosh
    tanh asinh acosh atanh pi oo zoo E I N O Q Abs abs Min Max min max pow round factorial
    binomial floor ceiling gcd lcm Rational Integer Float Matrix Interval Point Point2D Union
    FiniteSet EmptySet Eq sign re im conjugate arg nan Sum Product beta gamma zeta""".split()
)


@lru_cache(maxsize=1)
def _denied_names() -> frozenset[str]:
    import sympy

    names = set(dir(builtins)) | set(dir(sympy))
    return frozenset(names - _ALLOWED_NAMES)


def safe_for_parse_expr(text: str) -> bool:
    """True when ``text`` can only reach arithmetic if evaluated by ``parse_expr``."""
    if "__" in text or "'" in text or '"' in text or "lambda" in text or _ATTRIBUTE.search(text):
        return False
    denied = _denied_names()
    return not any(name in denied for name in _IDENTIFIER.findall(text) if len(name) > 1 or name == "S")


@lru_cache(maxsize=65536)
def parse_answer(text: str):
    """Parse with ``parse_expr`` then ``parse_latex``; the text itself when neither works.

    Cached because expected answers and popular predictions repeat across samples.
    """
    from sympy.parsing.latex import parse_latex
    from sympy.parsing.sympy_parser import parse_expr

    if safe_for_parse_expr(text):
        try:
            return parse_expr(text)
        except Exception:
            pass
    try:
        return parse_latex(text)
    except Exception:
        return text


def warm_up() -> None:
    """Import sympy and both parsers and run each once (about a second, paid at worker start)."""
    sympy_equal("\\frac{1}{2}", "1/2", 1e-4)
    parse_answer.cache_clear()


class SympyBackend:
    """Symbolic equality with sympy; call it only under a time limit (see module doc)."""

    def equal(self, prediction: str, reference: str, tolerance: float) -> bool:
        verdict = certain_verdict(prediction, reference, tolerance)
        return sympy_equal(prediction, reference, tolerance) if verdict is None else verdict


def sympy_equal(prediction: str, reference: str, tolerance: float) -> bool:
    """The verdict as sympy computes it (what :func:`certain_verdict` answers for, when it can)."""
    import sympy

    a, b = parse_answer(prediction), parse_answer(reference)
    if isinstance(a, str) or isinstance(b, str):
        # Upstream goes on and lets sympy coerce the raw string (``a - b`` calls sympify, which
        # evaluates it as Python). That can run hostile code, and a string that neither parser
        # accepted does not sympify either, so the verdict is False without evaluating it.
        return False
    try:
        if sympy.simplify(a - b) == 0:
            return True
    except Exception:
        pass
    try:
        return math.isclose(sympy.N(a), sympy.N(b), rel_tol=tolerance)
    except Exception:
        return False
