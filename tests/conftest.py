"""Shared fixtures: the repository paths and the real local stack for integration tests.

In CI (``CI`` set) a test may not skip: every skip is a prerequisite CI is meant to have (the
shared data, the stack's tools, namespaces), so it is reported as a failure naming what was
missing; and ``SKILLFLOW_UPDATE_GOLDEN`` stops the session (tests/golden_files.py).

The integration suite runs against the real services on loopback. If any part of the stack is
already running (for example after ``make demo``) it is completed, reused and left running;
otherwise this session starts it and stops it at the end.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import golden_files
from tests.prereqs import SHARED_DATA, in_ci

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set SKILLFLOW_SHARED)")
    return SHARED_DATA


#: The topology the integration tests run on: ``local`` (make test) or ``team`` (make test-team).
TOPOLOGY = os.environ.get("SKILLFLOW_TEST_TOPOLOGY", "local")


@pytest.fixture(scope="session")
def stack():
    """The running local stack of this session's topology; yields its Context (layout + environment)."""
    from devtools.stack import control
    from devtools.stack.layout import Layout

    rows = control.status()
    if Layout.discover().topology() != TOPOLOGY and any(r.pid for r in rows):
        # A stack of the other topology shares the ports and the data folder: it has to go first.
        control.down(quiet=True)
        rows = control.status()
    # Stop the stack at the end only if this session found nothing of it running: a stack that
    # someone else started (make demo, another test session) is theirs to stop.
    started = not any(r.pid for r in rows)
    if not all(r.healthy for r in rows) or Layout.discover().topology() != TOPOLOGY:
        control.up(quiet=True, topology=TOPOLOGY)
    else:
        control.ensure_images(quiet=True)  # jobs run in them: they must hold this checkout's code
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
        if any(part in str(item.fspath) for part in ("/integration/", "/faults/", "/team/")):
            item.add_marker(pytest.mark.integration)


def pytest_configure(config):
    reason = golden_files.refusal()
    if reason:
        raise pytest.UsageError(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.get_closest_marker("integration") is not None and "stack" in item.fixturenames:
        # Read long after the machine is gone (CI): whether a service, a node or the queue was to blame.
        from tests.stack_state import snapshot

        report.sections.append(("local stack at the failure", snapshot()))
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        where, _, reason = report.longrepr if isinstance(report.longrepr, tuple) else ("", 0, str(report.longrepr))
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI, where nothing may skip: {reason} ({where}). CI is meant to have "
                           "every prerequisite of the suite; provide it (make install, SKILLFLOW_SHARED) "
                           "instead of letting the test skip.")
