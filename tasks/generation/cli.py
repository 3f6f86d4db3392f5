"""``skillflow generate``: prompts from a data file -> model -> code execution -> output-*.jsonl."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="generate solutions with code execution from an OpenAI-compatible completions server",
        description="Writes OUTPUT_DIR/output-greedy.jsonl or output-rs{seed}.jsonl (one per seed) and a "
                    ".done marker beside each finished file (NeMo-Skills generate_solutions semantics).")
    p.add_argument("--server-url", required=True, help="base URL of the server, e.g. http://127.0.0.1:5000")
    p.add_argument("--model", required=True, help="model name sent in each request")
    p.add_argument("--input", "--benchmark-file", dest="input", type=Path, required=True,
                   help="input jsonl, one question per line (a prepared benchmark file)")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--prompt", default="openmathinstruct/sft", help="prompt config, e.g. openmathinstruct/base")
    p.add_argument("--num-few-shots", type=int, default=0)
    p.add_argument("--examples-type", default=None, help="few-shot set, e.g. gsm8k_text_with_code")
    p.add_argument("--context-type", default="empty", choices=("empty", "reference_solution", "masked_solution"))
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="greedy decoding -> output-greedy.jsonl (default)")
    mode.add_argument("--seeds", help="sampling seeds A-B (inclusive) or one seed, -> output-rs{seed}.jsonl")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (labeling uses 1.0)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--tokens-to-generate", type=int, default=512, help="new tokens per server call")
    p.add_argument("--max-code-executions", type=int, default=3, help="eval recipes use 6")
    p.add_argument("--stop-on-code-error", action=argparse.BooleanOptionalAction, default=True,
                   help="eval recipes use --no-stop-on-code-error")
    p.add_argument("--code-execution-timeout", type=float, default=10.0)
    p.add_argument("--sandbox-url", default=None, help="POST /execute sandbox service; default: a local pool")
    p.add_argument("--sandbox", choices=("local",), default="local", help="use an in-process sandbox pool")
    p.add_argument("--sandbox-workers", type=int, default=None, help="local pool size (default: CPU count)")
    p.add_argument("--sandbox-preload", default="sympy", help="modules each local sandbox worker imports once")
    p.add_argument("--batch-size", "--concurrency", dest="concurrency", type=int, default=16,
                   help="samples in flight at once")
    p.add_argument("--limit", type=int, default=None, help="only the first N input lines")
    p.add_argument("--skip-filled", action="store_true", help="resume: keep complete lines already written")
    p.add_argument("--progress-interval", type=float, default=10.0, help="seconds between progress lines")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds per completions request")
    p.set_defaults(handler=_handle)


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9, ``"3"`` -> [3]."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise ValueError(f"--seeds must look like A-B or N (e.g. 0-9), got {text!r}")
    lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
    if hi < lo:
        raise ValueError(f"--seeds {text!r}: the end {hi} is below the start {lo}")
    return list(range(lo, hi + 1))


def _handle(args: argparse.Namespace) -> int:
    from tasks.cli import UserError
    from tasks.generation.client import CompletionsClient, GenerationError, Sampling
    from tasks.generation.code_loop import CodeExecutionConfig
    from tasks.generation.runner import GenerationSettings, generate_file, load_rows, output_name, render_all
    from tasks.prompts import PromptError, load_prompt
    from tasks.storage.jsonl import JsonlError

    try:
        seeds = parse_seeds(args.seeds) if args.seeds else None
        for name in ("num_few_shots", "tokens_to_generate", "concurrency"):
            if getattr(args, name) < (0 if name == "num_few_shots" else 1):
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
        if args.max_code_executions < 0:
            raise ValueError(f"--max-code-executions must be >= 0, got {args.max_code_executions}")
        settings = GenerationSettings(
            prompt=load_prompt(args.prompt), num_few_shots=args.num_few_shots, examples_type=args.examples_type,
            context_type=args.context_type, max_tokens=args.tokens_to_generate, concurrency=args.concurrency,
            progress_interval_s=args.progress_interval,
            code=CodeExecutionConfig(max_code_executions=args.max_code_executions,
                                     stop_on_code_error=args.stop_on_code_error,
                                     code_execution_timeout=args.code_execution_timeout))
        rows = load_rows(args.input, args.limit)
        if not rows:
            # An empty file would otherwise be "generated" and marked .done with zero lines.
            raise ValueError(f"--input {args.input}: empty dataset (no question lines)")
        prompts = render_all(rows, settings, args.input)
    except FileNotFoundError as exc:
        raise UserError(f"--input {exc.filename}: no such file") from None
    except (ValueError, PromptError, JsonlError) as exc:
        raise UserError(str(exc)) from None

    client = CompletionsClient(args.server_url, args.model, timeout_s=args.request_timeout)
    runs = [(None, Sampling.greedy())] if seeds is None else [
        (s, Sampling.random(s, temperature=args.temperature, top_p=args.top_p)) for s in seeds]
    pool = None
    try:
        if args.sandbox_url:
            from tasks.sandbox.session import HttpSandbox

            sandbox = HttpSandbox(args.sandbox_url)
        else:
            from tasks.sandbox.pool import SandboxPool
            from tasks.sandbox.session import PROGRAM_PRELOAD, LocalSandbox

            preload = PROGRAM_PRELOAD + tuple(m for m in args.sandbox_preload.split(",") if m.strip())
            pool = SandboxPool(workers=args.sandbox_workers or min(args.concurrency, os.cpu_count() or 1),
                               preload=preload)
            sandbox = LocalSandbox(pool)
        for seed, sampling in runs:
            out = args.output_dir / output_name(seed)
            n = generate_file(rows, prompts, out, client, sampling, sandbox, settings, skip_filled=args.skip_filled)
            print(f"generate: {out} complete ({n} new lines)", file=sys.stderr)
    except GenerationError as exc:
        raise UserError(str(exc)) from None
    except JsonlError as exc:
        raise UserError(str(exc)) from None
    finally:
        if pool is not None:
            pool.close()
    return 0
