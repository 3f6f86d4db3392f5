"""Is a predicted answer equal to the expected one? Semantics of NeMo-Skills main@9b7f9d57
(docs/recipes/openmath.md §6.2).

The decision runs in the order upstream uses, because the order *is* the semantics (a pair of
numbers that are not close is False even when sympy would call them equal):

1. strip ``$``/``%`` decoration, then :func:`normalize_answer_string` on both sides;
2. cut the prediction to 1000 characters;
3. string equality (case- and surrounding-space-insensitive, or after removing all spaces);
4. numeric check: both parse as floats -> True iff the prediction is within ``tolerance``
   (relative) of the reference, or of reference/100 or reference*100 with ``include_percentage``;
   not close -> **False**, no symbolic fallback;
5. an empty prediction -> False;
6. structure: sympy ``Interval`` spellings in the prediction become brackets; answers equal once
   brackets/braces/parentheses are dropped -> True; same-bracket tuples compared element-wise;
   comma lists of equal length compared element-wise (the result decides); ``Point(...)`` vs a
   tuple;
7. symbolic equality through ``backend.equal`` (sympy, see :mod:`tasks.grading.symbolic`).

Upstream also has a ``Matrix(...)`` vs ``\\begin{pmatrix}`` branch, but it feeds sympy objects back
into the string normaliser, raises, and swallows the error, so it never decides anything; it is
left out and such pairs go to step 7 exactly as upstream.

Steps 1-6 are pure string/float work. :func:`quick_verdict` runs them with a backend that
refuses step 7, so callers can grade most pairs in-process and send only the rest to sympy.
``None`` as the prediction (no ``\\boxed`` answer) is never correct.
"""
from __future__ import annotations

import math
import re
from typing import Any, Protocol

from tasks.grading.normalize import normalize_answer_string, strip_number_decoration

MAX_PREDICTION_CHARS = 1000

_INTERVALS = (
    (re.compile(r"^Interval\((.*)\)$"), "[{}]"),
    (re.compile(r"^Interval\.Ropen\((.*)\)$"), "[{})"),
    (re.compile(r"^Interval\.Lopen\((.*)\)$"), "({}]"),
    (re.compile(r"^Interval\.open\((.*)\)$"), "({})"),
)


class SymbolicBackend(Protocol):
    def equal(self, prediction: str, reference: str, tolerance: float) -> bool: ...


class NeedsSymbolic(Exception):
    """Raised by the fast backend: the pair can only be decided by sympy."""


class _RefuseSymbolic:
    def equal(self, prediction: str, reference: str, tolerance: float) -> bool:
        raise NeedsSymbolic


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _as_number(text: str) -> float | None:
    """Upstream's ``is_digit``: ``{,}`` separators removed if present, else every comma."""
    cleaned = text.replace("{,}", "") if "{,}" in text else text.replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _interval_to_brackets(text: str) -> str:
    for pattern, template in _INTERVALS:
        found = pattern.match(text)
        if found:
            return template.format(found.group(1))
    return text


def math_equal(
    prediction: Any,
    reference: Any,
    *,
    include_percentage: bool = True,
    tolerance: float = 1e-4,
    backend: SymbolicBackend | None = None,
) -> bool:
    """Grade one pair in-process (see the module docstring for the decision order).

    ``backend`` decides step 7; the default imports sympy. This function has no time limit of its
    own -- use :class:`tasks.grading.checker.MathChecker` for untrusted input.
    """
    if backend is None:
        from tasks.grading.symbolic import SympyBackend

        backend = SympyBackend()
    pred = _as_text(prediction)
    ref = _as_text(reference)
    if pred is None or ref is None:
        return False
    return _equal(pred, ref, include_percentage, tolerance, backend)


def quick_verdict(prediction: Any, reference: Any, *, include_percentage: bool = True,
                  tolerance: float = 1e-4) -> bool | None:
    """The verdict of :func:`math_equal` if it needs no sympy, else ``None``."""
    try:
        return math_equal(prediction, reference, include_percentage=include_percentage,
                          tolerance=tolerance, backend=_RefuseSymbolic())
    except NeedsSymbolic:
        return None


def _equal(pred: str, ref: str, include_percentage: bool, tolerance: float, backend: SymbolicBackend) -> bool:
    pred = normalize_answer_string(strip_number_decoration(pred))
    ref = normalize_answer_string(strip_number_decoration(ref))
    pred = pred[:MAX_PREDICTION_CHARS]

    if pred.strip().lower() == ref.strip().lower() or pred.replace(" ", "") == ref.replace(" ", ""):
        return True

    pred_num, ref_num = _as_number(pred), _as_number(ref)
    if pred_num is not None and ref_num is not None:
        targets = (ref_num / 100, ref_num, ref_num * 100) if include_percentage else (ref_num,)
        return any(math.isclose(t, pred_num, rel_tol=tolerance) for t in targets)

    if not pred:
        return False

    ref = ref.strip()
    pred = _interval_to_brackets(pred.strip())

    if _same_without_brackets(pred, ref):
        return True

    def recurse(a: str, b: str) -> bool:
        return _equal(a, b, include_percentage, tolerance, backend)

    if pred and ref and pred[0] in "([" and pred[-1] in ")]" and pred[0] == ref[0] and pred[-1] == ref[-1]:
        pred_parts, ref_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and all(map(recurse, pred_parts, ref_parts)):
            return True

    if "," in pred and "," in ref:
        pred_parts = [p.strip() for p in pred.split(",")]
        ref_parts = [p.strip() for p in ref.split(",")]
        if len(pred_parts) == len(ref_parts):
            return all(map(recurse, pred_parts, ref_parts))

    if pred.startswith("Point") and ref[:1] == "(" and ref[-1:] == ")":
        pred_parts = pred[pred.find("(") + 1 : -1].split(",")
        ref_parts = ref[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and all(map(recurse, pred_parts, ref_parts)):
            return True

    return backend.equal(pred, ref, tolerance)


def _same_without_brackets(pred: str, ref: str) -> bool:
    """Upstream's loose comparison: outer brackets dropped when compatible, then all of {}()."""
    pred_s, ref_s = pred, ref
    if (pred.startswith("[") and pred.endswith("]") and not ref.startswith("(")) or (
        pred.startswith("(") and pred.endswith(")") and not ref.startswith("[")
    ):
        pred_s, ref_s = pred_s.strip("[]()"), ref_s.strip("[]()")
    for ch in "{}()":
        pred_s, ref_s = pred_s.replace(ch, ""), ref_s.replace(ch, "")
    return pred_s == ref_s
