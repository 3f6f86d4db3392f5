"""Decide pass/fail of one test from what the candidate produced, as the APPS reference does.

Runs in the trusted evaluator, not in the sandbox: the candidate never sees expected outputs.
The order of the fallbacks matters (an early lenient check can accept what a later one would
not), so it follows docs/recipes/apps_sft.md §3.4 step 6 for standard-input problems and step 5 for call-based ones.
"""
from __future__ import annotations

from fractions import Fraction
from decimal import Decimal
from typing import Any


class Opaque:
    """A returned object we could not encode; equal to nothing, like a plain object against JSON data."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.text}>"


def decode_value(data: Any) -> Any:
    """Inverse of the driver's ``encode_value``; numpy arrays come back as numpy arrays."""
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$t" in data:
        return tuple(decode_value(v) for v in data["$t"])
    if "$d" in data:
        return {decode_value(k): decode_value(v) for k, v in data["$d"]}
    if "$s" in data:
        return {decode_value(v) for v in data["$s"]}
    if "$fs" in data:
        return frozenset(decode_value(v) for v in data["$fs"])
    if "$f" in data:
        return float(data["$f"])
    if "$frac" in data:
        return Fraction(*data["$frac"])
    if "$dec" in data:
        return Decimal(data["$dec"])
    if "$nd" in data:
        import numpy as np

        return np.array(decode_value(data["$nd"]), dtype=data.get("dtype") or None)
    if "$o" in data:
        return Opaque(data["$o"], data.get("repr", ""))
    raise ValueError(f"unknown value encoding {sorted(data)}")


def _int_keys(d: dict) -> dict:
    return {int(k): v for k, v in d.items()}


def normalise_expected_call(expected: Any) -> Any:
    """Undo JSON's string dict keys in an expected return value, where they look like ints."""
    try:
        if isinstance(expected, dict):
            expected = [_int_keys(expected)]
    except (ValueError, TypeError):
        pass
    try:
        if isinstance(expected[0], dict):
            expected = [_int_keys(expected[0])]
    except (ValueError, TypeError, IndexError, KeyError):
        pass
    return expected


def compare_call(output: Any, expected: Any) -> bool:
    """Call-based check: equal to the expected value, or to its first element, or (list of
    tuples) equal after turning the tuples into lists. Raises where the reference would raise
    (e.g. a numpy array's ambiguous truth value), which the caller records as an error."""
    expected = normalise_expected_call(expected)
    result = output == expected
    if isinstance(expected, list) and expected:
        result = result or (output == expected[0])
    try:
        if isinstance(output[0], tuple):
            result = result or ([list(x) for x in output] == expected[0])
    except Exception:
        pass
    return bool(result)


def _strip_compare(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def _as_floats(items: list) -> list[float]:
    return [float(x) for x in items]


def _allclose(a: list[float], b: list[float]) -> bool:
    # numpy.allclose(a, b) with its defaults: |a - b| <= atol + rtol * |b|; equal infinities are
    # close, NaN is never close (the comparisons below are False for NaN).
    return all(x == y or abs(x - y) <= 1e-8 + 1e-5 * abs(y) for x, y in zip(a, b))


def compare_stdout(lines: list[str], expected: Any) -> bool:
    """Standard-input check on the captured stdout lines, trying the reference's fallbacks in order.

    1. whole output vs expected, both stripped at the ends; then the same with every line stripped;
    2. lines equal to ``[expected]``;
    3. expected split into non-empty, stripped lines, compared to the lines; then again with empty
       output lines removed; then both sides as floats (same length, numpy-allclose tolerance);
    4. order-insensitive: the sets of per-line token sets are equal; then the same with every
       token rounded to 3 decimals.
    """
    if isinstance(expected, list):
        expected = "\n".join(expected)
    output = list(lines)
    if _strip_compare("\n".join(output), expected):
        return True
    if _strip_compare("\n".join(o.strip() for o in output), expected):
        return True
    if output == [expected]:
        return True
    exp_lines = [x.strip() for x in expected.split("\n") if x]
    if output == exp_lines:
        return True
    output = [o for o in output if o]
    result = output == exp_lines
    try:
        got, want = _as_floats(output), _as_floats(exp_lines)
        result = result or (len(got) == len(want) and _allclose(got, want))
    except ValueError:
        pass
    if result:
        return True
    exp_sets = [set(x.split()) for x in exp_lines]
    if output == exp_sets:  # only when both are empty
        return True
    out_sets = [set(t) for t in (o.split() for o in output) if t]
    result = {frozenset(s) for s in out_sets} == {frozenset(s) for s in exp_sets}
    try:
        result = result or (
            {frozenset(round(float(t), 3) for t in s) for s in out_sets}
            == {frozenset(round(float(t), 3) for t in s) for s in exp_sets})
    except (ValueError, OverflowError):
        pass
    return bool(result)
