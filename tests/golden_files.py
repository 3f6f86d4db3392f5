"""Golden files: rendered text compared with a recorded file, and how a person accepts a change.

``SKILLFLOW_UPDATE_GOLDEN=1`` makes the golden tests rewrite their files instead of failing; the
rewrite is then a diff for review. A run that rewrites its own expectations proves nothing, so CI
(``CI`` set, as every CI service does) refuses the variable outright: the session stops at start
(``tests/conftest.py``) and any check made anyway fails.

Every check can be recorded (``SKILLFLOW_GOLDEN_CHECKED`` names a file that gets one line per golden
file compared), so a test can run the golden tests and find recorded files that no test compares.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.prereqs import in_ci

ROOT = Path(__file__).resolve().parent / "golden"
UPDATE_ENV = "SKILLFLOW_UPDATE_GOLDEN"
CHECKED_ENV = "SKILLFLOW_GOLDEN_CHECKED"


def refusal() -> str | None:
    """Why this run may not rewrite golden files, or None."""
    if in_ci() and os.environ.get(UPDATE_ENV):
        return (f"{UPDATE_ENV} is set in CI (CI={os.environ['CI']}): golden files are rewritten only by a "
                "person, whose diff is reviewed; CI compares them")
    return None


def update_requested() -> bool:
    reason = refusal()
    if reason:
        pytest.fail(reason, pytrace=False)
    return os.environ.get(UPDATE_ENV) == "1"


def check(path: Path, text: str, hint: str = "") -> None:
    """Compare ``text`` with the golden file ``path`` (or rewrite it when asked to); fail with a diff."""
    rel = path.relative_to(ROOT).as_posix()
    if os.environ.get(CHECKED_ENV):
        with open(os.environ[CHECKED_ENV], "a") as fh:
            fh.write(rel + "\n")
    if update_requested():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"no golden file tests/golden/{rel}; record it with {UPDATE_ENV}=1 and review the new file")
    expected = path.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            fromfile=f"golden/{rel}", tofile="rendered"))
        pytest.fail(f"{hint}{rel} differs from its golden file:\n{diff}\n"
                    f"If the change is intended, rerun with {UPDATE_ENV}=1 and commit the new file.")
