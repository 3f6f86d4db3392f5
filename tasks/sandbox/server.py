"""HTTP front of a :class:`~tasks.sandbox.pool.SandboxPool`, a stand-in for the NeMo-Skills sandbox.

Endpoints (JSON in, JSON out):

* ``POST /execute`` ``{"generated_code": str, "timeout": seconds}`` -> ``{"result", "error_message"}``
  (docs/recipes/openmath.md §5.3): the program runs in the pool and its last stdout line is the reply; a timeout gives
  ``{"result": null, "error_message": "timeout"}``.
* ``POST /run`` ``{"code": str, "stdin": str?, "timeout": s?, "memory_mb": n?, "max_processes": n?,
  "max_output_bytes": n?}`` -> the raw :class:`~tasks.sandbox.limits.ExecResult` as a dict; for
  callers that want stdout/stderr/status rather than the session format (e.g. APPS tests).
* ``GET /health`` -> ``{"status": "ok", "workers": n, "isolation": {...}}``.

The standard library's ``ThreadingHTTPServer`` is enough: each request thread blocks in
``pool.run`` until a worker is free, so the pool size bounds concurrent executions.
"""
from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks.sandbox.limits import Limits
from tasks.sandbox.pool import SandboxPool
from tasks.sandbox.session import program_reply

_MAX_BODY = 16 * 1024 * 1024
_RUN_LIMIT_KEYS = ("memory_mb", "max_processes", "max_output_bytes", "cpu_s")


class BadRequest(ValueError):
    """A request the client must fix; answered with HTTP 400 and the message."""


def _timeout(body: dict[str, Any], default: float) -> float:
    value = body.get("timeout", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadRequest(f"'timeout' must be a positive number of seconds, got {value!r}")
    return float(value)


def _text(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, got {type(value).__name__}")
    return value


class SandboxHandler(BaseHTTPRequestHandler):
    server: "SandboxServer"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/") == "/health":
            pool = self.server.pool
            self._send(200, {"status": "ok", "workers": pool.size, "isolation": pool.isolation})
        else:
            self._send(404, {"error": f"unknown path {self.path}; try POST /execute, POST /run, GET /health"})

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = self._read_json()
            if self.path.rstrip("/") == "/execute":
                code = _text(body, "generated_code")
                result = self.server.pool.run(code, timeout=_timeout(body, self.server.pool.limits.timeout_s))
                self._send(200, program_reply(result))
            elif self.path.rstrip("/") == "/run":
                unknown = sorted(set(body) - {"code", "stdin", "timeout", *_RUN_LIMIT_KEYS})
                if unknown:
                    raise BadRequest(f"unknown field(s) {unknown}; valid: code, stdin, timeout, "
                                     f"{', '.join(_RUN_LIMIT_KEYS)}")
                limits = self.server.pool.limits.replace(**{k: body.get(k) for k in _RUN_LIMIT_KEYS})
                result = self.server.pool.run(_text(body, "code"), stdin=_text(body, "stdin", required=False),
                                              timeout=_timeout(body, limits.timeout_s), limits=limits)
                self._send(200, result.to_dict())
            else:
                self._send(404, {"error": f"unknown path {self.path}; try POST /execute or POST /run"})
        except (BadRequest, ValueError, TypeError) as exc:
            self._send(400, {"error": str(exc)})

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > _MAX_BODY:
            raise BadRequest(f"request body must be 1..{_MAX_BODY} bytes of JSON, got Content-Length {length}")
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            sys.stderr.write(f"sandbox {self.address_string()} {format % args}\n")


class SandboxServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` bound to a pool; ``server_address`` holds the real port after bind."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, pool: SandboxPool, verbose: bool = False):
        self.pool = pool
        self.verbose = verbose
        super().__init__((host, port), SandboxHandler)


def serve(host: str, port: int, *, workers: int | None = None, limits: Limits | None = None,
          isolation: str = "auto", preload: tuple[str, ...] = (), verbose: bool = False) -> int:
    """Run the service until interrupted; prints the bound address and the isolation in force."""
    with SandboxPool(workers=workers, limits=limits, isolation=isolation, preload=preload) as pool:
        with SandboxServer(host, port, pool, verbose=verbose) as httpd:
            bound_host, bound_port = httpd.server_address[:2]
            print(f"sandbox: listening on http://{bound_host}:{bound_port} with {pool.size} workers; "
                  f"isolation {json.dumps(pool.isolation)}", file=sys.stderr, flush=True)
            try:
                httpd.serve_forever()
            except KeyboardInterrupt:
                pass
    return 0
