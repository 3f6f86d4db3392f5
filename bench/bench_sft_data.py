"""Benchmark ``skillflow sft-data prepare`` on OpenMathInstruct-1-sized input.

Generates synthetic ``correct_solutions``-shaped jsonl (question ~300 chars, generated_solution
~600 chars, mostly with ``<llm-code>`` blocks, some text-only, a few broken or multi-boxed; both
datasets and both generation types; a skewed number of solutions per question so fair
downsampling has work to do), split into train/validation files like the HF release, then runs
prepare with the seed document's options (fair to 1,024,000, any_code, trim) in a child process
and reports its wall time and peak RSS (``ru_maxrss`` of the child).

    python bench/bench_sft_data.py                 # 1.8M lines, as the real files
    python bench/bench_sft_data.py --lines 100000  # quick; N scales with --lines unless given

The last stdout line is a JSON summary. Generated files go to a temporary directory (removed
afterwards) unless ``--workdir`` is given, where they are kept and reused if already there.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL_LINES = 1_800_000
SEED_DOC_N = 1_024_000
N_GSM8K, N_MATH = 7473, 7500

WORDS = (
    "apple train store number total price each week day hour minute meter triangle circle radius "
    "integer prime divisor remainder sum product fraction percent ratio speed distance money dollars "
    "students class teacher books pages garden rows column value expression polynomial root real "
    "probability coin dice card sequence term geometric arithmetic area volume angle side"
).split()


def _sentence(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def _question(rng: random.Random, idx: int) -> str:
    text = " ".join(_sentence(rng, rng.randint(8, 14)) for _ in range(5))
    return f"Problem {idx}: {text}"[:300] + "?"


def _code_solution(rng: random.Random, answer: int) -> str:
    code_lines = [f"{rng.choice(WORDS)}_{i} = {rng.randint(1, 999)} * {rng.randint(1, 99)}" for i in range(6)]
    code_lines.append(f"answer = {rng.choice(WORDS)}_0 + {rng.choice(WORDS)}_1")
    code_lines.append("print(answer)")
    return (
        "Let's solve this problem using Python code.\n<llm-code>\n" + "\n".join(code_lines)
        + f"\n</llm-code>\n<llm-code-output>\n{answer}\n</llm-code-output>\n"
        + _sentence(rng, 18) + " " + _sentence(rng, 14)
        + f"\nThus the answer is \\boxed{{{answer}}}.\n" + _sentence(rng, 10)
    )


def _text_solution(rng: random.Random, answer: int) -> str:
    body = " ".join(_sentence(rng, rng.randint(10, 16)) for _ in range(7))
    return f"{body}\n$$ x = {rng.randint(1, 99)} + {rng.randint(1, 99)} $$\nSo the answer is \\boxed{{{answer}}}.\n$$"


def _solution(rng: random.Random, answer: int) -> str:
    roll = rng.random()
    if roll < 0.70:
        return _code_solution(rng, answer)
    if roll < 0.95:
        return _text_solution(rng, answer)
    if roll < 0.975:  # broken code: missing output close tag
        return _code_solution(rng, answer).replace("</llm-code-output>", "", 1)
    return _text_solution(rng, answer) + f" Or \\boxed{{{answer + 1}}}."  # multi_boxed


def generate(workdir: Path, lines: int, seed: int = 1234) -> list[Path]:
    """Write ``train.jsonl`` (95%) and ``validation.jsonl`` (5%) with ``lines`` lines in all."""
    rng = random.Random(seed)
    questions = [("gsm8k", i) for i in range(N_GSM8K)] + [("math", i) for i in range(N_MATH)]
    texts = [_question(rng, i) for i in range(len(questions))]
    # Skewed counts: most questions have many solutions, some few (hard MATH problems).
    weights = [rng.lognormvariate(0.0, 1.0) if ds == "math" else rng.uniform(0.5, 1.5) for ds, _ in questions]
    owners = rng.choices(range(len(questions)), weights=weights, k=lines)
    n_train = int(lines * 0.95)
    paths = [workdir / "train.jsonl", workdir / "validation.jsonl"]
    fh = open(paths[0], "w", encoding="utf-8")
    for n, q in enumerate(owners):
        if n == n_train:
            fh.close()
            fh = open(paths[1], "w", encoding="utf-8")
        answer = q * 7 % 1000
        row = {
            "question": texts[q],
            "generated_solution": _solution(rng, answer),
            "expected_answer": str(answer),
            "predicted_answer": str(answer),
            "error_message": "<not_executed>",
            "is_correct": True,
            "dataset": questions[q][0],
            "generation_type": "masked_reference_solution" if rng.random() < 0.5 else "without_reference_solution",
        }
        fh.write(json.dumps(row) + "\n")
    fh.close()
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=FULL_LINES)
    ap.add_argument("--num-output-samples", type=int, default=None,
                    help=f"default {SEED_DOC_N} scaled by lines/{FULL_LINES}")
    ap.add_argument("--workdir", type=Path, default=None, help="keep generated files here (reused if present)")
    args = ap.parse_args()
    n_out = args.num_output_samples or max(1, round(SEED_DOC_N * args.lines / FULL_LINES))

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="bench_sft_data.")
        workdir = Path(tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        marker = workdir / f"generated-{args.lines}.done"
        t0 = time.monotonic()
        if marker.exists():
            inputs = [workdir / "train.jsonl", workdir / "validation.jsonl"]
        else:
            inputs = generate(workdir, args.lines)
            marker.touch()
        gen_s = time.monotonic() - t0
        in_bytes = sum(p.stat().st_size for p in inputs)
        print(f"input: {args.lines} lines, {in_bytes / 1e9:.2f} GB, generated in {gen_s:.1f}s", flush=True)

        output = workdir / "sft-data.jsonl"
        cmd = [
            sys.executable, "-m", "tasks.openmath.sft_data", "sft-data", "prepare",
            "--input", *map(str, inputs), "--output", str(output),
            "--downsampling-method", "fair", "--num-output-samples", str(n_out),
            "--text-filter-type", "any_code", "--trim-solutions", "--seed", "0",
        ]
        t1 = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - t1
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode != 0:
            print(json.dumps({"ok": False, "rc": proc.returncode}))
            return 1
        stats = json.loads((workdir / "sft-data.stats.json").read_text())
        summary = {
            "ok": True,
            "lines": args.lines,
            "input_gb": round(in_bytes / 1e9, 3),
            "num_output_samples": n_out,
            "output_entries": stats["output_entries"],
            "after_text_filter": stats["after_text_filter"],
            "output_gb": round(output.stat().st_size / 1e9, 3),
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "cpus": os.cpu_count(),
        }
        print(f"prepare: {wall:.1f}s wall, peak RSS {peak_kb / 1024:.0f} MB", flush=True)
        print(json.dumps(summary))
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
