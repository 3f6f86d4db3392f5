"""Wait for an event instead of sleeping a guessed time: the one poll loop of the tests and the
benchmarks (bench/ imports it from here; it is not part of the ``tasks`` package the cluster gets).
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """The awaited event did not happen within the hang guard (a test failure, not an error)."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *, interval: float = 0.5) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return
    that. ``timeout`` is a hang guard far above any normal wait, never a speed expectation; past
    it :class:`WaitTimedOut` says what was awaited (``what``) and for how long."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
