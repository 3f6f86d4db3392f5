"""The reliability suite's plumbing: the ``reliability`` marker, the ``measured`` fixture, the
shared ``faults`` fixture, and the session hook that writes docs/reliability.md.

A test states its promise with ``@pytest.mark.reliability(section=..., case=..., promise=...)``
and records numbers (reconnect time, attempts, job ids) with ``measured("...")``. Rows proven
by tests elsewhere in the repository are listed in :mod:`tests.faults.cases` by node id; the
report includes them only when they ran in the same session. The document is written when
``SKILLFLOW_RELIABILITY_DOC`` names a path (``make faults`` sets it), so an ordinary ``make test``
leaves the committed file alone.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.faults import cases
from tests.faults.report import CaseResult, render


class ReliabilityRecorder:
    """A plugin object (not a conftest) so it sees the reports of tests in every folder."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.started = time.monotonic()
        self.rows: dict[str, CaseResult] = {}
        self.by_node: dict[str, list[str]] = {}
        for case in cases.CATALOGUE:
            self._row(case.section, case.case, case.promise, list(case.tests))

    def _row(self, section: str, case: str, promise: str, tests: list[str]) -> CaseResult:
        row = self.rows.get(case)
        if row is None:
            row = self.rows[case] = CaseResult(section, case, promise)
        for node in tests:
            if node not in row.tests:
                row.tests.append(node)
            self.by_node.setdefault(node, []).append(case)
        return row

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        for item in items:
            marker = item.get_closest_marker("reliability")
            if marker is not None:
                kw = marker.kwargs
                self._row(kw["section"], kw["case"], kw["promise"], [item.nodeid])

    def _entries(self, nodeid: str) -> list[str]:
        """Catalogue entries a test belongs to: its own id, its file, or its unparametrized name."""
        return [entry for entry in self.by_node
                if nodeid == entry or nodeid.startswith((entry + "::", entry + "["))]

    def pytest_runtest_logreport(self, report):
        entries = self._entries(report.nodeid)
        if not entries:
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed") or \
                (report.when == "teardown" and report.outcome == "failed"):
            for entry in entries:
                for name in self.by_node[entry]:
                    row = self.rows[name]
                    if row.outcomes.get(entry) != "failed":
                        row.outcomes[entry] = report.outcome
                    row.seconds += report.duration if report.when == "call" else 0.0
                    row.reports[report.outcome] = row.reports.get(report.outcome, 0) + 1
                    for key, value in report.user_properties:
                        if key == "measured" and value not in row.measured:
                            row.measured.append(value)

    def pytest_sessionfinish(self, session):
        target = os.environ.get("SKILLFLOW_RELIABILITY_DOC")
        if not target:
            return
        order = {name: i for i, name in enumerate(cases.SECTIONS)}
        rows = sorted(self.rows.values(), key=lambda r: order.get(r.section, len(order)))
        command = os.environ.get("SKILLFLOW_RELIABILITY_COMMAND", "pytest " + " ".join(self.config.args))
        Path(target).write_text(render(rows, time.monotonic() - self.started, command, cases.LIMITATIONS))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(section, case, promise): a row of docs/reliability.md")
    if not config.pluginmanager.has_plugin("skillflow-reliability"):
        config.pluginmanager.register(ReliabilityRecorder(config), "skillflow-reliability")


@pytest.fixture()
def measured(request):
    """``measured("reconnected after 3.2 s")`` adds a phrase to the case's measured outcome."""

    def record(text: str) -> None:
        request.node.user_properties.append(("measured", text))

    return record


@pytest.fixture()
def faults(stack):
    """Fault injection on this session's stack instance (see :mod:`tests.faults.stackctl`)."""
    from tests.faults.stackctl import Faults

    return Faults(stack)
