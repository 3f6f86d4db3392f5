"""Run one program against one APPS problem's tests with the reference harness's semantics.

All tests of a program run in ONE sandbox execution of :mod:`tasks.apps.driver` (the reference
also runs them in one child process). Nothing needs one execution per test: state shared between
tests, a crash that loses every result, and the global budget that turns every test into -1 are
all reference behaviour, and one execution reproduces them. The driver reports raw outputs; the
verdicts are computed here (:mod:`tasks.apps.compare`), outside the sandbox.

Per-test codes follow the reference: ``True`` pass, ``False`` wrong answer, ``-1`` runtime error
or timeout, ``-2`` compile error (a single entry). A program that crashes the process, or whose
tests run past the budget (reference: 11 s per program), gets ``-1`` for every test, as the
reference does when its child returns nothing. ``outcomes`` carries the finer reason per test.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tasks.apps.compare import compare_call, compare_stdout, decode_value

DRIVER_SOURCE = Path(__file__).with_name("driver.py").read_text(encoding="utf-8")
#: What the sandbox executes: the driver preloaded in the worker if it is there (saves compiling
#: it per program), else its source, so a bare ``python`` process can run the same text.
PROGRAM = ("import sys\n_driver = sys.modules.get('tasks.apps.driver')\n"
           "if _driver is not None:\n    _driver.main()\n"
           f"exec(compile({DRIVER_SOURCE!r}, 'apps_driver', 'exec'), globals())\n")
#: Seconds the sandbox gets beyond the budget for fork, payload parsing and exit.
SANDBOX_SLACK_S = 2.0
#: Modules the sandbox workers import once so that each fork starts with them loaded.
PRELOAD = ("numpy", "unittest.mock", "fractions", "heapq", "random", "collections", "itertools",
           "functools", "typing", "json", "shutil", "subprocess", "decimal", "tasks.apps.driver")


class ProblemError(ValueError):
    """An APPS row that cannot be evaluated; the message names the problem."""


@dataclass
class Problem:
    """The parts of an APPS row the evaluator needs (``input_output`` already parsed)."""

    problem_id: Any
    difficulty: str
    inputs: list
    outputs: list
    fn_name: str | None = None
    starter_code: str = ""

    @property
    def mode(self) -> str:
        return "call" if self.fn_name else "stdin"

    @classmethod
    def from_row(cls, row: dict[str, Any], where: str = "") -> "Problem":
        """Build from an APPS jsonl row (``problem_id`` or the raw files' ``id``)."""
        pid = row.get("problem_id", row.get("id"))
        if pid is None:
            raise ProblemError(f"{where}: APPS row has neither 'problem_id' nor 'id'")
        raw = row.get("input_output")
        try:
            io = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise ProblemError(f"{where}: problem {pid}: input_output is not valid JSON ({exc.msg})") from None
        if not isinstance(io, dict) or not isinstance(io.get("inputs"), list) or not isinstance(io.get("outputs"), list):
            raise ProblemError(f"{where}: problem {pid}: input_output lacks 'inputs'/'outputs' lists")
        if len(io["inputs"]) != len(io["outputs"]):
            raise ProblemError(f"{where}: problem {pid}: {len(io['inputs'])} inputs but {len(io['outputs'])} outputs")
        return cls(pid, str(row.get("difficulty") or "unknown"), io["inputs"], io["outputs"],
                   io.get("fn_name") or None, row.get("starter_code") or "")


@dataclass
class ProgramResult:
    """Verdict for one program: ``passed`` iff every code is ``True`` (reference rule)."""

    passed: bool
    codes: list
    outcomes: list[str]
    status: str
    detail: str = ""
    duration_s: float = 0.0
    tests: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "codes": self.codes, "outcomes": self.outcomes, "status": self.status,
                "detail": self.detail, "duration_s": round(self.duration_s, 4)}


def build_payload(problem: Problem, code: str, *, nonce: str, timeout: float, budget: float) -> str:
    return json.dumps({"nonce": nonce, "mode": problem.mode, "code": code, "inputs": problem.inputs,
                       "fn_name": problem.fn_name, "timeout": timeout, "budget": budget})


def parse_records(stdout: str, nonce: str) -> tuple[list[dict], str | None]:
    """Records carrying our nonce, in order; the second value names a protocol violation.

    A record is a line that starts with the marker. The lines are found with ``find`` rather than
    by splitting, so output the program padded to the cap (up to 64 MiB) is never copied.
    """
    marker = f"@@apps-{nonce}@@ "
    records = []
    start = 0 if stdout.startswith(marker) else stdout.find("\n" + marker)
    while start != -1:
        if stdout[start] == "\n":
            start += 1
        end = stdout.find("\n", start)
        try:
            records.append(json.loads(stdout[start + len(marker):len(stdout) if end == -1 else end]))
        except json.JSONDecodeError:
            return records, "unparsable result record"
        start = -1 if end == -1 else stdout.find("\n" + marker, end)
    return records, None


