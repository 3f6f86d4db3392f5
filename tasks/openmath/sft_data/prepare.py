"""``sft-data prepare``: OpenMathInstruct-style solutions -> SFT jsonl, v0.1.1 semantics
(docs/recipes/openmath.md §9.1, §9.3).

What it does, in v0.1.1's order:

1. Group all input lines by ``question`` (exact string). No correctness filter and, by default,
   no de-duplication: v0.1.1 did neither for ``preprocessed_dataset_files``. ``dedup=True``
   drops a solution identical (after trimming) to an earlier one of the same question, which is
   what main@9b7f9d57 does; it is off by default.
2. Drop solutions hit by any of ``filters`` (default ``multi_boxed``, ``broken_code``), checked on
   the untrimmed text, then trim (``trim_solutions``), then classify code/text on the trimmed text.
3. Apply ``text_filter_type`` per question (see :func:`.filters.text_filter_keeps`).
4. Shuffle all surviving entries with ``random.Random(seed)`` (v0.1.1 used an unseeded shuffle,
   so no output of it can be reproduced; the seed makes ours reproducible). The list shuffled is
   the survivors in input order.
5. Downsample to ``num_output_samples`` with ``fair`` or ``random`` (:mod:`.downsample`) when
   there are more entries than that.
6. Write each entry as its input line minus ``generated_solution``, plus ``input`` (the SFT prompt),
   ``output`` (the trimmed solution) and ``metadata`` fields.

Memory model. The full OpenMathInstruct-1 files are ~1.8M lines and several GB, so no solution
text is held in memory:

- pass 1 streams every line once and keeps per line only a few machine ints in ``array``\ s
  (question group id, and for lines that pass the filters their line id and code flag), ~17
  bytes a line, ~30 MB for 1.8M lines; per question a 16-byte digest of its text and a few
  counters. The shuffle and the fair ordering add transient lists of ints (~150 MB at 1.8M
  lines). ``dedup=True`` adds one 8-byte hash per kept solution in a set (~60 bytes each).
  Measured: 226 MB peak RSS for 1.8M lines (2.1 GB) in ``bench/bench_sft_data.py``.
- pass 2 streams the files again, parses only the selected lines and appends each transformed
  line to one of a few bucket files, chosen by its output position (``bucket_lines`` positions
  per bucket);
- pass 3 loads one bucket at a time, puts its lines in output order and appends them to the
  output. The largest resident set is one bucket (65,536 lines, ~100 MB of OpenMathInstruct
  lines), and all I/O is sequential.

The input files must not change between the passes; their size and mtime are checked, and each
selected line's question is checked against its pass-1 digest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.openmath.sft_data import downsample
from tasks.openmath.sft_data.filters import (
    DEFAULT_FILTERS,
    FILTERS,
    TEXT_FILTER_TYPES,
    is_code_solution,
    text_filter_keeps,
    trim_solution,
    validate_filters,
)
from tasks.openmath.sft_data.prompt import sft_input
from tasks.openmath.sft_data.stats import distribution
from tasks.storage.jsonl import JsonlError, atomic_writer, iter_jsonl_raw, parse_jsonl_line

LOG = logging.getLogger(__name__)

SEED_DOC_NUM_OUTPUT_SAMPLES = 1_024_000
SOLUTION_KEY = "generated_solution"


@dataclass
class PrepareConfig:
    """Options of ``sft-data prepare``; the defaults are the seed document's command.

    ``downsampling_method`` and ``num_output_samples`` go together as in v0.1.1: a method other
    than ``none`` needs a count, and ``none`` must not have one.
    """

    inputs: list[Path]
    output: Path
    downsampling_method: str = "fair"
    num_output_samples: int | None = SEED_DOC_NUM_OUTPUT_SAMPLES
    text_filter_type: str = "any_code"
    trim_solutions: bool = True
    filters: list[str] = field(default_factory=lambda: list(DEFAULT_FILTERS))
    seed: int = 0
    dedup: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    bucket_lines: int = 65536

    def validate(self) -> None:
        """Raise ``ValueError`` naming the option that is wrong."""
        if not self.inputs:
            raise ValueError("inputs: at least one input file is needed")
        validate_filters(self.filters)
        if self.text_filter_type not in TEXT_FILTER_TYPES:
            raise ValueError(
                f"text_filter_type must be one of {', '.join(TEXT_FILTER_TYPES)}; got {self.text_filter_type!r}"
            )
        if self.downsampling_method not in downsample.METHODS:
            raise ValueError(
                f"downsampling_method must be one of {', '.join(downsample.METHODS)}; got {self.downsampling_method!r}"
            )
        if self.downsampling_method == "none" and self.num_output_samples is not None:
            raise ValueError("num_output_samples needs a downsampling_method (fair or random)")
        if self.downsampling_method != "none":
            if self.num_output_samples is None:
                raise ValueError(f"downsampling_method={self.downsampling_method} needs num_output_samples")
            if self.num_output_samples < 1:
                raise ValueError(f"num_output_samples must be >= 1; got {self.num_output_samples}")
        if self.bucket_lines < 1:
            raise ValueError("bucket_lines must be >= 1")
        for key in self.metadata:
            if key in ("input", "output"):
                raise ValueError(f"metadata key {key!r} would overwrite the SFT {key}")


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _file_signature(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _fields(path: Path, line_no: int, obj: dict[str, Any]) -> tuple[str, str]:
    question = obj.get("question")
    solution = obj.get(SOLUTION_KEY)
    if not isinstance(question, str):
        raise JsonlError(path, line_no, "field 'question' is missing or not a string")
    if not isinstance(solution, str):
        raise JsonlError(path, line_no, f"field '{SOLUTION_KEY}' is missing or not a string")
    return question, solution


class _Pass1:
    """State of the first streaming pass; see the module docstring for what is kept."""

    def __init__(self, cfg: PrepareConfig):
        self.cfg = cfg
        self.group_of: dict[bytes, int] = {}
        self.group_digest: list[bytes] = []
        self.group_cat: array = array("l")  # category (dataset, generation_type) of the first line
        self.group_total = array("l")  # lines before filters (v0.1.1's len(samples))
        self.group_code = array("l")
        self.group_text = array("l")
        self.line_group = array("l")  # every non-blank line
        self.kept_line = array("q")  # lines that passed the filters
        self.kept_code = bytearray()
        self.cats: dict[tuple[str, str], int] = {}
        self.cat_input = array("l")
        self.cat_after_filter: list[list[int]] = []
        self.cat_dups = array("l")
        self.seen: set[int] = set()
        self.n_lines = 0
        self.files: list[dict[str, Any]] = []

    def category_of(self, obj: dict[str, Any]) -> int:
        key = (str(obj.get("dataset", "unknown")), str(obj.get("generation_type", "unknown")))
        cat = self.cats.get(key)
        if cat is None:
            cat = self.cats[key] = len(self.cats)
            self.cat_input.append(0)
            self.cat_after_filter.append([0] * len(self.cfg.filters))
            self.cat_dups.append(0)
        return cat

    def run(self) -> None:
        filter_fns = [FILTERS[name] for name in self.cfg.filters]
        for path in self.cfg.inputs:
            signature = _file_signature(path)
            first_line = self.n_lines
            for line_no, raw in iter_jsonl_raw(path):
                obj = parse_jsonl_line(path, line_no, raw)
                question, solution = _fields(path, line_no, obj)
                self._line(question, solution, self.category_of(obj), filter_fns)
            self.files.append(
                {"path": str(path), "lines": self.n_lines - first_line, "signature": signature}
            )

    def _line(self, question: str, solution: str, cat: int, filter_fns: list) -> None:
        line_id = self.n_lines
        self.n_lines += 1
        digest = _digest(question)
        group = self.group_of.get(digest)
        if group is None:
            group = self.group_of[digest] = len(self.group_digest)
            self.group_digest.append(digest)
            self.group_cat.append(cat)
            for arr in (self.group_total, self.group_code, self.group_text):
                arr.append(0)
        self.line_group.append(group)
        self.group_total[group] += 1
        self.cat_input[cat] += 1
        passed = self.cat_after_filter[cat]
        for i, fn in enumerate(filter_fns):
            if fn(solution):
                return
            passed[i] += 1
        final = trim_solution(solution) if self.cfg.trim_solutions else solution
        if self.cfg.dedup:
            key = int.from_bytes(
                hashlib.blake2b(digest + final.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
            )
            if key in self.seen:
                self.cat_dups[cat] += 1
                return
            self.seen.add(key)
        code = is_code_solution(final)
        (self.group_code if code else self.group_text)[group] += 1
        self.kept_line.append(line_id)
        self.kept_code.append(code)


def _stats_block() -> dict[str, Any]:
    return {"input_lines": 0, "after_filters": {}, "duplicates_dropped": 0, "after_text_filter": 0, "output_entries": 0}


def prepare_sft_data(cfg: PrepareConfig) -> dict[str, Any]:
    """Run the three passes and write ``cfg.output`` atomically; return the stats dict.

    Raises ``ValueError`` for bad options, :class:`tasks.storage.jsonl.JsonlError` (a ``ValueError``)
    naming file and line for malformed input, and ``RuntimeError`` if an input changed while
    being read.
    """
    cfg.validate()
    cfg.inputs = [Path(p) for p in cfg.inputs]
    cfg.output = Path(cfg.output)
    t0 = time.monotonic()
    p1 = _Pass1(cfg)
    p1.run()
    LOG.info("read %d lines, %d questions from %d file(s)", p1.n_lines, len(p1.group_digest), len(cfg.inputs))

    n_groups = len(p1.group_digest)
    keep_code = bytearray(n_groups)
    keep_text = bytearray(n_groups)
    for g in range(n_groups):
        kc, kt = text_filter_keeps(cfg.text_filter_type, p1.group_code[g], p1.group_text[g], p1.group_total[g])
        keep_code[g], keep_text[g] = kc, kt

    # Survivors of the text filter, as indices into the kept_* arrays, in input order.
    line_group, kept_line, kept_code = p1.line_group, p1.kept_line, p1.kept_code
    entries = [
        k
        for k in range(len(kept_line))
        if (keep_code if kept_code[k] else keep_text)[line_group[kept_line[k]]]
    ]
    per_group = array("l", [0]) * n_groups
    for k in entries:
        per_group[line_group[kept_line[k]]] += 1
    LOG.info("after filters %d, after text filter (%s) %d", len(kept_line), cfg.text_filter_type, len(entries))

    random.Random(cfg.seed).shuffle(entries)
    shuffled_groups = array("l", (line_group[kept_line[k]] for k in entries))
    chosen = downsample.select(cfg.downsampling_method, shuffled_groups, cfg.num_output_samples)
    del shuffled_groups
    out_pos = array("q", [-1]) * p1.n_lines
    for pos, i in enumerate(chosen):
        out_pos[kept_line[entries[i]]] = pos
    n_out = len(chosen)
    del chosen, entries
    applied = cfg.num_output_samples is not None and n_out < sum(per_group)
    LOG.info("output entries %d (downsampling %s, applied=%s)", n_out, cfg.downsampling_method, applied)

    out_per_group, line_cat = _write_output(cfg, p1, out_pos, n_out)
    stats = _build_stats(cfg, p1, per_group, out_per_group, line_cat, n_out, applied)
    stats["seconds"] = round(time.monotonic() - t0, 3)
    return stats


def _write_output(cfg: PrepareConfig, p1: _Pass1, out_pos: array, n_out: int) -> tuple[array, dict[int, int]]:
    """Passes 2 and 3: selected lines -> bucket files by output position -> the output, in order."""
    bucket_lines = max(cfg.bucket_lines, -(-n_out // 256))  # at most 256 open bucket files
    n_buckets = max(1, -(-n_out // bucket_lines))
    out_per_group = array("l", [0]) * len(p1.group_digest)
    out_per_cat: dict[int, int] = {}
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{cfg.output.name}.", dir=cfg.output.parent) as tmp:
        bucket_paths = [Path(tmp) / f"bucket-{b:05d}" for b in range(n_buckets)]
        bucket_pos = [array("q") for _ in range(n_buckets)]
        handles = [open(p, "wb") for p in bucket_paths]
        try:
            line_id = 0
            for info in p1.files:
                path = Path(info["path"])
                if _file_signature(path) != info["signature"]:
                    raise RuntimeError(f"{path}: input changed between the two passes; rerun")
                for line_no, raw in iter_jsonl_raw(path):
                    pos = out_pos[line_id] if line_id < p1.n_lines else -1
                    group = p1.line_group[line_id] if line_id < p1.n_lines else -1
                    line_id += 1
                    if pos < 0:
                        continue
                    obj = parse_jsonl_line(path, line_no, raw)
                    question, solution = _fields(path, line_no, obj)
                    if _digest(question) != p1.group_digest[group]:
                        raise RuntimeError(f"{path}:{line_no}: input changed between the two passes; rerun")
                    cat = p1.category_of(obj)
                    out_per_cat[cat] = out_per_cat.get(cat, 0) + 1
                    out_per_group[group] += 1
                    del obj[SOLUTION_KEY]
                    obj["input"] = sft_input(question)
                    obj["output"] = trim_solution(solution) if cfg.trim_solutions else solution
                    obj.update(cfg.metadata)
                    bucket = pos // bucket_lines
                    handles[bucket].write(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")
                    bucket_pos[bucket].append(pos)
            if line_id != p1.n_lines:
                raise RuntimeError(f"inputs changed between the two passes ({p1.n_lines} then {line_id} lines); rerun")
        finally:
            for fh in handles:
                fh.close()
        with atomic_writer(cfg.output, "wb") as out:
            for b, bpath in enumerate(bucket_paths):
                base = b * bucket_lines
                slots: list[bytes | None] = [None] * len(bucket_pos[b])
                with open(bpath, "rb") as fh:
                    for raw, pos in zip(fh, bucket_pos[b]):
                        slots[pos - base] = raw
                if any(s is None for s in slots):  # pragma: no cover - would be a bug in the bucketing
                    raise RuntimeError(f"internal error: bucket {b} has holes")
                out.writelines(slots)  # type: ignore[arg-type]
                del slots
                bpath.unlink()
    return out_per_group, out_per_cat


def _build_stats(
    cfg: PrepareConfig,
    p1: _Pass1,
    per_group: array,
    out_per_group: array,
    out_per_cat: dict[int, int],
    n_out: int,
    applied: bool,
) -> dict[str, Any]:
    cats = {cat: key for key, cat in p1.cats.items()}
    total_after_filters = [sum(p1.cat_after_filter[c][i] for c in cats) for i in range(len(cfg.filters))]
    after_text = sum(per_group)
    n_groups = len(p1.group_digest)
    covered = sum(1 for c in per_group if c)

    per_dataset: dict[str, dict[str, Any]] = {}
    per_gen_type: dict[str, dict[str, Any]] = {}
    for cat, (dataset, gen_type) in cats.items():
        for table, name in ((per_dataset, dataset), (per_gen_type, gen_type)):
            block = table.setdefault(name, _stats_block())
            block["input_lines"] += p1.cat_input[cat]
            for i, fname in enumerate(cfg.filters):
                block["after_filters"][fname] = block["after_filters"].get(fname, 0) + p1.cat_after_filter[cat][i]
            block["duplicates_dropped"] += p1.cat_dups[cat]
            block["output_entries"] += out_per_cat.get(cat, 0)
    # Question-level figures go by the dataset of each question's first line.
    by_dataset_groups: dict[str, list[int]] = {}
    for g in range(n_groups):
        by_dataset_groups.setdefault(cats[p1.group_cat[g]][0], []).append(g)
    for dataset, groups in by_dataset_groups.items():
        block = per_dataset[dataset]
        counts = [per_group[g] for g in groups]
        out_counts = [out_per_group[g] for g in groups]
        block["questions"] = len(groups)
        block["after_text_filter"] = sum(counts)
        block["covered_questions"] = sum(1 for c in counts if c)
        block["coverage"] = block["covered_questions"] / len(groups)
        block["samples_per_question"] = distribution(counts)
        block["output_questions"] = sum(1 for c in out_counts if c)
        block["output_samples_per_question"] = distribution(out_counts)

    config = asdict(cfg)
    config["inputs"] = [str(p) for p in cfg.inputs]
    config["output"] = str(cfg.output)
    return {
        "config": config,
        "inputs": [{"path": f["path"], "lines": f["lines"]} for f in p1.files],
        "input_lines": p1.n_lines,
        "questions": n_groups,
        "after_filters": dict(zip(cfg.filters, total_after_filters)),
        "duplicates_dropped": sum(p1.cat_dups),
        "after_dedup": len(p1.kept_line),
        "code_solutions": sum(p1.group_code),
        "text_solutions": sum(p1.group_text),
        "after_text_filter": after_text,
        "total_entries": after_text,
        "covered_questions": covered,
        "coverage": covered / n_groups if n_groups else 0.0,
        "samples_per_question": distribution(per_group),
        "downsampling": {
            "method": cfg.downsampling_method,
            "num_output_samples": cfg.num_output_samples,
            "applied": applied,
        },
        "output_entries": n_out,
        "output_questions": sum(1 for c in out_per_group if c),
        "output_samples_per_question": distribution(out_per_group),
        "per_dataset": per_dataset,
        "per_generation_type": per_gen_type,
    }
