"""Shared fixtures: the repository paths and the real local stack for integration tests.

The integration suite runs against the real services on loopback. If any part of the stack is
already running (for example after ``make demo``) it is completed, reused and left running;
otherwise this session starts it and stops it at the end.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKILLFLOW_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"shared data folder not found at {data} (set SKILLFLOW_SHARED)")
    return data


@pytest.fixture(scope="session")
def stack():
    """The running local stack; yields its Context (layout + environment)."""
    from tasks.stack import control

    rows = control.status()
    # Stop the stack at the end only if this session found nothing of it running: a stack that
    # someone else started (make demo, another test session) is theirs to stop.
    started = not any(r.pid for r in rows)
    if not all(r.healthy for r in rows):
        control.up(quiet=True)
    ctx = control.context()
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in ctx.env.items() if k != "PATH"})
    os.environ["PATH"] = ctx.env["PATH"]
    try:
        yield ctx
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if started and not os.environ.get("SKILLFLOW_KEEP_STACK"):
            control.down(quiet=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath) or "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
