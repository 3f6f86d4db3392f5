"""Run untrusted Python fast and contained: a warm worker pool, code sessions, an HTTP service.

Public API (stdlib only; ``requests`` is imported only by :class:`HttpSandbox`):

* :class:`SandboxPool` -- ``pool.run(code, stdin=None, timeout=None, limits=None) -> ExecResult``;
* :class:`Limits`, :class:`ExecResult`;
* :class:`CodeSession`, :class:`LocalSandbox`, :class:`HttpSandbox`, :func:`build_program`,
  :func:`program_reply` -- NeMo-Skills session semantics (docs/recipes/openmath.md §5.3).
"""
from tasks.sandbox.limits import ExecResult, Limits
from tasks.sandbox.pool import SandboxPool, SandboxUnavailable, namespaces_available
from tasks.sandbox.session import (
    ERROR_PREFIXES,
    NOT_EXECUTED,
    CodeSession,
    HttpSandbox,
    LocalSandbox,
    build_program,
    program_reply,
)

__all__ = [
    "ERROR_PREFIXES", "NOT_EXECUTED", "CodeSession", "ExecResult", "HttpSandbox", "Limits", "LocalSandbox",
    "SandboxPool", "SandboxUnavailable", "build_program", "namespaces_available", "program_reply",
]
