"""Extraction of the final answer from a model's solution text.

NeMo-Skills (main@9b7f9d57, docs/recipes/openmath.md §5.1) takes the content of the *last* ``\\boxed{...}``, found by
brace counting from the last occurrence of ``\\boxed``. We keep its edge cases because graded
files and metrics must agree with the published numbers:

* no ``\\boxed`` at all -> ``None`` ("no answer");
* unbalanced braces after the last ``\\boxed`` -> ``None``;
* ``\\boxed{}`` -> ``""`` (an empty answer, which is *not* "no answer");
* ``\\boxed 5`` (no brace right after the command) -> ``None``, as upstream's prefix check fails.

Upstream also mentions ``\\fbox``, but that path can never yield an answer, so it is left out.
"""
from __future__ import annotations

_BOXED = "\\boxed"


def extract_boxed(text: str | None) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in ``text``, or ``None`` (see module doc)."""
    if not text:
        return None
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    open_at = start + len(_BOXED)
    if open_at >= len(text) or text[open_at] != "{":
        return None
    depth = 0
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def extract_all_boxed(text: str) -> list[str]:
    """Contents of every top-level ``\\boxed{...}`` in order (used by MATH preparation).

    A ``\\boxed`` whose braces never close ends the scan, since nothing after it is reliable.
    """
    found: list[str] = []
    pos = 0
    while True:
        start = text.find(_BOXED, pos)
        if start < 0:
            return found
        open_at = start + len(_BOXED)
        if open_at >= len(text) or text[open_at] != "{":
            pos = open_at
            continue
        depth = 0
        end = -1
        for i in range(open_at, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end < 0:
            return found
        found.append(text[open_at + 1 : end])
        pos = end + 1
