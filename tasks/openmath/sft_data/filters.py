"""Per-solution filters, trimming and the per-question text filter of NeMo-Skills v0.1.1
(docs/recipes/openmath.md §9.1).

These are pure string functions so they can be tested on hand-made solutions. The boxed pattern is
deliberately the same naive one v0.1.1 used, ``\\boxed{`` up to the first ``}``: it does not balance
braces, so ``\\boxed{\\frac{1}{2}}`` counts as one match and a nested second box is still a second
match. Reproducing the recipe means reproducing which solutions it dropped, not fixing its regex.
"""
from __future__ import annotations

import re
from typing import Callable

CODE_START = "<llm-code>"
CODE_END = "</llm-code>"
OUTPUT_START = "<llm-code-output>"
OUTPUT_END = "</llm-code-output>"

BOXED = re.compile(r"\\boxed\{([^}]*)\}")

TEXT_FILTER_TYPES = ("any_code", "all", "majority_code", "majority_text", "none")
DEFAULT_FILTERS = ("multi_boxed", "broken_code")


def is_multi_boxed(solution: str) -> bool:
    """True if the solution has more than one ``\\boxed{...}`` match (the answer is ambiguous)."""
    return len(BOXED.findall(solution)) > 1


def _positions(text: str, tag: str) -> list[int]:
    out, start = [], text.find(tag)
    while start != -1:
        out.append(start)
        start = text.find(tag, start + 1)
    return out


def is_broken_code(solution: str) -> bool:
    """True if code and code-output tags are unbalanced or any block is out of order.

    Each block must read ``<llm-code>`` < ``</llm-code>`` < ``<llm-code-output>`` < ``</llm-code-output>``;
    the k-th tag of each kind belongs to block k. None of the four tags is a substring of another,
    so plain ``find`` counts them exactly.
    """
    starts = _positions(solution, CODE_START)
    ends = _positions(solution, CODE_END)
    out_starts = _positions(solution, OUTPUT_START)
    out_ends = _positions(solution, OUTPUT_END)
    if not len(starts) == len(ends) == len(out_starts) == len(out_ends):
        return True
    return any(not (a < b < c < d) for a, b, c, d in zip(starts, ends, out_starts, out_ends))


def is_useless_code(solution: str) -> bool:
    """True if the first boxed answer comes before the first code block (the code was not needed)."""
    box = BOXED.search(solution)
    code = solution.find(CODE_START)
    if box is None or code == -1:
        return False
    return box.start() < code


FILTERS: dict[str, Callable[[str], bool]] = {
    "multi_boxed": is_multi_boxed,
    "broken_code": is_broken_code,
    "useless_code": is_useless_code,
}

_CLOSERS = ("\\end{align", "\\]", "$$")


def trim_solution(solution: str) -> str:
    """Cut the solution after the first line holding a ``\\boxed{...}``.

    The line after it is kept too when it closes a display block (contains ``\\end{align``, ``\\]``
    or ``$$``), so an answer boxed inside a display does not lose its closing delimiter. If no
    line has a box, only the first line is kept (v0.1.1 behaviour; such solutions are normally
    dropped earlier because graded-correct solutions always have a box).
    """
    lines = solution.split("\n")
    stop = 0
    for idx, line in enumerate(lines):
        if BOXED.search(line):
            stop = idx
            break
    if stop + 1 < len(lines) and any(c in lines[stop + 1] for c in _CLOSERS):
        stop += 1
    return "\n".join(lines[: stop + 1])


def is_code_solution(solution: str) -> bool:
    """Code solutions are those containing ``<llm-code>`` (checked after trimming)."""
    return CODE_START in solution


def text_filter_keeps(filter_type: str, n_code: int, n_text: int, n_question_total: int) -> tuple[bool, bool]:
    """Return ``(keep_code, keep_text)`` for one question.

    ``n_code``/``n_text`` count the question's solutions that survived the filters;
    ``n_question_total`` counts all of its input solutions *before* the filters, because that is
    what v0.1.1 compared against ("at most half" means ``n_code <= n_question_total // 2``).

    - ``none``: keep all;  ``all``: code only;
    - ``majority_code``: code, plus text if code solutions are at most half;
    - ``majority_text``: code if they are more than half, else text;
    - ``any_code``: code if there is any, else text.
    """
    half = n_question_total // 2
    if filter_type == "none":
        return True, True
    if filter_type == "all":
        return True, False
    if filter_type == "majority_code":
        return True, n_code <= half
    if filter_type == "majority_text":
        return (True, False) if n_code > half else (False, True)
    if filter_type == "any_code":
        return (True, False) if n_code > 0 else (False, True)
    raise ValueError(f"text_filter_type must be one of {', '.join(TEXT_FILTER_TYPES)}; got {filter_type!r}")


def validate_filters(names: list[str] | tuple[str, ...]) -> list[str]:
    """Return ``names`` as a list or raise ``ValueError`` listing the valid filter names."""
    unknown = [n for n in names if n not in FILTERS]
    if unknown:
        raise ValueError(f"unknown filter(s) {', '.join(unknown)}; valid: {', '.join(FILTERS)}")
    return list(names)
