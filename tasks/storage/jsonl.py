"""Reading and writing NeMo-Skills style jsonl files safely.

Every error names the file and the 1-based line, because users fix their data by hand, and
every write goes to a temporary file that is renamed into place so a crash never leaves a
half-written result where a complete one used to be.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


class JsonlError(ValueError):
    """A malformed line; the message names the file and line number."""

    def __init__(self, path: os.PathLike | str, line_no: int, reason: str):
        self.path = str(path)
        self.line_no = line_no
        super().__init__(f"{path}:{line_no}: {reason}")


def iter_jsonl_raw(path: os.PathLike | str, *, skip_blank: bool = True) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, raw_bytes)`` for each line, 1-based, without parsing.

    Two-pass readers use this to skip the JSON cost on lines they do not need while keeping the
    same line numbering (blank lines are counted but not yielded) as :func:`iter_jsonl`.
    """
    with open(path, "rb") as fh:
        line_no = 0
        for raw in fh:
            line_no += 1
            if not raw.strip():
                if skip_blank:
                    continue
                raise JsonlError(path, line_no, "empty line")
            yield line_no, raw


def parse_jsonl_line(path: os.PathLike | str, line_no: int, raw: bytes) -> dict[str, Any]:
    """Parse one raw line into a dict; raise :class:`JsonlError` naming ``path`` and ``line_no``.

    A line without a trailing newline that fails to parse is reported as truncated, since that is
    what an interrupted writer leaves behind.
    """
    try:
        obj = json.loads(raw.decode("utf-8", errors="strict"))
    except UnicodeDecodeError as exc:
        raise JsonlError(path, line_no, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        truncated = not raw.endswith(b"\n")
        reason = "truncated last line (no newline)" if truncated else f"invalid JSON ({exc.msg})"
        raise JsonlError(path, line_no, reason) from None
    if not isinstance(obj, dict):
        raise JsonlError(path, line_no, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def iter_jsonl_numbered(path: os.PathLike | str, *, skip_blank: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like :func:`iter_jsonl` but yields ``(line_no, obj)`` so callers can name the line in their own errors."""
    for line_no, raw in iter_jsonl_raw(path, skip_blank=skip_blank):
        yield line_no, parse_jsonl_line(path, line_no, raw)


def iter_jsonl(path: os.PathLike | str, *, skip_blank: bool = True) -> Iterator[dict[str, Any]]:
    """Yield one dict per line; raise :class:`JsonlError` naming the line that is not a JSON object.

    A last line without a newline that fails to parse is reported as truncated, since that is
    what an interrupted writer leaves behind.
    """
    for _, obj in iter_jsonl_numbered(path, skip_blank=skip_blank):
        yield obj


def read_jsonl(path: os.PathLike | str) -> list[dict[str, Any]]:
    return list(iter_jsonl(path))


@contextmanager
def atomic_writer(path: os.PathLike | str, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_jsonl(path: os.PathLike | str, rows: Iterable[dict[str, Any]]) -> int:
    """Atomically write ``rows``; returns the number of lines written."""
    n = 0
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
