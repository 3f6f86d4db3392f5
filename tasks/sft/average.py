"""Checkpoint averaging: the `local` profile's stand-in for NeMo-Skills' ``average_checkpoints.py``.

The recipe evaluates the element-wise mean of the saved checkpoints rather than the last one
(docs/recipes/openmath.md §10.3), so this averages Hugging Face checkpoint folders (``save_pretrained`` output
or the Trainer's ``checkpoint-N``) tensor by tensor. Sums are kept in float64 so that averaging many
bf16/fp16 checkpoints does not lose precision, and the result is written in each tensor's original
dtype with the shard layout of the first checkpoint, so every consumer of a checkpoint reads it.

The checkpoint-reading helpers here are shared with ``gguf_convert``. Runs in the training
environment (.venv-train): torch and safetensors are imported inside the functions.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# What a checkpoint needs besides its weights to be loaded and prompted; the Trainer's optimizer,
# scheduler, RNG and trainer state are deliberately left behind (they describe one run, not a model).
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)


@contextmanager
def atomic_dir(out_dir: os.PathLike | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out_dir``; it becomes ``out_dir`` only on success.

    A crash or an error leaves no half-written model where a consumer could pick it up. An
    existing ``out_dir`` is replaced (a rerun of the same step), and removed only after the new
    folder is in place.
    """
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; the result is for other jobs too
    try:
        yield tmp
        mode = 0o666 & ~current_umask()
        for path in tmp.rglob("*"):  # safetensors writes its files private, too
            if path.is_file():
                os.chmod(path, mode)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def current_umask() -> int:
    """The process umask: from /proc where it can be read without briefly changing it (threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def weight_files(checkpoint_dir: os.PathLike | str) -> dict[str, list[str]]:
    """Map each safetensors file of a checkpoint to the tensor names it should hold.

    Sharded checkpoints are read through ``model.safetensors.index.json``; a single-file one has
    ``model.safetensors``. Raises FileNotFoundError naming the folder when neither is there.
    """
    folder = Path(checkpoint_dir)
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{index}: not a safetensors index (no 'weight_map'): {exc}") from None
        files: dict[str, list[str]] = {}
        for name, fname in weight_map.items():
            files.setdefault(fname, []).append(name)
        for fname in files:
            if not (folder / fname).is_file():
                raise FileNotFoundError(f"{folder}: shard {fname} named in {INDEX_FILE} is missing")
        return files
    single = folder / SINGLE_FILE
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as fh:
            return {SINGLE_FILE: list(fh.keys())}
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    raise FileNotFoundError(f"{folder}: no model weights ({SINGLE_FILE} or {INDEX_FILE})")


def load_state_dict(checkpoint_dir: os.PathLike | str) -> dict[str, "torch.Tensor"]:
    """All tensors of a checkpoint folder (single-file or sharded), by their Hugging Face name."""
    from safetensors.torch import load_file

    folder = Path(checkpoint_dir)
    state: dict[str, Any] = {}
    for fname in weight_files(folder):
        state.update(load_file(str(folder / fname)))
    return state


def find_checkpoints(training_dir: os.PathLike | str, steps: Sequence[int] | None = None) -> list[Path]:
    """The ``checkpoint-N`` folders with weights under ``training_dir``, in step order.

    Like NeMo-Skills, folders ending in ``-last`` are not averaged; with ``steps`` only those steps
    are taken, and a missing one is an error (averaging a different set silently would change the
    evaluated model).
    """
    root = Path(training_dir)
    found: dict[int, Path] = {}
    for path in root.glob("checkpoint-*"):
        step_text = path.name[len("checkpoint-"):]
        if not step_text.isdigit() or not path.is_dir():
            continue
        if (path / SINGLE_FILE).is_file() or (path / INDEX_FILE).is_file():
            found[int(step_text)] = path
    if steps:
        missing = sorted(set(steps) - set(found))
        if missing:
            raise FileNotFoundError(
                f"{root}: no checkpoint for step(s) {missing}; found steps {sorted(found) or 'none'}"
            )
        return [found[s] for s in sorted(set(steps))]
    if not found:
        raise FileNotFoundError(f"{root}: no checkpoint-N folders with weights to average")
    return [found[s] for s in sorted(found)]


def _describe(folder: Path) -> dict[str, tuple[str, tuple[int, ...], Any]]:
    """name -> (file, shape, dtype) of every tensor of a checkpoint, read from headers only."""
    from safetensors import safe_open

    out = {}
    for fname, names in weight_files(folder).items():
        with safe_open(str(folder / fname), framework="pt") as fh:
            present = set(fh.keys())
            for name in names:
                if name not in present:
                    raise ValueError(f"{folder}: tensor {name} is listed in {INDEX_FILE} but not in {fname}")
                sl = fh.get_slice(name)
                out[name] = (fname, tuple(sl.get_shape()), sl.get_dtype())
    return out


def _check_same_tensors(first: Path, ref: dict, other: Path, desc: dict) -> None:
    missing = sorted(set(ref) - set(desc))
    extra = sorted(set(desc) - set(ref))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"has extra {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise ValueError(f"{other}: tensor set differs from {first}: {'; '.join(parts)}")
    for name, (_, shape, dtype) in ref.items():
        _, o_shape, o_dtype = desc[name]
        if o_shape != shape or o_dtype != dtype:
            raise ValueError(
                f"{other}: tensor {name} is {o_dtype}{list(o_shape)} but {dtype}{list(shape)} in {first}"
            )


def average_checkpoints(checkpoint_dirs: Sequence[os.PathLike | str], out_dir: os.PathLike | str) -> dict[str, Any]:
    """Write the element-wise mean of ``checkpoint_dirs`` to ``out_dir``; returns a small summary.

    All tensor sets, shapes and dtypes are checked from the safetensors headers before any data is
    read, so a mismatch fails fast with the offending folder named. Tensors are then averaged one
    at a time (memory: one tensor per checkpoint plus a float64 sum), accumulating in float64.
    Config, generation config and tokenizer files come from the first checkpoint.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    dirs = [Path(d) for d in checkpoint_dirs]
    if not dirs:
        raise ValueError("no checkpoints to average")
    first = dirs[0]
    ref = _describe(first)
    if not ref:
        raise ValueError(f"{first}: checkpoint has no tensors")
    layouts = [ref]
    for other in dirs[1:]:
        desc = _describe(other)
        _check_same_tensors(first, ref, other, desc)
        layouts.append(desc)

    shards: dict[str, list[str]] = {}
    for name, (fname, _, _) in ref.items():
        shards.setdefault(fname, []).append(name)

    with atomic_dir(out_dir) as tmp, ExitStack() as stack:
        handles: dict[Path, Any] = {}

        def handle(path: Path) -> Any:
            if path not in handles:
                handles[path] = stack.enter_context(safe_open(str(path), framework="pt"))
            return handles[path]

        for fname, names in shards.items():
            averaged = {}
            for name in names:
                total = None
                for folder, desc in zip(dirs, layouts):
                    tensor = handle(folder / desc[name][0]).get_tensor(name)
                    total = tensor.to(torch.float64) if total is None else total.add_(tensor.to(torch.float64))
                averaged[name] = total.div_(len(dirs)).to(tensor.dtype).contiguous()
            save_file(averaged, str(tmp / fname), metadata=handle(first / fname).metadata() or {"format": "pt"})
        if (first / INDEX_FILE).is_file():
            shutil.copyfile(first / INDEX_FILE, tmp / INDEX_FILE)
        copied = []
        for fname in COPIED_FILES:
            if (first / fname).is_file():
                shutil.copyfile(first / fname, tmp / fname)
                copied.append(fname)
        summary = {
            "checkpoints": [str(d) for d in dirs],
            "num_checkpoints": len(dirs),
            "num_tensors": len(ref),
            "copied_from_first": copied,
        }
        (tmp / "averaged_from.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
