"""The seed's APPS evaluation harness rebuilt around our driver: a baseline for benchmarks only.

What it reproduces (docs/recipes/apps_sft.md §2.4, §3.4), so that a comparison with our evaluator
measures the harness and nothing else:

* per program, a fresh ``multiprocessing.Manager()`` and a forked ``multiprocessing.Process``
  that runs ALL the tests in-process; the parent joins it for the global timeout and kills it if
  it is still alive; a child that reported nothing counts as every test ``-1``;
* a process pool of ``cpu_count // 2`` forked workers (each program also needs a child and a
  manager), fed with the seed's chunk size, a fresh pool per round as ``process_map`` makes one;
* the flake-retry loop: up to 10 rounds of re-running the samples with a ``-1``/``-2`` code
  until two consecutive runs agree on pass/fail, dropping the still-unstable ones if 5 or more
  are left (else keeping their latest result).

What differs on purpose: the child runs the same driver text as our sandbox
(:data:`tasks.apps.execute.PROGRAM`) instead of the seed's ``run_test``, so the verdict rules are
identical and only the harness differs. The child therefore sends back the driver's records
(raw outputs) through the Manager list and the parent judges them, where the seed compares in
the child and sends booleans; the work is the same, only the process doing it moves. The seed
writes unstable samples to ``./debug.jsonl``; this module returns them instead.

Not a sandbox: like the seed, no memory, file or process limits, and the program runs as this
user. Use it for measurements on trusted data, never to evaluate untrusted code.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import tempfile
import traceback
import types
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tasks.apps.execute import PRELOAD, Problem, ProgramResult, run_program

#: Rounds of re-running unstable samples, and how many still-unstable samples make the seed drop
#: them all instead of keeping their latest result.
RETRY_ROUNDS = 10
DROP_AT = 5
#: Bytes of the child's stderr sent back (the judge only quotes its last line).
STDERR_TAIL = 4096

_FORK = multiprocessing.get_context("fork")


def preload() -> None:
    """Import what the seed's evaluator process has loaded before it forks (numpy and the rest
    of the prelude, and the driver), so a fork inherits them instead of importing per program."""
    for name in PRELOAD:
        importlib.import_module(name)


def seed_workers(cores: int) -> int:
    """The seed's pool size: half the cores, because each program also holds a child and a manager."""
    return max(1, cores // 2)


def seed_chunksize(n: int, workers: int) -> int:
    """The seed's ``process_map`` chunk size for ``n`` samples."""
    return max(n // (workers * 5), 1)


def _read_fd(fd: int, start: int = 0) -> bytes:
    chunks, offset = [], start
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _child(program: str, in_fd: int, out_fd: int, err_fd: int, result: Any) -> None:  # pragma: no cover - child
    """Target of the forked child: run ``program`` with fds 0/1/2 on the given files.

    The driver ends with ``os._exit`` instead of returning, so the report into the Manager list
    happens on that exit path (``os._exit`` is wrapped in this child): it copies what the
    program wrote to fd 1 (and the tail of fd 2) into the list, then exits for real. A child that
    dies any other way (a signal, a kill at the timeout) leaves the list empty, as in the seed.
    """
    os.dup2(in_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    # Text streams on the new fds (the inherited ones may be a test runner's capture objects).
    streams = (open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False),
               open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False))
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout, sys.stderr = streams
    real_exit = os._exit

    def report_and_exit(code: int = 0) -> None:
        try:
            for stream in streams:
                try:
                    stream.flush()
                except BaseException:
                    pass
            size = os.fstat(err_fd).st_size
            result.append((code, _read_fd(out_fd).decode("utf-8", "replace"),
                           _read_fd(err_fd, max(0, size - STDERR_TAIL)).decode("utf-8", "replace")))
        finally:
            real_exit(code)

    os._exit = report_and_exit
    main = types.ModuleType("__main__")
    code = 0
    try:
        exec(compile(program, "<seed-style>", "exec"), main.__dict__)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=streams[1])
            code = 1
    except BaseException:
        sys.stderr = streams[1]
        traceback.print_exc()
        code = 1
    report_and_exit(code & 0xFF)