def last_line(text: str, limit: int = 300, window: int = 1 << 16) -> str:
    """The last non-blank line of ``text`` cut at ``limit``, looked for in its last ``window``
    characters (a traceback ends there) so that a stderr padded to the cap is not copied."""
    tail = text[-window:].strip()
    return tail.splitlines()[-1][:limit] if tail else ""


def _all_minus_one(n: int, outcomes: list[str], status: str, detail: str) -> ProgramResult:
    return ProgramResult(False, [-1] * n, outcomes, status, detail, tests=n)


def judge(problem: Problem, exec_status: str, stdout: str, nonce: str, stderr: str = "") -> ProgramResult:
    """Turn the driver's records into reference codes; everything after the records is trusted."""
    n = len(problem.inputs)
    records, violation = parse_records(stdout, nonce)
    per_test: list[dict | None] = [None] * n
    terminal = None
    for rec in records:
        if "i" in rec:
            i = rec["i"]
            if not isinstance(i, int) or not 0 <= i < n or per_test[i] is not None or terminal is not None:
                violation = violation or f"unexpected result record for test {i!r}"
                continue
            per_test[i] = rec
        elif terminal is None:
            terminal = rec
        else:
            violation = violation or "more than one final record"
    if terminal is not None and "compile_error" in terminal:
        return ProgramResult(False, [-2], ["compile_error"], "compile_error", terminal["compile_error"], tests=n)

    outcomes, codes = [], []
    for i, rec in enumerate(per_test):
        if rec is None:
            outcomes.append("not_run")
            codes.append(-1)
            continue
        if rec.get("kind") != "ok":
            outcomes.append("timeout" if rec.get("kind") == "timeout" else "error")
            codes.append(-1)
            continue
        try:
            if problem.mode == "call":
                ok = compare_call(decode_value(rec.get("value")), problem.outputs[i])
            else:
                ok = compare_stdout(rec.get("lines") or [], problem.outputs[i])
        except Exception:  # the reference compares inside its try: an exception there is -1
            outcomes.append("error")
            codes.append(-1)
            continue
        outcomes.append("pass" if ok else "fail")
        codes.append(bool(ok))

    if violation:
        return _all_minus_one(n, outcomes, "tampered", violation)
    if terminal is None or exec_status == "timeout":
        # The process died or ran out of time before finishing: the reference gets no results.
        why = {"timeout": "budget", "output_limit": "output_limit", "signal": "crash", "error": "crash",
               "sandbox_error": "sandbox_error"}.get(exec_status, "crash")
        detail = last_line(stderr) or f"sandbox status {exec_status!r} before all tests reported"
        return _all_minus_one(n, outcomes, why, detail)
    if terminal.get("budget"):
        return _all_minus_one(n, outcomes, "budget", "tests ran past the per-program budget")
    if terminal.get("crash"):
        return _all_minus_one(n, outcomes, "crash", f"{terminal['crash']} ended the program")
    if None in per_test:
        return _all_minus_one(n, outcomes, "crash", "driver ended without running every test")
    return ProgramResult(all(c is True for c in codes), codes, outcomes, "ok", tests=n)


Runner = Callable[[str, str, float], tuple[str, str, str]]
"""``runner(program, stdin, timeout) -> (status, stdout, stderr)`` with sandbox statuses."""


def pool_runner(pool) -> Runner:
    """Adapt a :class:`tasks.sandbox.SandboxPool` to :data:`Runner`."""

    def run(program: str, stdin: str, timeout: float) -> tuple[str, str, str]:
        res = pool.run(program, stdin=stdin, timeout=timeout)
        return res.status, res.stdout, res.stderr

    return run


def run_program(runner: Runner, problem: Problem, code: str, *, timeout: float = 4.0,
                budget: float = 11.0) -> ProgramResult:
    """Run ``code`` on all of ``problem``'s tests in one execution and judge the outputs.

    ``timeout`` is per test (reference: 4 s); ``budget`` bounds the whole program (reference:
    the child is joined for 11 s); the sandbox kills at ``budget + SANDBOX_SLACK_S``.
    """
    if timeout <= 0 or budget <= 0:
        raise ValueError(f"timeout and budget must be positive, got timeout={timeout} budget={budget}")
    nonce = secrets.token_hex(16)
    payload = build_payload(problem, code, nonce=nonce, timeout=timeout, budget=budget)
    start = time.monotonic()
    status, stdout, stderr = runner(PROGRAM, payload, budget + SANDBOX_SLACK_S)
    result = judge(problem, status, stdout, nonce, stderr)
    result.duration_s = time.monotonic() - start
    return result
