"""Checkpoint averaging on tiny hand-made safetensors checkpoints, values checked by hand.

The averaging needs torch, so one script runs every case in the training environment's python and
reports what it saw as JSON; the assertions are made here.
"""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from tasks.sft.average import atomic_dir, find_checkpoints
from tasks.sft.cli import ROOT, main as sft_main, train_python

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, shutil
    from pathlib import Path
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tasks.sft.average import average_checkpoints

    root = Path(sys.argv[1])
    report = {"errors": {}}

    def checkpoint(name, tensors, shards=None):
        d = root / name
        d.mkdir()
        if shards is None:
            save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
        else:  # {file: [names]}
            weight_map = {}
            for fname, names in shards.items():
                save_file({n: tensors[n] for n in names}, str(d / fname), metadata={"format": "pt"})
                weight_map.update({n: fname for n in names})
            (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        (d / "config.json").write_text(json.dumps({"model_type": "llama", "from": name}))
        (d / "tokenizer.json").write_text("{}")
        (d / "generation_config.json").write_text("{}")
        for junk in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"):
            (d / junk).write_bytes(b"x")
        return d

    f32 = torch.float32
    bf16 = torch.bfloat16
    a = checkpoint("a", {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([256.0, 1.0], dtype=bf16)})
    b = checkpoint("b", {"w": torch.tensor([[3.0, 4.0], [5.0, 6.0]]), "b": torch.tensor([1.0, 2.0], dtype=bf16)})
    c = checkpoint("c", {"w": torch.tensor([[5.0, 9.0], [1.0, 2.0]]), "b": torch.tensor([1.0, 6.0], dtype=bf16)})

    def dump(folder):
        out = {"files": sorted(p.name for p in folder.iterdir()), "tensors": {}}
        for f in folder.glob("*.safetensors"):
            with safe_open(str(f), framework="pt") as fh:
                for n in fh.keys():
                    t = fh.get_tensor(n)
                    out["tensors"][n] = {"file": f.name, "dtype": str(t.dtype), "values": t.float().tolist()}
        return out

    report["summary"] = average_checkpoints([a, b, c], root / "avg")
    report["avg"] = dump(root / "avg")
    report["config"] = json.loads((root / "avg" / "config.json").read_text())

    # Sharded checkpoints keep their shard layout and index.
    shards = {"model-00001-of-00002.safetensors": ["w"], "model-00002-of-00002.safetensors": ["b"]}
    sa = checkpoint("sa", {"w": torch.ones(2, 2), "b": torch.zeros(3)}, shards)
    sb = checkpoint("sb", {"w": torch.full((2, 2), 3.0), "b": torch.full((3,), 2.0)}, shards)
    average_checkpoints([sa, sb], root / "savg")
    report["savg"] = dump(root / "savg")

    # A rerun replaces the old result.
    average_checkpoints([a, a], root / "avg")
    report["rerun"] = dump(root / "avg")

    def error(case, dirs):
        try:
            average_checkpoints(dirs, root / ("out-" + case))
        except Exception as exc:
            report["errors"][case] = [type(exc).__name__, str(exc), (root / ("out-" + case)).exists()]

    error("missing", [a, checkpoint("missing", {"w": torch.zeros(2, 2)})])
    error("extra", [a, checkpoint("extra", {"w": torch.zeros(2, 2), "b": torch.zeros(2, dtype=bf16),
                                            "x": torch.zeros(1)})])
    error("shape", [a, checkpoint("shape", {"w": torch.zeros(2, 3), "b": torch.zeros(2, dtype=bf16)})])
    error("dtype", [a, checkpoint("dtype", {"w": torch.zeros(2, 2), "b": torch.zeros(2)})])
    (root / "empty").mkdir()
    error("noweights", [a, root / "empty"])
    error("none", [])
    report["leftovers"] = sorted(p.name for p in root.iterdir() if p.name.startswith("."))
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    python = train_python()
    if not python.exists():
        pytest.fail(f"training environment python not found at {python}: `make install` builds it "
                    "(or set SKILLFLOW_TRAIN_PYTHON)")
    root = tmp_path_factory.mktemp("avg")
    proc = subprocess.run([str(python), "-c", SCRIPT, str(root)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, json.loads(proc.stdout.strip().splitlines()[-1])


def test_mean_by_hand(report):
    _, r = report
    w = r["avg"]["tensors"]["w"]
    assert w["dtype"] == "torch.float32"
    assert w["values"] == [[3.0, 5.0], [3.0, 4.0]]  # (1+3+5)/3, (2+4+9)/3, (3+5+1)/3, (4+6+2)/3


def test_low_precision_sums_in_float64_and_keeps_dtype(report):
    _, r = report
    b = r["avg"]["tensors"]["b"]
    assert b["dtype"] == "torch.bfloat16"
    # 256 + 1 + 1 in bfloat16 stays 256 (spacing 2 there); in float64 it is 258, mean exactly 86.
    assert b["values"] == [86.0, 3.0]


def test_copies_config_and_tokenizer_but_no_training_state(report):
    _, r = report
    assert r["avg"]["files"] == ["averaged_from.json", "config.json", "generation_config.json", "model.safetensors",
                                 "tokenizer.json"]
    assert r["config"]["from"] == "a"
    assert r["summary"]["num_checkpoints"] == 3 and r["summary"]["num_tensors"] == 2


def test_sharded_layout_is_kept(report):
    _, r = report
    s = r["savg"]
    assert "model.safetensors.index.json" in s["files"]
    assert s["tensors"]["w"] == {"file": "model-00001-of-00002.safetensors", "dtype": "torch.float32",
                                 "values": [[2.0, 2.0], [2.0, 2.0]]}
    assert s["tensors"]["b"]["file"] == "model-00002-of-00002.safetensors"
    assert s["tensors"]["b"]["values"] == [1.0, 1.0, 1.0]


def test_rerun_replaces_and_failures_leave_nothing(report):
    root, r = report
    assert r["rerun"]["tensors"]["w"]["values"] == [[1.0, 2.0], [3.0, 4.0]]
    assert r["leftovers"] == []
    assert all(not exists for _, _, exists in r["errors"].values())


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing", r"/missing: tensor set differs from .*/a: lacks b"),
        ("extra", r"/extra: tensor set differs from .*/a: has extra x"),
        ("shape", r"/shape: tensor w is F32\[2, 3\] but F32\[2, 2\] in .*/a"),
        ("dtype", r"/dtype: tensor b is F32\[2\] but BF16\[2\] in .*/a"),
        ("noweights", r"/empty: no model weights \(model.safetensors or model.safetensors.index.json\)"),
        ("none", r"no checkpoints to average"),
    ],
)
def test_errors_name_the_folder(report, case, pattern):
    _, r = report
    kind, message, _ = r["errors"][case]
    assert kind in ("ValueError", "FileNotFoundError")
    assert re.search(pattern, message), message


def test_find_checkpoints_orders_by_step_and_skips_last(tmp_path):
    for name in ("checkpoint-10", "checkpoint-2", "checkpoint-30", "checkpoint-5-last", "checkpoint-7"):
        (tmp_path / name).mkdir()
        if name != "checkpoint-7":  # a job killed before saving weights
            (tmp_path / name / "model.safetensors").write_bytes(b"")
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10", "checkpoint-30"]
    assert [p.name for p in find_checkpoints(tmp_path, [30, 2])] == ["checkpoint-2", "checkpoint-30"]
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for step\(s\) \[7\]; found steps \[2, 10, 30\]"):
        find_checkpoints(tmp_path, [2, 7])
    with pytest.raises(FileNotFoundError, match="no checkpoint-N folders"):
        find_checkpoints(tmp_path / "checkpoint-7")


def test_atomic_dir_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new").write_text("half")
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "old").read_text() == "kept"
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("done")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in target.iterdir()] == ["new"]


def test_cli_average_needs_the_training_environment(tmp_path, capsys):
    rc = sft_main(["average", str(tmp_path), "--out", str(tmp_path / "avg")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "training environment" in err and "-m tasks.sft.cli average" in err
