"""Prepare one benchmark split: fetch or locate the originals, check counts, transform, write.

Output: ``OUT/<benchmark>/<split>.jsonl`` (and ``validation-sft.jsonl`` beside a validation split).

Record counts are the guard against silently evaluating on the wrong data:

* downloaded files must hold exactly the upstream number of records (:mod:`.sources`);
* with ``--source`` the same exact check applies unless ``allow_partial`` is set, for folders
  that deliberately hold fewer records (such as a copy with records held out). Then fewer
  records are accepted and reported as "X of Y records"; more than Y is still an error, and so
  is an empty file.

Train-derived splits follow docs/recipes/openmath.md §2: the train records, in file order, are shuffled with
``random.seed(42)``; ``validation`` = the first 1000, ``train`` = the rest, ``train_full`` = all.
"""
from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tasks.openmath.datasets import readers
from tasks.openmath.datasets.sources import SFT_SYSTEM, SOURCES, SPLITS, SourceFile
from tasks.storage.jsonl import write_jsonl

VALIDATION_SIZE = 1000
SHUFFLE_SEED = 42


class PrepareError(ValueError):
    """A user-fixable problem (missing file, wrong count, bad checksum); names the file."""


def check_count(where: str, found: int, expected: int, allow_partial: bool) -> str:
    """Return a one-line report, or raise :class:`PrepareError` when the count is not acceptable."""
    if found == expected:
        return f"{where}: {found} records"
    if allow_partial and 0 < found < expected:
        return f"{where}: {found} of {expected} records (partial copy)"
    hint = "" if allow_partial else " (use --source DIR --allow-partial for a copy with records held out)"
    raise PrepareError(f"{where}: found {found} records, expected {expected}{hint}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(src: SourceFile, dest: Path, *, skip_sha256: bool, log: Callable[[str], None]) -> Path:
    """Fetch ``src`` to ``dest`` (reused when present) and verify its sha256."""
    if src.url is None:
        raise PrepareError(f"{src.name}: no download address. {src.note}")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        log(f"downloading {src.url}")
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
            try:
                with urllib.request.urlopen(src.url, timeout=60) as resp:
                    shutil.copyfileobj(resp, tmp)
            except (urllib.error.URLError, OSError) as exc:
                Path(tmp.name).unlink(missing_ok=True)
                raise PrepareError(f"{src.url}: download failed ({exc}); or pass --source DIR") from None
        Path(tmp.name).replace(dest)
    digest = sha256_of(dest)
    if src.sha256 is None:
        if not skip_sha256:
            raise PrepareError(f"{dest}: no sha256 is pinned for {src.url} (its sha256 is {digest}); "
                               "check the file and pass --skip-sha256, or pin it in tasks/openmath/datasets/sources.py")
        log(f"{dest}: sha256 {digest} (not pinned, not verified)")
    elif digest != src.sha256:
        raise PrepareError(f"{dest}: sha256 {digest} does not match the pinned {src.sha256}; delete it and retry")
    return dest


class _Locator:
    """Finds original files in ``--source`` or downloads them into ``OUT/<benchmark>/original``."""

    def __init__(self, benchmark: str, out_dir: Path, source_dir: Path | None, skip_sha256: bool,
                 log: Callable[[str], None]):
        self.benchmark, self.out_dir, self.source_dir = benchmark, out_dir, source_dir
        self.skip_sha256, self.log = skip_sha256, log

    def exists(self, key: str) -> bool:
        return self.source_dir is not None and (self.source_dir / SOURCES[self.benchmark][key].name).is_file()

    def get(self, key: str) -> Path:
        src = SOURCES[self.benchmark][key]
        if self.source_dir is not None:
            path = self.source_dir / src.name
            if not path.is_file():
                raise PrepareError(f"{path}: not found (--source must be laid out as <benchmark>/<original file>)")
            return path
        dest = self.out_dir / self.benchmark / "original" / Path(src.name).name
        return download(src, dest, skip_sha256=self.skip_sha256, log=self.log)


def _load(benchmark: str, split: str, loc: _Locator, allow_partial: bool, log) -> list[dict]:
    sources = SOURCES[benchmark]
    base = "test" if split == "test" else "train"
    if benchmark == "gsm8k":
        path = loc.get(base)
        records = readers.read_gsm8k(path, apply_fixes=base == "train")
        log(check_count(str(path), len(records), sources[base].records, allow_partial))
        return records
    if benchmark == "math":
        if loc.exists("tar"):
            path = loc.get("tar")
            records = readers.read_math_tar(path, base)
            expected = 5000 if base == "test" else 7500
            log(check_count(f"{path} ({base})", len(records), expected, allow_partial))
            return records
        path = loc.get(base)
        records = readers.read_math_tora_test(path) if base == "test" else readers.read_math_tar(path, "train")
        log(check_count(str(path), len(records), sources[base].records, allow_partial))
        return records
    if benchmark == "mawps":
        records = []
        for subset, src in sources.items():
            path = loc.get(subset)
            part = readers.read_mawps({subset: path})
            log(check_count(str(path), len(part), src.records, allow_partial))
            records += part
        return records
    path = loc.get("test")
    records = readers.READERS[benchmark](path)
    log(check_count(str(path), len(records), sources["test"].records, allow_partial))
    return records


def sft_record(record: dict, benchmark: str) -> dict:
    """A ``validation-sft.jsonl`` line: the openmathinstruct/sft prompt (docs/recipes/openmath.md §8.1)
    and the solution."""
    prompt = f"System:\n{SFT_SYSTEM}\n\nUser:\n{record['question']}\n\nAssistant:\n"
    return {"input": prompt, "output": record["reference_solution"],
            "expected_answer": record["expected_answer"], "dataset": benchmark}


def prepare(benchmark: str, split: str, out_dir: Path | str, *, source_dir: Path | str | None = None,
            allow_partial: bool = False, skip_sha256: bool = False,
            log: Callable[[str], None] = print) -> list[Path]:
    """Write ``out_dir/<benchmark>/<split>.jsonl`` (plus validation-sft.jsonl); return the paths."""
    if benchmark not in SOURCES:
        raise PrepareError(f"unknown benchmark {benchmark!r}; choose from {', '.join(SOURCES)}")
    if split not in SPLITS[benchmark]:
        raise PrepareError(f"{benchmark} has no split {split!r}; choose from {', '.join(SPLITS[benchmark])}")
    if allow_partial and source_dir is None:
        raise PrepareError("--allow-partial needs --source: downloads must be complete")
    out_dir = Path(out_dir)
    loc = _Locator(benchmark, out_dir, Path(source_dir) if source_dir is not None else None, skip_sha256, log)
    records = _load(benchmark, split, loc, allow_partial, log)
    if split != "test":
        random.seed(SHUFFLE_SEED)
        random.shuffle(records)
        if split == "validation":
            records = records[:VALIDATION_SIZE]
        elif split == "train":
            records = records[VALIDATION_SIZE:]
    target = out_dir / benchmark / f"{split}.jsonl"
    write_jsonl(target, records)
    written = [target]
    log(f"wrote {target} ({len(records)} records)")
    if split == "validation":
        sft = out_dir / benchmark / "validation-sft.jsonl"
        write_jsonl(sft, (sft_record(r, benchmark) for r in records))
        written.append(sft)
        log(f"wrote {sft} ({len(records)} records)")
    return written
