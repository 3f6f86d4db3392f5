"""Where the tests find what they need but the repository does not hold.

The shared data folder (datasets, generations) lies next to the checkout as ``../shared`` unless
``SKILLFLOW_SHARED`` names it; every test reads it through here, so setting the variable reaches
all of them. A test that lacks it skips with the path it looked at, and in CI a skip fails
(``tests/conftest.py``): CI is meant to have it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKILLFLOW_SHARED") or ROOT.parent / "shared")
SHARED_DATA = SHARED / "data"

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                  reason=f"shared data folder {SHARED_DATA} is absent (set SKILLFLOW_SHARED)")


def in_ci() -> bool:
    """CI services set ``CI`` (``.ci/run`` sets it too); a developer's run leaves it unset."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
