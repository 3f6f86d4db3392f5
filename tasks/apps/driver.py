"""The program that runs inside the sandbox: load one candidate once, run every test in it.

Why one execution per program: the APPS reference harness also runs all tests of a generation
in one child process (state carries over between tests there too), so doing the same inside one
warm sandbox fork keeps its semantics and costs one fork instead of a ``python`` start plus a
numpy import per program.

What this driver deliberately does NOT receive: the expected outputs. It sends back what the
candidate produced (captured stdout lines, or the returned value in a typed JSON encoding) and
the trusted evaluator compares them (:mod:`tasks.apps.compare`). So a candidate that digs the
nonce or the result fd out of this process's memory can at most report outputs it could also
have printed; it cannot learn or fake "passed".

Protocol: the payload is one JSON object on stdin (``nonce``, ``mode`` "stdin"/"call",
``code``, ``inputs``, ``fn_name``, ``timeout``, ``budget``). Each record is one line
``@@apps-<nonce>@@ <json>`` written to a private dup of fd 1; fds 0 and 1 then point at
/dev/null so the candidate's own writes never reach the record stream.

Reference behaviour reproduced (docs/recipes/apps_sft.md §3.4): the fixed import prelude; stdin programs wrapped in
``def code()``; ``reliability_guard`` (``exit``/``quit`` disabled, ``os.kill`` etc. set to None);
stdin mocked per test (``input``/``readline`` share a line iterator, ``readline`` returns lines
without newline, ``readlines`` splits on "\\n", ``open`` is a mock file, ``SystemExit``
swallowed); stdout captured as lines; a per-test timer raising an ``Exception`` subclass that
the candidate may catch. Two shortcuts keep verdicts but save wall time: when ``input()`` runs
out of lines the reference spins until its alarm, so we raise the timeout at once and charge the
remaining timer to a virtual clock; a second exhaustion after that would hang until the global
kill, so we report the budget as spent straight away.

Only stdlib (+ numpy for the prelude) is imported; this file's text is executed as ``__main__``.
"""
import builtins
import io
import json
import os
import signal
import sys
import time
import types

PRELUDE = (
    "import sys\nimport time\nimport itertools\n"
    "from itertools import accumulate, product, permutations, combinations\n"
    "import collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\n"
    "from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
    "import fractions\nfrom typing import List, Tuple\nimport numpy as np\nimport random\n"
    "import heapq\nfrom heapq import *\n"
)


class TimeoutException(Exception):
    """Raised into the candidate when a test's timer fires (same base class as the reference's)."""


def wrap_stdin_program(code):
    """Turn a script into a module with a ``code()`` function, the way the reference does.

    Lines that start with ``from ``/``import `` stay at module level until the first other line;
    every other line is tab-indented into ``def code():``; later import lines are indented too.
    Consequence kept on purpose: an ``if __name__ == "__main__":`` block never runs.
    """
    lines = []
    for line in code.split("\n"):
        if line.startswith("from ") or line.startswith("import "):
            lines.append(line + "\n")
        else:
            lines.append("\t" + line + "\n")
    out = []
    started = False
    for line in lines:
        if line.startswith("\t") and not started:
            out.append("stdin = sys.stdin\nstdout = sys.stdout\ndef code():\n")
            out.append(line)
            started = True
        elif started and (line.startswith("from ") or line.startswith("import ")):
            out.append("\t" + line)
        else:
            out.append(line)
    return "".join(out)


