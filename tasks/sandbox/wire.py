"""The pool <-> worker framing: a small JSON header, then raw bodies that no Python object holds.

Why raw bodies: every execution is forked from the worker's memory, so the worker must never hold
an execution's code, stdin or output in it; freed objects keep their bytes, and a program can read
its whole address space. The worker therefore moves bodies between the control pipes and
anonymous files in the kernel (``splice(2)`` in, ``sendfile(2)`` out). It also saves the
output's cost: one decode in the pool, where JSON would escape each NUL byte of a sparse file
into six.

A frame is a 4-byte big-endian header length, the header (JSON, ASCII), then the bodies whose byte
counts the header names (``bodies``), in that order. Headers carry only limits, statuses and sizes.
"""
from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

_LENGTH = struct.Struct(">I")
#: A header is never larger than this; a bigger length means the stream is corrupt.
MAX_HEADER = 1 << 16


class WireError(RuntimeError):
    """The other side closed the stream, broke the framing or missed the deadline."""


def header_frame(header: dict[str, Any]) -> bytes:
    data = json.dumps(header, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_HEADER:
        raise ValueError(f"frame header of {len(data)} bytes exceeds {MAX_HEADER}")
    return _LENGTH.pack(len(data)) + data


# -- worker side: blocking, bodies never enter user space ----------------------------------------

def read_header(fd: int) -> dict[str, Any] | None:
    """The next header from ``fd``, or ``None`` at a clean end of stream."""
    raw = _read_exact_blocking(fd, _LENGTH.size, eof_ok=True)
    if raw is None:
        return None
    (length,) = _LENGTH.unpack(raw)
    if length > MAX_HEADER:
        raise WireError(f"frame header length {length} exceeds {MAX_HEADER}")
    return json.loads(_read_exact_blocking(fd, length))


def _read_exact_blocking(fd: int, n: int, eof_ok: bool = False) -> bytes | None:
    parts, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            if eof_ok and got == 0:
                return None
            raise WireError(f"stream ended {n - got} bytes into a {n}-byte frame part")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def splice_body(pipe_fd: int, file_fd: int, n: int) -> None:
    """Move ``n`` bytes from the pipe ``pipe_fd`` to ``file_fd`` inside the kernel."""
    while n > 0:
        moved = os.splice(pipe_fd, file_fd, n)
        if moved == 0:
            raise WireError(f"stream ended with {n} body bytes outstanding")
        n -= moved


def send_body(out_fd: int, file_fd: int, n: int) -> None:
    """Send the first ``n`` bytes of ``file_fd`` to ``out_fd`` inside the kernel (holes read as NUL)."""
    offset = 0
    while offset < n:
        sent = os.sendfile(out_fd, file_fd, offset, n - offset)
        if sent == 0:  # the file ended early; the receiver still expects n bytes
            pad = min(n - offset, 1 << 16)
            write_all(out_fd, bytes(pad))
            sent = pad
        offset += sent


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- pool side: deadlines, bodies land in exactly one buffer --------------------------------------

class FrameReader:
    """Reads frames from a worker's stdout pipe with a deadline on the whole frame."""

    def __init__(self, fd: int):
        self.fd = fd

    def header(self, deadline: float) -> dict[str, Any]:
        (length,) = _LENGTH.unpack(self.exact(_LENGTH.size, deadline))
        if length > MAX_HEADER:
            raise WireError(f"frame header length {length} exceeds {MAX_HEADER}")
        return json.loads(self.exact(length, deadline).decode("ascii"))

    def exact(self, n: int, deadline: float) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise WireError(f"no data from the worker before the deadline ({got}/{n} bytes)")
            chunk = os.readv(self.fd, [view[got:]])
            if chunk == 0:
                raise WireError(f"worker closed its stream {n - got} bytes into a {n}-byte read")
            got += chunk
        view.release()
        return buf

    def text(self, n: int, deadline: float) -> str:
        """``n`` body bytes decoded as UTF-8 with replacement; the raw buffer is freed at once."""
        if n == 0:
            return ""
        buf = self.exact(n, deadline)
        try:
            return buf.decode("utf-8", errors="replace")
        finally:
            del buf
