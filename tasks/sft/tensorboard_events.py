"""Scalars from TensorBoard event files, in pure Python.

The Airflow worker follows a training job's loss and learning-rate curves (and logs them to
MLflow) while the job runs, but the worker environment has neither tensorboard nor protobuf. The
format is small enough to read directly:

* TFRecord framing: ``uint64 length | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)``,
  all little-endian. A writer that is still running may have flushed only part of the last record;
  that record is "not yet complete", not an error, and ``read_scalars`` returns the offset where it
  starts so the next poll resumes there. A complete record with a bad checksum is corruption and
  raises ``EventFileError`` naming the file and the byte offset.
* ``tensorflow.Event`` protobuf, of which only wall_time (1), step (2) and summary (5) matter; a
  summary value is a scalar if it has ``simple_value`` (what torch's SummaryWriter and the HF
  Trainer write) or a one-element float/double ``tensor`` (TF2-style scalars).

The checksum is computed in Python at about 2 MB/s: fine for scalar logs (a Trainer writes ~60
bytes per scalar), and callers polling a running job read only the new bytes via the offset.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

EVENT_FILE_GLOB = "events.out.tfevents.*"

_HEADER = 12  # uint64 length + uint32 crc
_FOOTER = 4  # uint32 crc of the data

# TensorProto.dtype values that hold scalars we can read, with their tensor_content layout.
_DT_FLOAT, _DT_DOUBLE = 1, 2
_CONTENT_FORMAT = {_DT_FLOAT: ("<f", 4), _DT_DOUBLE: ("<d", 8)}


class Scalar(NamedTuple):
    tag: str
    step: int
    value: float
    wall_time: float


@dataclass
class FileScalars:
    """The scalars read from one event file and where to resume reading it."""

    path: Path
    scalars: list[Scalar] = field(default_factory=list)
    next_offset: int = 0


class EventFileError(ValueError):
    """A corrupt record; the message names the file and the byte offset of the record."""


# --- crc32c (Castagnoli), table-driven --------------------------------------------------------

def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: crc32c rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- protobuf wire format -----------------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of a message: ints for varint/fixed, bytes for length-delimited."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise ValueError("truncated fixed64")
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ValueError("truncated length-delimited field")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            if pos + 4 > end:
                raise ValueError("truncated fixed32")
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _f32(bits: int) -> float:
    return struct.unpack("<f", bits.to_bytes(4, "little"))[0]


def _f64(bits: int) -> float:
    return struct.unpack("<d", bits.to_bytes(8, "little"))[0]


def _tensor_scalar(buf: bytes) -> float | None:
    """The value of a one-element DT_FLOAT/DT_DOUBLE TensorProto, else None (text, histograms, ...)."""
    dtype = 0
    values: list[float] = []
    content = b""
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = value
        elif number == 5:  # float_val: packed (wire 2) or one per field (wire 5)
            if wire == 2:
                values.extend(struct.unpack(f"<{len(value) // 4}f", value))
            elif wire == 5:
                values.append(_f32(value))
        elif number == 6:  # double_val
            if wire == 2:
                values.extend(struct.unpack(f"<{len(value) // 8}d", value))
            elif wire == 1:
                values.append(_f64(value))
    if dtype not in _CONTENT_FORMAT:
        return None
    if content:
        fmt, size = _CONTENT_FORMAT[dtype]
        if len(content) != size:
            return None
        return struct.unpack(fmt, content)[0]
    return values[0] if len(values) == 1 else None


def _plugin_name(metadata: bytes) -> str:
    for number, wire, value in _fields(metadata):
        if number == 1 and wire == 2:  # SummaryMetadata.plugin_data
            for n2, w2, v2 in _fields(value):
                if n2 == 1 and w2 == 2:  # PluginData.plugin_name
                    return v2.decode("utf-8", "replace")
    return ""


def _summary_value(buf: bytes) -> tuple[str, float] | None:
    tag, simple, tensor, plugin = "", None, None, ""
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 2:
            tag = value.decode("utf-8", "replace")
        elif number == 2 and wire == 5:
            simple = _f32(value)
        elif number == 8 and wire == 2:
            tensor = value
        elif number == 9 and wire == 2:
            plugin = _plugin_name(value)
    if simple is not None:
        return tag, simple
    if tensor is not None and plugin in ("", "scalars"):
        scalar = _tensor_scalar(tensor)
        if scalar is not None:
            return tag, scalar
    return None


def _event_scalars(buf: bytes) -> list[Scalar]:
    wall_time, step, summaries = 0.0, 0, []
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 1:
            wall_time = _f64(value)
        elif number == 2 and wire == 0:
            step = value - (1 << 64) if value >= 1 << 63 else value  # int64
        elif number == 5 and wire == 2:
            summaries.append(value)
    out = []
    for summary in summaries:
        for number, wire, value in _fields(summary):
            if number == 1 and wire == 2:
                tv = _summary_value(value)
                if tv is not None:
                    out.append(Scalar(tv[0], step, tv[1], wall_time))
    return out


# --- public API ---------------------------------------------------------------------------------

def read_scalars(path_or_bytes: os.PathLike | str | bytes, offset: int = 0) -> tuple[list[Scalar], int]:
    """Scalars of the complete records from ``offset`` on, and the offset to resume from.

    ``next_offset`` is the end of the last complete record: pass it back as ``offset`` to read only
    what the writer added since. A truncated tail is skipped silently; a bad checksum or an
    undecodable event raises EventFileError naming the file and the record's byte offset.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        name, data = "<bytes>", bytes(path_or_bytes)[offset:]
    else:
        name = str(path_or_bytes)
        with open(path_or_bytes, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    scalars: list[Scalar] = []
    pos = 0
    while len(data) - pos >= _HEADER:
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked_crc32c(header) != length_crc:
            raise EventFileError(f"{name}: corrupt record at byte offset {offset + pos}: length checksum mismatch")
        end = pos + _HEADER + length + _FOOTER
        if end > len(data):
            break  # the writer has not finished this record yet
        body = data[pos + _HEADER:pos + _HEADER + length]
        (data_crc,) = struct.unpack("<I", data[end - _FOOTER:end])
        if masked_crc32c(body) != data_crc:
            raise EventFileError(f"{name}: corrupt record at byte offset {offset + pos}: data checksum mismatch")
        try:
            scalars.extend(_event_scalars(body))
        except ValueError as exc:
            raise EventFileError(f"{name}: record at byte offset {offset + pos} is not an Event: {exc}") from None
        pos = end
    return scalars, offset + pos


def event_files(folder: os.PathLike | str) -> list[Path]:
    """Every event file under ``folder`` (recursively: the Trainer writes hparams runs in sub-folders)."""
    return sorted(p for p in Path(folder).rglob(EVENT_FILE_GLOB) if p.is_file())


def scan_dir(folder: os.PathLike | str, offsets: Mapping[Path, int] | None = None) -> list[FileScalars]:
    """Read every event file under ``folder``, each from its offset in ``offsets`` (default 0).

    Feed ``{f.path: f.next_offset for f in result}`` back in to poll a running job incrementally.
    """
    offsets = offsets or {}
    out = []
    for path in event_files(folder):
        scalars, next_offset = read_scalars(path, offsets.get(path, 0))
        out.append(FileScalars(path, scalars, next_offset))
    return out
