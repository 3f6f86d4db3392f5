"""The pure-Python TensorBoard reader against files written by the real torch SummaryWriter.

The event files are made by the training environment's python (torch + tensorboard) in a
subprocess, which also reads them back with tensorboard's own loader as the expected answer; the
reader itself runs here, in the Airflow worker's environment, which has neither package.
"""
from __future__ import annotations

import json
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

from tasks.sft.cli import ROOT, main as sft_main, train_python
from tasks.sft.tensorboard_events import (
    EventFileError,
    Scalar,
    crc32c,
    masked_crc32c,
    read_scalars,
    scan_dir,
)

WRITER = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    folder = sys.argv[1]
    w = SummaryWriter(folder)
    w.add_text("args", "{\\"learning_rate\\": 1e-05}", 0)    # what the HF Trainer logs first
    for step in (10, 20, 30):
        w.add_scalar("train/loss", 3.0 / step, step)
        w.add_scalar("train/learning_rate", 1e-5, step)
        w.add_scalar("train/grad_norm", 0.5 * step, step)
    w.add_scalar("eval/loss", 1.25, 30)
    w.add_histogram("weights", torch.arange(10.0), 30)
    w.add_scalar("tf2/style", 0.75, 40, new_style=True)      # tensor-valued scalar
    w.add_hparams({"lr": 1e-5}, {"hparam/accuracy": 0.5})   # a second event file in a sub-folder
    w.close()

    expected = {}
    import glob, os
    for path in sorted(glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True)):
        rows = []
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    rows.append([v.tag, event.step, v.simple_value, event.wall_time])
                elif v.metadata.plugin_data.plugin_name == "scalars":
                    rows.append([v.tag, event.step, float(v.tensor.float_val[0]), event.wall_time])
        expected[os.path.relpath(path, folder)] = rows
    print(json.dumps(expected))
    """
)


@pytest.fixture(scope="module")
def tb_dir(tmp_path_factory) -> tuple[Path, dict]:
    python = train_python()
    if not python.exists():
        pytest.fail(f"training environment python not found at {python}: `make install` builds it "
                    "(or set SKILLFLOW_TRAIN_PYTHON)")
    folder = tmp_path_factory.mktemp("tb")
    proc = subprocess.run([str(python), "-c", WRITER, str(folder)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, json.loads(proc.stdout.strip().splitlines()[-1])


def _main_file(folder: Path) -> Path:
    (path,) = folder.glob("events.out.tfevents.*")
    return path


def test_crc32c_known_vectors():
    # RFC 3720 test vector and the classic "123456789" check value.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"") == 0


def test_matches_tensorboards_own_reader(tb_dir):
    folder, expected = tb_dir
    got = {str(f.path.relative_to(folder)): [list(s) for s in f.scalars] for f in scan_dir(folder)}
    assert got.keys() == expected.keys() and len(got) == 2
    for name, rows in expected.items():
        assert len(got[name]) == len(rows), name
        for g, e in zip(got[name], rows):
            assert g[:2] == e[:2]
            assert g[2] == pytest.approx(e[2], rel=1e-7)
            assert g[3] == pytest.approx(e[3], abs=1e-6)


def test_trainer_tags_values_and_steps(tb_dir):
    folder, _ = tb_dir
    scalars, next_offset = read_scalars(_main_file(folder))
    by_tag: dict[str, list[tuple[int, float]]] = {}
    for s in scalars:
        assert isinstance(s, Scalar)
        by_tag.setdefault(s.tag, []).append((s.step, s.value))
    # text and histogram values are not scalars
    assert set(by_tag) == {"train/loss", "train/learning_rate", "train/grad_norm", "eval/loss", "tf2/style"}
    assert by_tag["train/loss"] == [(10, pytest.approx(0.3)), (20, pytest.approx(0.15)), (30, pytest.approx(0.1))]
    assert by_tag["train/learning_rate"] == [(s, pytest.approx(1e-5)) for s in (10, 20, 30)]
    assert by_tag["eval/loss"] == [(30, 1.25)]
    assert by_tag["tf2/style"] == [(40, 0.75)]
    assert next_offset == _main_file(folder).stat().st_size
    hparams = [f for f in scan_dir(folder) if f.path.parent != folder]
    assert [(s.tag, s.value) for s in hparams[0].scalars] == [("hparam/accuracy", 0.5)]


def test_truncated_tail_is_pending_and_reading_resumes(tb_dir, tmp_path):
    data = _main_file(tb_dir[0]).read_bytes()
    full, end = read_scalars(data)
    # Find the record boundaries, then cut the file inside the last record.
    bounds, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        pos += 12 + length + 4
        bounds.append(pos)
    assert bounds[-1] == end == len(data)
    for cut in (bounds[-2] + 5, bounds[-2] + 12, len(data) - 1):   # in the header, at the data, before the crc
        part = tmp_path / "events.out.tfevents.partial"
        part.write_bytes(data[:cut])
        scalars, next_offset = read_scalars(part)
        assert next_offset == bounds[-2]
        assert scalars == full[:len(scalars)] and len(scalars) < len(full)
        # The writer finishes the record; reading from next_offset returns only the rest.
        part.write_bytes(data)
        rest, final = read_scalars(part, next_offset)
        assert scalars + rest == full and final == len(data)


def test_corrupt_crc_names_file_and_offset(tb_dir, tmp_path):
    data = bytearray(_main_file(tb_dir[0]).read_bytes())
    (first_len,) = struct.unpack("<Q", data[:8])
    second = 12 + first_len + 4
    data[second + 12] ^= 0xFF  # flip a byte inside the second record's data
    bad = tmp_path / "events.out.tfevents.bad"
    bad.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=rf"{bad}: corrupt record at byte offset {second}: data checksum"):
        read_scalars(bad)
    data = bytearray(_main_file(tb_dir[0]).read_bytes())
    data[second + 9] ^= 0x01  # the length checksum
    bad.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=rf"byte offset {second}: length checksum"):
        read_scalars(bad)


def _record(payload: bytes) -> bytes:
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


def _key(number: int, wire: int) -> bytes:
    return bytes([number << 3 | wire])


def _ld(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return _key(number, 2) + bytes([len(payload)]) + payload


def _event(step: int, tensor: bytes) -> bytes:
    value = _ld(1, b"t") + _ld(8, tensor)
    return _key(1, 1) + struct.pack("<d", 1.5) + _key(2, 0) + bytes([step]) + _ld(5, _ld(1, value))


def test_tensor_encodings_written_by_other_writers():
    """TF writes tensor scalars as tensor_content or unpacked float_val; strings are not scalars."""
    dt_float, dt_double, dt_string = _key(1, 0) + b"\x01", _key(1, 0) + b"\x02", _key(1, 0) + b"\x07"
    records = [
        _event(1, dt_float + _ld(4, struct.pack("<f", 0.5))),        # tensor_content, float32
        _event(2, dt_double + _ld(4, struct.pack("<d", 0.125))),     # tensor_content, float64
        _event(3, dt_float + _key(5, 5) + struct.pack("<f", 2.0)),   # float_val, unpacked
        _event(4, dt_double + _key(6, 1) + struct.pack("<d", 4.0)),  # double_val, unpacked
        _event(5, dt_string + _ld(8, b"text")),                      # string_val: skipped
        _event(6, dt_float + _ld(5, struct.pack("<2f", 1.0, 2.0))),  # two values: not a scalar
    ]
    records = [_record(r) for r in records]
    scalars, end = read_scalars(b"".join(records))
    assert [(s.step, s.value, s.wall_time) for s in scalars] == [(1, 0.5, 1.5), (2, 0.125, 1.5), (3, 2.0, 1.5),
                                                                 (4, 4.0, 1.5)]
    assert end == sum(map(len, records))
    assert read_scalars(b"") == ([], 0)


def test_cli_tb_dump(tb_dir, capsys):
    folder, _ = tb_dir
    assert sft_main(["tb-dump", str(folder), "--tag", "eval/loss"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"file": _main_file(folder).name, "tag": "eval/loss", "step": 30, "value": 1.25,
                     "wall_time": rows[0]["wall_time"]}]
    assert sft_main(["tb-dump", str(folder / "nothing")]) == 2