def encode_value(value, depth=0):
    """JSON-encode a return value keeping what Python equality depends on (tuple, set, dict keys).

    Unknown objects become an opaque tag that the evaluator treats as unequal to everything, which
    is what ``==`` gives for a plain object against JSON data.
    """
    if depth > 200:
        raise RecursionError("return value nested too deeply to report")
    t = type(value)
    if value is None or t is bool or t is str or t is int:
        return value
    if t is float:
        return value if value == value and value not in (float("inf"), float("-inf")) else {"$f": repr(value)}
    if isinstance(value, bool):
        return bool(value)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(value, np.ndarray):
            return {"$nd": encode_value(value.tolist(), depth + 1), "dtype": str(value.dtype)}
        if isinstance(value, np.generic):
            return encode_value(value.item(), depth + 1)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return encode_value(float(value), depth + 1)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [encode_value(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"$t": [encode_value(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"$d": [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, frozenset):
        return {"$fs": [encode_value(v, depth + 1) for v in value]}
    if isinstance(value, set):
        return {"$s": [encode_value(v, depth + 1) for v in value]}
    name = t.__name__
    if name == "Fraction":
        return {"$frac": [value.numerator, value.denominator]}
    if name == "Decimal":
        return {"$dec": str(value)}
    try:
        text = repr(value)[:200]
    except Exception:
        text = "<unreprable>"
    return {"$o": name, "repr": text}


def _read_payload():
    chunks = []
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    return json.loads(b"".join(chunks).decode("utf-8"))


def reliability_guard():
    """Disable the same destructive functions the reference harness disables (not a sandbox)."""
    import shutil
    import subprocess

    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


class _LazyMockOpen:
    """``builtins.open`` during a test: the reference's ``mock_open(read_data=input)``, built on
    first use because building it costs milliseconds and few programs call ``open``."""

    def __init__(self, mock, data):
        self._mock, self._data, self._impl = mock, data, None

    def __call__(self, *args, **kwargs):
        if self._impl is None:
            self._impl = self._mock.mock_open(read_data=self._data)
        return self._impl(*args, **kwargs)


def main():
    payload = _read_payload()
    write, exit_now, monotonic = os.write, os._exit, time.monotonic
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    marker = ("@@apps-%s@@ " % payload["nonce"]).encode()
    dumps = json.dumps

    def emit(record):
        data = marker + dumps(record).encode("utf-8", "backslashreplace") + b"\n"
        while data:
            data = data[write(out_fd, data):]

    timeout = float(payload["timeout"])
    budget = float(payload["budget"])
    started = monotonic()
    state = {"virtual": 0.0, "budget_timer": False, "fired": False}

    def remaining_budget():
        return budget - (monotonic() - started) - state["virtual"]

    def stop_budget():
        signal.setitimer(signal.ITIMER_REAL, 0)
        emit({"budget": True})
        exit_now(0)

    def on_alarm(signum, frame):
        if state["budget_timer"]:
            stop_budget()
        state["fired"] = True
        print("alarm went off")
        raise TimeoutException

    def arm():
        """Start a test's timer: the per-test timeout, or what is left of the budget if less."""
        left = remaining_budget()
        if left <= 0:
            stop_budget()
        state["fired"] = False
        state["budget_timer"] = left < timeout
        state["armed_at"] = monotonic()
        state["armed_for"] = min(timeout, left)
        signal.setitimer(signal.ITIMER_REAL, state["armed_for"])

    def disarm():
        signal.setitimer(signal.ITIMER_REAL, 0)

    signal.signal(signal.SIGALRM, on_alarm)
    from unittest import mock  # preloaded in the worker; must come before the guard

    sys.stdin = io.StringIO("")
    sink = open(os.devnull, "w")
    sys.stdout = sink
    mode = payload["mode"]
    code = payload["code"]
    # The reference imports numpy (and the rest of the prelude) before its guard; numpy's import
    # needs functions the guard disables, so import them here while they still work.
    exec(PRELUDE, {})
    reliability_guard()

    # Load the candidate as module tmp_sol under the timer; any Exception here is a compile error.
    module = types.ModuleType("tmp_sol")
    source = PRELUDE + (code if mode == "call" else wrap_stdin_program(code))
    arm()
    try:
        exec(compile(source, "tmp_sol", "exec"), module.__dict__)
        target = module.Solution() if (mode == "call" and "class Solution" in code) else module
        disarm()
    except Exception as exc:
        disarm()
        emit({"compile_error": "%s: %s" % (type(exc).__name__, str(exc)[:300])})
        emit({"end": True})
        exit_now(0)
    except BaseException as exc:  # SystemExit at import kills the reference's child: all tests -1
        disarm()
        emit({"crash": type(exc).__name__})
        exit_now(0)
    try:
        method = getattr(target, payload["fn_name"] if mode == "call" else "code")
    except Exception as exc:
        emit({"compile_error": "cannot get method: %s" % exc})
        emit({"end": True})
        exit_now(0)

    for index, inputs in enumerate(payload["inputs"]):
        if mode == "call":
            try:
                if isinstance(inputs[0], dict):
                    inputs = [{int(k): v for k, v in inputs[0].items()}]
            except Exception:
                pass
            arm()
            try:
                output = method(*inputs)
                if isinstance(output, tuple):
                    output = list(output)
                record = {"i": index, "kind": "ok", "value": encode_value(output)}
                disarm()
            except Exception as exc:
                disarm()
                kind = "timeout" if isinstance(exc, TimeoutException) else "error"
                record = {"i": index, "kind": kind, "error": "%s: %s" % (type(exc).__name__, str(exc)[:200])}
            except BaseException as exc:  # sys.exit in a call-based method ends the reference's child
                disarm()
                emit({"crash": type(exc).__name__})
                exit_now(0)
            sys.stdout = sink
            emit(record)
        else:
            if isinstance(inputs, list):
                inputs = "\n".join(inputs)
            line_iter = iter(inputs.split("\n"))

            def fake_input(*args, _it=line_iter):
                for line in _it:
                    return line
                # The reference loops forever here until its timer fires.
                if state["fired"]:
                    stop_budget()  # no timer left: the reference would hang until the global kill
                spent = monotonic() - state["armed_at"]
                disarm()
                state["virtual"] += max(0.0, state["armed_for"] - spent)
                if state["budget_timer"]:
                    stop_budget()
                state["fired"] = True
                print("alarm went off")
                raise TimeoutException

            fake_stdin = io.StringIO(inputs)
            fake_stdin.readline = lambda *a, _it=line_iter: next(_it)
            fake_stdin.readlines = lambda *a, _data=inputs: _data.split("\n")
            fake_stdin.read = lambda *a, _data=inputs: _data
            lazy_open = _LazyMockOpen(mock, inputs)
            capture = io.StringIO()
            capture.close = lambda x: 1  # same quirk as the reference: close() with no arg raises
            saved = (builtins.open, builtins.input, sys.stdin)
            sys.stdout = capture
            arm()
            kind, error = "ok", None
            try:
                # Plain assignments instead of mock.patch: same effect, a fraction of the cost.
                builtins.open, builtins.input, sys.stdin = lazy_open, fake_input, fake_stdin
                try:
                    method()
                except SystemExit:
                    pass
                disarm()
            except Exception as exc:
                disarm()
                kind = "timeout" if isinstance(exc, TimeoutException) else "error"
                error = "%s: %s" % (type(exc).__name__, str(exc)[:200])
            except BaseException as exc:
                disarm()
                emit({"crash": type(exc).__name__})
                exit_now(0)
            finally:
                builtins.open, builtins.input, sys.stdin = saved
            sys.stdout = sink
            if kind == "ok":
                emit({"i": index, "kind": "ok", "lines": capture.getvalue().splitlines()})
            else:
                emit({"i": index, "kind": kind, "error": error})
        if remaining_budget() <= 0:
            stop_budget()
    emit({"end": True})
    exit_now(0)


if __name__ == "__main__":
    main()
