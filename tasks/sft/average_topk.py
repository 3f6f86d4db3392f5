"""Average the checkpoints a CPU training run kept (``checkpoints/topk.json``): NeMo's
``prepare_eval`` step on the local profile (docs/recipes/openmath.md §10.3 averages every saved checkpoint;
NeMo keeps the best ``save_top_k`` by the validation metric, and so does the local trainer)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def kept_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The folders ``topk.json`` lists, checked to exist; the error names the file."""
    index = checkpoint_dir / "topk.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index} is missing: training saved no validated checkpoint")
    entries = json.loads(index.read_text()).get("checkpoints") or []
    if not entries:
        raise ValueError(f"{index} lists no checkpoints")
    folders = [checkpoint_dir / e["path"] for e in entries]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise FileNotFoundError(f"{index} lists checkpoint folder(s) that do not exist: {', '.join(missing)}")
    return folders


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tasks.sft.average_topk CHECKPOINT_DIR OUT_DIR", file=sys.stderr)
        return 2
    from tasks.sft.average import average_checkpoints

    try:
        folders = kept_checkpoints(Path(args[0]))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("averaging " + ", ".join(f.name for f in folders), flush=True)
    average_checkpoints(folders, Path(args[1]))
    print(f"wrote {args[1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
