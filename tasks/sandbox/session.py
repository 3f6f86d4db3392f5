"""Client side of code execution: sessions, the NeMo-Skills reply format, and two backends.

docs/recipes/openmath.md §5.3: the client, not the server, keeps a session. Each execution sends one program that
replays the session's earlier *successful* snippets and reports only the last snippet's output
as ``{"result": str | None, "error_message": str}``; any error clears the session. The program is
built here (see :mod:`tasks.sandbox.replay`; it runs the snippets in IPython, as upstream's does) and sent either to an in-process
:class:`~tasks.sandbox.pool.SandboxPool` (:class:`LocalSandbox`) or to a ``POST /execute``
service (:class:`HttpSandbox`: ours, or the NeMo-Skills sandbox image).
"""
from __future__ import annotations

import ast
import json
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tasks.sandbox.limits import ExecResult

_REPLAY_SOURCE = Path(__file__).with_name("replay.py").read_text(encoding="utf-8")

#: Prefixes of every error_message the sandbox can produce (docs/recipes/openmath.md §5.3).
ERROR_PREFIXES = ("Execution error:", "Syntax error:", "Result is not defined", "timeout", "Undefined error:")
NOT_EXECUTED = "<not_executed>"
#: Modules worth importing once per worker for session programs (ours and NeMo-Skills' run IPython).
PROGRAM_PRELOAD = ("IPython.core.interactiveshell",)


def as_upstream_sends(code: str) -> str | None:
    """``code`` as IPython receives it from NeMo-Skills' client (9b7f9d57, ``Sandbox.execute_code``).

    That client writes each snippet, with ``\"\"\"`` escaped, into a triple-quoted, non-raw string
    literal of the program it sends, so Python decodes the escape sequences of the model's code
    once: ``print("a\\nb")`` reaches IPython with a real line break inside the string (a syntax
    error there), ``"\\\\d"`` arrives as ``"\\d"``. Returns None when that literal does not parse
    (the code ends in ``"`` or in an odd backslash, has a bad ``\\N{...}`` or a NUL): upstream's whole
    program then fails to compile, its server never answers, and its client reports ``timeout``.
    """
    literal = '"""' + code.replace('"""', r'\"\"\"') + '"""'
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes such as \d stay as written, with a warning
            tree = ast.parse(literal, mode="eval")
    except (SyntaxError, ValueError):
        return None
    if not (isinstance(tree.body, ast.Constant) and isinstance(tree.body.value, str)):
        return None
    return tree.body.value


def build_program(snippets: list[str], max_output_characters: int = 1000) -> str:
    """The Python program that replays ``snippets`` and prints the reply JSON as its last line."""
    return (f"{_REPLAY_SOURCE}\n\nreplay_main({json.dumps(json.dumps(snippets))}, "
            f"{int(max_output_characters)})\n")


def program_reply(result: ExecResult) -> dict[str, Any]:
    """Turn a program's :class:`ExecResult` into the ``/execute`` reply.

    A timeout gives ``{"result": None, "error_message": "timeout"}`` as upstream does. Otherwise
    the last line of stdout must be a JSON object with ``result`` and ``error_message`` (what
    programs built by :func:`build_program` and NeMo-Skills' client print). A program that ended
    (status ``error`` or ``signal``: it did not compile, or died) without one is also answered
    ``timeout``: upstream's server (local_sandbox_server.py, 9b7f9d57) waits forever for the reply
    of such a program and its client reports ``timeout``, which is what the model saw. Anything
    else (the pool's own failure, output over the cap) is ``Undefined error:`` with the program's
    output, so the caller sees why.
    """
    if result.status == "timeout":
        return {"result": None, "error_message": "timeout"}
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if lines:
        try:
            reply = json.loads(lines[-1])
        except json.JSONDecodeError:
            reply = None
        if isinstance(reply, dict) and "error_message" in reply and "result" in reply:
            return {"result": reply["result"], "error_message": str(reply["error_message"])}
    if result.status in ("error", "signal"):
        return {"result": None, "error_message": "timeout"}
    detail = (f"program ended with status {result.status} (exit {result.exit_code}, signal {result.signal}) "
              f"without printing a JSON reply\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return {"result": None, "error_message": "Undefined error:" + detail}


class Sandbox(Protocol):
    """Anything that runs a program and returns the ``/execute`` reply."""

    def execute_program(self, program: str, timeout: float) -> dict[str, Any]: ...


class LocalSandbox:
    """Runs programs in an in-process :class:`~tasks.sandbox.pool.SandboxPool`."""

    def __init__(self, pool: Any):
        self.pool = pool

    def execute_program(self, program: str, timeout: float) -> dict[str, Any]:
        return program_reply(self.pool.run(program, timeout=timeout))


class HttpSandbox:
    """Client of ``POST {url}/execute`` (docs/recipes/openmath.md §5.3).

    Deliberate difference from upstream: upstream's HTTP timeout equals the execution timeout,
    so a slow but successful reply races the server's own kill and turns into retries and then
    ``timeout`` (docs/recipes/openmath.md §12.10). We give the HTTP request ``timeout + http_slack_s`` and keep
    upstream's 3 retries at 1 s intervals for request timeouts and refused connections.
    """

    def __init__(self, url: str, *, retries: int = 3, retry_interval_s: float = 1.0, http_slack_s: float = 5.0,
                 max_parallel: int = 32):
        self.url = url.rstrip("/")
        self.retries = retries
        self.retry_interval_s = retry_interval_s
        self.http_slack_s = http_slack_s
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._local = threading.local()

    def _session(self) -> Any:
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def execute_program(self, program: str, timeout: float) -> dict[str, Any]:
        import requests

        body = {"generated_code": program, "timeout": timeout}
        with self._slots:
            for attempt in range(self.retries + 1):
                try:
                    resp = self._session().post(f"{self.url}/execute", json=body, timeout=timeout + self.http_slack_s)
                except (requests.Timeout, requests.ConnectionError):
                    if attempt == self.retries:
                        return {"result": None, "error_message": "timeout"}
                    time.sleep(self.retry_interval_s)
                    continue
                if resp.status_code != 200:
                    return {"result": None,
                            "error_message": f"Undefined error: sandbox {self.url}/execute answered HTTP "
                                             f"{resp.status_code}: {resp.text[:500]}"}
                reply = resp.json()
                return {"result": reply.get("result"), "error_message": str(reply.get("error_message", ""))}
        raise AssertionError("unreachable")


@dataclass
class CodeSession:
    """Earlier successful snippets of one sample's solution, replayed before each new one."""

    snippets: list[str] = field(default_factory=list)

    def execute(self, sandbox: Sandbox, code: str, *, timeout: float = 10.0,
                max_output_characters: int = 1000) -> dict[str, Any]:
        """Run ``code`` after the session's snippets; return ``{"result", "error_message"}``.

        On success ``code`` joins the session; any error (including "Result is not defined",
        which is an error_message like the others) clears it, as docs/recipes/openmath.md §5.3 says.
        """
        sent = [as_upstream_sends(c) for c in (*self.snippets, code)]
        if any(c is None for c in sent):
            reply = {"result": None, "error_message": "timeout"}  # what upstream's client reports then
        else:
            program = build_program(sent, max_output_characters)  # type: ignore[arg-type]
            reply = sandbox.execute_program(program, timeout)
        if reply["error_message"]:
            self.snippets.clear()
        else:
            self.snippets.append(code)
        return reply
