"""``skillflow sft {gguf-to-hf,hf-to-gguf,average,tb-dump}``: the `local` profile's model plumbing.

``tb-dump`` runs anywhere (pure Python). The other three need torch, transformers and gguf, which
only the training environment (``.venv-train``, built by ``make install``) has; the Airflow
worker's environment deliberately lacks them. So this module is also runnable on its own:
``.venv-train/bin/python -m tasks.sft.cli gguf-to-hf ...`` from the repository root.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TRAIN_PYTHON_ENV = "SKILLFLOW_TRAIN_PYTHON"
_TRAIN_MODULES = ("torch", "transformers", "gguf", "safetensors")


def train_python() -> Path:
    """The training environment's interpreter: ``$SKILLFLOW_TRAIN_PYTHON`` or ``ROOT/.venv-train/bin/python``."""
    return Path(os.environ.get(TRAIN_PYTHON_ENV) or ROOT / ".venv-train" / "bin" / "python")


def _user_error(message: str) -> Exception:
    from tasks.cli import UserError

    return UserError(message)


def _need_training_env(command: str) -> None:
    missing = [m for m in _TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise _user_error(
            f"`sft {command}` needs {', '.join(missing)}, which this Python ({sys.executable}) lacks; run it with "
            f"the training environment's python from {ROOT}: {train_python()} -m tasks.sft.cli {command} ... "
            "(`make install` builds .venv-train)"
        )


def _run(fn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        raise _user_error(str(exc)) from exc


def handle_gguf_to_hf(args: argparse.Namespace) -> int:
    _need_training_env("gguf-to-hf")
    from tasks.sft.gguf_convert import gguf_to_hf

    out = _run(gguf_to_hf, args.gguf, args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def handle_hf_to_gguf(args: argparse.Namespace) -> int:
    _need_training_env("hf-to-gguf")
    from tasks.sft.gguf_convert import hf_to_gguf

    out = _run(hf_to_gguf, args.hf_dir, args.template, args.out, dtype=args.dtype)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def handle_average(args: argparse.Namespace) -> int:
    _need_training_env("average")
    from tasks.sft.average import average_checkpoints, find_checkpoints

    if bool(args.checkpoints) == bool(args.training_dir):
        raise _user_error("give either checkpoint folders or --training-dir (not both)")
    if args.steps and not args.training_dir:
        raise _user_error("--steps needs --training-dir")
    dirs = args.checkpoints or _run(find_checkpoints, args.training_dir, args.steps)
    summary = _run(average_checkpoints, dirs, args.out)
    print(json.dumps(summary))
    return 0


def handle_tb_dump(args: argparse.Namespace) -> int:
    from tasks.sft.tensorboard_events import read_scalars, scan_dir

    folder = Path(args.folder)
    if folder.is_file():
        files = [(folder, _run(read_scalars, folder)[0])]
        base = folder.parent
    elif folder.is_dir():
        files = [(f.path, f.scalars) for f in _run(scan_dir, folder)]
        base = folder
    else:
        raise _user_error(f"no such file or folder: {folder}")
    tags = set(args.tag or ())
    for path, scalars in files:
        rel = str(path.relative_to(base))
        for s in scalars:
            if tags and s.tag not in tags:
                continue
            print(json.dumps({"file": rel, "tag": s.tag, "step": s.step, "value": s.value, "wall_time": s.wall_time}))
    return 0


def _add_commands(sub: Any) -> None:
    p = sub.add_parser("gguf-to-hf", help="dequantize a GGUF model into a float32 HF checkpoint (training env)")
    p.add_argument("gguf", metavar="MODEL.gguf")
    p.add_argument("out", metavar="OUT_DIR", help="HF checkpoint folder (replaced atomically)")
    p.set_defaults(handler=handle_gguf_to_hf)

    p = sub.add_parser("hf-to-gguf", help="write an HF checkpoint as a GGUF llama.cpp serves (training env)",
                       description="Metadata and tensor layout come from TEMPLATE, weights from HF_DIR.")
    p.add_argument("hf_dir", metavar="HF_DIR", help="save_pretrained folder or Trainer checkpoint-N")
    p.add_argument("template", metavar="TEMPLATE.gguf", help="the GGUF the model was trained from")
    p.add_argument("out", metavar="OUT.gguf", help="written atomically")
    p.add_argument("--dtype", choices=["f16", "f32", "template"], default="f16",
                   help="tensor type of matrices; 'template' re-quantizes to the template's types")
    p.set_defaults(handler=handle_hf_to_gguf)

    p = sub.add_parser("average",
                       help="element-wise mean of HF checkpoints (training env; docs/recipes/openmath.md §10.3)")
    p.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT_DIR")
    p.add_argument("--training-dir", metavar="DIR", help="average its checkpoint-N folders (all, or --steps)")
    p.add_argument("--steps", nargs="+", type=int, metavar="N", help="only these checkpoint steps")
    p.add_argument("--out", required=True, metavar="DIR", help="averaged checkpoint folder (replaced atomically)")
    p.set_defaults(handler=handle_average)

    p = sub.add_parser("tb-dump", help="print the scalars of TensorBoard event files as jsonl")
    p.add_argument("folder", metavar="FOLDER_OR_FILE", help="searched recursively for events.out.tfevents.*")
    p.add_argument("--tag", action="append", metavar="TAG", help="only this tag (repeatable)")
    p.set_defaults(handler=handle_tb_dump)


def register(subparsers: Any) -> None:
    """Add ``sft`` with its sub-commands to the ``skillflow`` parser."""
    parser = subparsers.add_parser("sft", help="local SFT model plumbing: GGUF conversion, averaging, TensorBoard")
    _add_commands(parser.add_subparsers(dest="sft_command", required=True, metavar="STEP"))


def build_parser() -> argparse.ArgumentParser:
    """The sft sub-commands at top level, for ``python -m tasks.sft.cli`` in the training environment."""
    parser = argparse.ArgumentParser(prog="python -m tasks.sft.cli", description=__doc__.splitlines()[0])
    _add_commands(parser.add_subparsers(dest="sft_command", required=True, metavar="STEP"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Same exit codes as ``skillflow``: 2 with a one-line message for errors the user fixes."""
    from tasks.cli import run_cli

    return run_cli(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
