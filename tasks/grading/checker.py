"""Grade many (prediction, expected) pairs fast, with a hard time limit per sympy check.

Why this shape:

* Most pairs are decided by string or float comparison (:func:`quick_verdict`); those run
  in-process and cost microseconds.
* The rest need sympy, whose parsing and ``simplify`` can hang -- sometimes inside C code that no
  signal interrupts (``9**9**9**9``). They go to a pool of worker processes, one per core. Each
  worker arms ``SIGALRM`` for ``timeout`` seconds (a cheap, clean "False"), and the parent kills
  and replaces any worker whose current check runs past ``timeout + KILL_GRACE_S``. A killed
  check is graded False, as upstream grades a sandbox timeout. Workers also run under an
  address-space limit so a runaway expression cannot exhaust the host's memory.
* Verdicts are cached per (prediction, expected) pair for the checker's lifetime: majority@50
  files repeat the same answers many times.
* Inside a worker, most pairs never reach sympy: :mod:`tasks.grading.arithmetic` answers the
  arithmetic ones exactly as sympy would, in microseconds. sympy is imported once, in this process
  when the pool starts, and forked workers inherit it.

The parent talks to each worker over a pipe, sending chunks of pairs and receiving one reply
per pair, so it always knows which pair a worker is on and when that pair started.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable

from tasks.grading.math_equal import math_equal, quick_verdict

KILL_GRACE_S = 2.0
WORKER_MEMORY_BYTES = 3 * 1024**3
CHUNK_SIZE = 8


@dataclass
class CheckStats:
    """Counters that explain where grading time went (printed by ``skillflow grade -v``)."""

    cached: int = 0
    fast: int = 0
    symbolic: int = 0
    timeouts: int = 0
    worker_restarts: int = 0


class _SoftTimeout(BaseException):
    """Raised by SIGALRM in a worker; a BaseException so ``except Exception`` cannot swallow it."""


def _on_alarm(signum, frame):
    raise _SoftTimeout


def _worker_main(conn: Connection, include_percentage: bool, tolerance: float, timeout: float) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGALRM, _on_alarm)
    from tasks.grading.symbolic import SympyBackend, warm_up

    warm_up()  # imports and first-parse costs must not count against the first check's timeout
    backend = SympyBackend()
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for index, pred, ref in chunk:
            verdict = timed_out = False
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                verdict = math_equal(pred, ref, include_percentage=include_percentage,
                                     tolerance=tolerance, backend=backend)
            except _SoftTimeout:
                timed_out = True
            except (Exception, RecursionError, MemoryError):
                verdict = False
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            conn.send((index, bool(verdict), timed_out))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    chunk: list = field(default_factory=list)
    position: int = 0
    started: float = 0.0

    @property
    def busy(self) -> bool:
        return self.position < len(self.chunk)


class _Pool:
    def __init__(self, size: int, include_percentage: bool, tolerance: float, timeout: float):
        methods = mp.get_all_start_methods()
        self._ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        if self._ctx.get_start_method() == "fork":
            # Import sympy once here: forked workers inherit it warm, so N workers do not each pay
            # about a second of imports, and a worker replaced after a kill is ready at once.
            from tasks.grading.symbolic import warm_up

            warm_up()
        self._args = (include_percentage, tolerance, timeout)
        self._timeout = timeout
        self.restarts = 0
        self.timeouts = 0
        self._workers = [self._start() for _ in range(size)]

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, *self._args), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        self.restarts += 1
        return self._start()

    def run(self, pairs: list[tuple[str, str]]) -> list[bool]:
        results: list[bool | None] = [None] * len(pairs)
        queue = deque((i, p, r) for i, (p, r) in enumerate(pairs))
        remaining = len(pairs)
        limit = self._timeout + KILL_GRACE_S
        while remaining:
            for worker in self._workers:
                if not worker.busy and queue:
                    worker.chunk = [queue.popleft() for _ in range(min(CHUNK_SIZE, len(queue)))]
                    worker.position = 0
                    worker.started = time.monotonic()
                    worker.conn.send(worker.chunk)
            busy = [w for w in self._workers if w.busy]
            now = time.monotonic()
            next_deadline = min(w.started + limit for w in busy) - now
            ready = wait([w.conn for w in busy], timeout=max(0.0, next_deadline))
            for i, worker in enumerate(self._workers):
                if not worker.busy:
                    continue
                if worker.conn in ready:
                    try:
                        index, verdict, timed_out = worker.conn.recv()
                    except (EOFError, OSError):
                        remaining -= self._fail_current(worker, i, results, queue)
                        continue
                    self.timeouts += timed_out
                    results[index] = verdict
                    remaining -= 1
                    worker.position += 1
                    worker.started = time.monotonic()
                elif time.monotonic() - worker.started > limit:
                    self.timeouts += 1
                    remaining -= self._fail_current(worker, i, results, queue)
        return [bool(r) for r in results]

    def _fail_current(self, worker: _Worker, slot: int, results: list, queue: deque) -> int:
        """Grade the pair in flight False, requeue the rest of its chunk, replace the worker."""
        index = worker.chunk[worker.position][0]
        results[index] = False
        queue.extendleft(reversed(worker.chunk[worker.position + 1 :]))
        self._workers[slot] = self._replace(worker)
        return 1

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(2)
            worker.conn.close()
        self._workers = []


class MathChecker:
    """Grade answer pairs with :func:`math_equal` semantics, cached, parallel, time-bounded.

    Use as a context manager (or call :meth:`close`) so worker processes are stopped. The pool
    starts only when a pair first needs sympy. ``timeout`` is seconds per sympy check.
    """

    def __init__(self, *, workers: int | None = None, timeout: float = 10.0,
                 include_percentage: bool = True, tolerance: float = 1e-4):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.include_percentage = include_percentage
        self.tolerance = tolerance
        self.stats = CheckStats()
        self._cache: dict[tuple[str | None, str | None], bool] = {}
        self._pool: _Pool | None = None

    def __enter__(self) -> "MathChecker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self.stats.worker_restarts += self._pool.restarts
            self._pool.close()
            self._pool = None

    def check(self, prediction: Any, expected: Any) -> bool:
        return self.check_many([(prediction, expected)])[0]

    def check_many(self, pairs: Iterable[tuple[Any, Any]]) -> list[bool]:
        """Verdicts in input order. ``None`` as a prediction is never correct."""
        keys = [(_key(p), _key(e)) for p, e in pairs]
        slow: dict[tuple, None] = {}
        for key in keys:
            if key in self._cache or key in slow:
                self.stats.cached += 1
                continue
            pred, ref = key
            verdict = quick_verdict(pred, ref, include_percentage=self.include_percentage,
                                    tolerance=self.tolerance) if pred is not None and ref is not None else False
            if verdict is None:
                slow[key] = None
            else:
                self.stats.fast += 1
                self._cache[key] = verdict
        if slow:
            todo = list(slow)
            if self._pool is None:
                self._pool = _Pool(self.workers, self.include_percentage,
                                   self.tolerance, self.timeout)
            before = self._pool.timeouts
            for key, verdict in zip(todo, self._pool.run(todo)):
                self._cache[key] = verdict
            self.stats.symbolic += len(todo)
            self.stats.timeouts += self._pool.timeouts - before
        return [self._cache[k] for k in keys]


def _key(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