def seed_style_runner(program: str, stdin: str, timeout: float) -> tuple[str, str, str]:
    """:data:`tasks.apps.execute.Runner` the seed's way: a Manager plus a forked child per call.

    Statuses as the sandbox's: ``ok`` (exit 0), ``error`` (other exit code), ``signal`` (the
    child died of a signal before reporting), ``timeout`` (still alive after ``timeout`` s: killed,
    nothing reported). Must be called from a process where forking is safe (no other threads
    holding locks), like the seed's pool workers.
    """
    files = [tempfile.TemporaryFile(buffering=0) for _ in range(3)]
    try:
        stdin_file, out_file, err_file = files
        stdin_file.write(stdin.encode("utf-8"))
        stdin_file.seek(0)
        with _FORK.Manager() as manager:
            result = manager.list()
            child = _FORK.Process(target=_child, args=(program, stdin_file.fileno(), out_file.fileno(),
                                                       err_file.fileno(), result))
            child.start()
            child.join(timeout)
            if child.is_alive():
                child.kill()
                child.join()
                return "timeout", "", ""
            reports = list(result)
        if not reports:
            return ("signal" if (child.exitcode or 0) < 0 else "error"), "", ""
        code, stdout, stderr = reports[0]
        return ("ok" if code == 0 else "error"), stdout, stderr
    finally:
        for f in files:
            f.close()


def _evaluate(job: tuple[Problem, str, float, float]) -> ProgramResult:
    problem, code, timeout, budget = job
    return run_program(seed_style_runner, problem, code, timeout=timeout, budget=budget)


def map_samples(jobs: Sequence[tuple[Problem, str]], *, workers: int, timeout: float,
                budget: float) -> list[ProgramResult]:
    """One ``process_map`` call of the seed: a new forked pool, the seed's chunk size, results in order."""
    if not jobs:
        return []
    items = [(problem, code, timeout, budget) for problem, code in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=_FORK, initializer=preload) as pool:
        return list(pool.map(_evaluate, items, chunksize=seed_chunksize(len(items), workers)))


def is_unstable(result: ProgramResult) -> bool:
    """The seed re-runs a sample whose per-test codes contain ``-1`` or ``-2``."""
    return any(type(c) is int and c in (-1, -2) for c in result.codes)


@dataclass
class RetryOutcome:
    """Final results of the retry loop, keyed by the sample's index in the input list.

    ``dropped`` samples have no result (the seed loses them); ``kept_unstable`` ones are in
    ``results`` with their latest, still disputed, verdict. ``executions`` counts every program
    run, the first pass included; ``rerun_samples`` counts samples run more than once.
    """

    results: dict[int, ProgramResult]
    dropped: list[int] = field(default_factory=list)
    kept_unstable: list[int] = field(default_factory=list)
    executions: int = 0
    rerun_samples: int = 0
    rounds: int = 0


def retry_until_stable(jobs: Sequence[Any], run_batch: Callable[[list], list[ProgramResult]], *,
                       rounds: int = RETRY_ROUNDS, drop_at: int = DROP_AT) -> RetryOutcome:
    """Evaluate ``jobs`` with ``run_batch`` (one call = one pool pass), then the seed's retry loop.

    A sample with a ``-1``/``-2`` code is run again; when the new run's pass/fail equals the
    previous run's, the new result is accepted, otherwise the new result becomes the one the
    next round compares with. After ``rounds`` rounds, if ``drop_at`` or more samples are still
    unstable they are all dropped, else they are kept with their latest result.
    """
    first = run_batch(list(jobs))
    outcome = RetryOutcome(results={}, executions=len(first))
    pending: dict[int, ProgramResult] = {}
    for index, result in enumerate(first):
        (pending if is_unstable(result) else outcome.results)[index] = result
    rerun: set[int] = set()
    while pending and outcome.rounds < rounds:
        outcome.rounds += 1
        indices = list(pending)
        rerun.update(indices)
        fresh = run_batch([jobs[i] for i in indices])
        outcome.executions += len(indices)
        still: dict[int, ProgramResult] = {}
        for index, result in zip(indices, fresh):
            if result.passed == pending[index].passed:
                outcome.results[index] = result
            else:
                still[index] = result
        pending = still
    outcome.rerun_samples = len(rerun)
    if len(pending) >= drop_at:
        outcome.dropped = sorted(pending)
    else:
        outcome.kept_unstable = sorted(pending)
        outcome.results.update(pending)
    return outcome
