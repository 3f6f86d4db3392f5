"""``skillflow apps sample``: n programs per APPS problem from any OpenAI-compatible chat server.

The native counterpart of the seed's ``llmkit_data.cli.sample`` (docs/recipes/apps_sft.md §2.3): the same
prompts (one user message per problem, from ``apps prepare``), T=0.6, top-p 0.95, at most 2048
new tokens, 10 samples per problem, and the same output lines
``{"question", "problem_id", "response": [{"role": "assistant", "content": ...}]}``, n
consecutive lines per problem, which ``skillflow apps eval`` reads as they are.

What differs, on purpose:

* The server applies the model's chat template (``POST /v1/chat/completions``), so vLLM on a GPU
  cluster and llama-cpp-python's server on the local profile are driven the same way.
* Every sample is its own request with ``seed = seed + sample index``, so a sample's seed never
  depends on batching or on how many requests ran in parallel (llama-cpp-python's server also
  ignores ``n``). Whether the same seed gives the same text again is the server's business: vLLM
  does; llama-cpp-python does when the requests arrive in the same order (``--concurrency 1``).
* Resumable: the output is appended one complete problem at a time, in prompt order; a rerun
  keeps every complete problem, drops a partial one (a crash mid-write) and samples the rest.
  ``<out>.done`` is written once every problem is complete.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.generation.client import GenerationError, OpenAIHTTPClient
from tasks.storage.jsonl import JsonlError, atomic_writer, iter_jsonl_numbered


@dataclass(frozen=True)
class SamplingConfig:
    """The seed's sampling settings (docs/recipes/apps_sft.md §2.3); ``extra`` is merged into every request body."""

    n_sample: int = 10
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 2048
    seed: int = 42
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, model: str, messages: list[dict[str, str]], index: int) -> dict[str, Any]:
        return {**self.extra, "model": model, "messages": messages, "temperature": self.temperature,
                "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": self.seed + index, "n": 1,
                "stream": False}


@dataclass(frozen=True)
class Prompt:
    problem_id: Any
    question: list[dict[str, str]]


class ChatClient(OpenAIHTTPClient):
    """``POST {base_url}/v1/chat/completions``; the server applies the model's chat template."""

    path = "/v1/chat/completions"

    def __init__(self, base_url: str, *, timeout_s: float = 1800.0, retries: int = 3, backoff_s: float = 1.0):
        super().__init__(base_url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)

    def chat(self, body: dict[str, Any], what: str) -> tuple[str, str | None]:
        """(assistant text, finish_reason) of ``choices[0]``."""
        choice, raw = self.first_choice(body, what)
        try:
            return choice["message"].get("content") or "", choice.get("finish_reason")
        except (KeyError, TypeError, AttributeError) as exc:
            raise GenerationError(f"{self.endpoint} answered {what} without choices[0].message: {exc!r}: "
                                  f"{raw[:300]}") from None


def load_prompts(path: Path, limit: int | None = None) -> list[Prompt]:
    """Rows of ``test_prompts.jsonl`` (``question`` = list of chat messages, or a plain string)."""
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    for line_no, row in iter_jsonl_numbered(path):
        where = f"{path}:{line_no}"
        if "problem_id" not in row or "question" not in row:
            raise ValueError(f"{where}: a prompt row needs 'problem_id' and 'question'")
        question = row["question"]
        if isinstance(question, str):
            question = [{"role": "user", "content": question}]
        if not (isinstance(question, list) and question
                and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in question)):
            raise ValueError(f"{where}: 'question' must be a string or a list of {{role, content}} messages")
        key = str(row["problem_id"])
        if key in seen:
            raise ValueError(f"{where}: problem_id {row['problem_id']} already on line {seen[key]}")
        seen[key] = line_no
        prompts.append(Prompt(row["problem_id"], question))
        if limit is not None and len(prompts) >= limit:
            break
    return prompts


def prompts_from_problems(path: Path, limit: int | None = None) -> list[Prompt]:
    """Prompts built from APPS rows exactly as ``apps prepare`` builds them, but keeping problems
    without reference solutions (MapCoder's subsets have none; the seed's filter would drop them).
    Rows whose ``input_output`` is not valid JSON are left out: they cannot be evaluated."""
    from tasks.apps.prepare import build_prompt, problem_id

    prompts: list[Prompt] = []
    for line_no, row in iter_jsonl_numbered(path):
        try:
            io = json.loads(row.get("input_output") or "")
        except (json.JSONDecodeError, TypeError):
            print(f"apps sample: {path}:{line_no}: problem {problem_id(row)} has no valid input_output; left out",
                  file=sys.stderr)
            continue
        call_based = bool(isinstance(io, dict) and io.get("fn_name"))
        prompts.append(Prompt(problem_id(row), build_prompt(row.get("question") or "", row.get("starter_code") or "",
                                                            call_based)))
        if limit is not None and len(prompts) >= limit:
            break
    return prompts


def read_complete(out: Path, n_sample: int) -> set[str]:
    """Problem ids with all ``n_sample`` lines in ``out``; anything else (a torn last line, a
    problem cut short by a crash) is removed from the file so appends stay valid."""
    if not out.exists():
        return set()
    lines: list[bytes] = []
    with open(out, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                json.loads(raw)
            except json.JSONDecodeError:
                break
            lines.append(raw)
    counts = Counter(str(json.loads(raw)["problem_id"]) for raw in lines)
    over = sorted(pid for pid, c in counts.items() if c > n_sample)
    if over:
        raise ValueError(f"{out} already holds more than {n_sample} samples for problem(s) {', '.join(over[:10])}: "
                         "it was written with a larger --n-sample; pass that value or a new --out")
    complete = {pid for pid, c in counts.items() if c == n_sample}
    keep = [raw for raw in lines if str(json.loads(raw)["problem_id"]) in complete]
    if len(keep) != len(lines) or sum(map(len, lines)) != out.stat().st_size:
        dropped = sorted(set(counts) - complete)
        if dropped:
            print(f"apps sample: dropping incomplete problem(s) {', '.join(dropped[:10])} from {out}", file=sys.stderr)
        with atomic_writer(out, mode="wb") as fh:
            fh.writelines(keep)
    return complete


def sample_file(prompts: list[Prompt], out: Path, client: ChatClient, model: str, config: SamplingConfig, *,
                concurrency: int = 16, progress: bool = True) -> dict[str, Any]:
    """Sample every prompt not yet complete in ``out``; return counts. Raises
    :class:`GenerationError` when the server fails; complete problems stay written."""
    if config.n_sample < 1:
        raise ValueError(f"n_sample must be at least 1, got {config.n_sample}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    out.parent.mkdir(parents=True, exist_ok=True)
    done_marker = Path(f"{out}.done")
    done_marker.unlink(missing_ok=True)
    complete = read_complete(out, config.n_sample)
    todo = [p for p in prompts if str(p.problem_id) not in complete]
    stats: Counter = Counter()
    started = time.monotonic()
    if todo:
        _run(todo, out, client, model, config, concurrency, stats, progress, started)
    elapsed = time.monotonic() - started
    report = {"problems": len(prompts), "sampled_now": len(todo), "reused": len(prompts) - len(todo),
              "samples_now": len(todo) * config.n_sample, "seconds": round(elapsed, 2),
              "finish_reasons": dict(sorted((str(k), v) for k, v in stats.items())), "out": str(out)}
    with atomic_writer(done_marker) as fh:
        json.dump(report, fh)
        fh.write("\n")
    return report


def _run(todo: list[Prompt], out: Path, client: ChatClient, model: str, config: SamplingConfig, concurrency: int,
         stats: Counter, progress: bool, started: float) -> None:
    n = config.n_sample
    # Problems open at once: enough to keep `concurrency` requests in flight, few enough that the
    # texts held back behind a slow problem (output stays in prompt order) stay small.
    window = max(2, -(-concurrency // n) + 1)
    results: dict[int, list[str | None]] = {}
    futures: dict[Future, tuple[int, int]] = {}
    next_submit = next_write = 0
    written = 0
    last_report = 0.0

    def one(prompt: Prompt, index: int) -> tuple[str, str | None]:
        return client.chat(config.body(model, prompt.question, index),
                           f"problem {prompt.problem_id} sample {index}")

    with ThreadPoolExecutor(concurrency) as pool, open(out, "a", encoding="utf-8") as fh:
        try:
            while next_write < len(todo):
                while next_submit < len(todo) and next_submit - next_write < window:
                    results[next_submit] = [None] * n
                    for i in range(n):
                        futures[pool.submit(one, todo[next_submit], i)] = (next_submit, i)
                    next_submit += 1
                ready, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in ready:
                    p, i = futures.pop(fut)
                    text, reason = fut.result()  # a GenerationError ends the run here
                    results[p][i] = text
                    stats[reason] += 1
                while next_write < next_submit and all(t is not None for t in results[next_write]):
                    prompt = todo[next_write]
                    fh.write("".join(json.dumps({"question": prompt.question, "problem_id": prompt.problem_id,
                                                 "response": [{"role": "assistant", "content": t}]},
                                                ensure_ascii=False) + "\n" for t in results.pop(next_write)))
                    fh.flush()
                    next_write += 1
                    written += 1
                now = time.monotonic()
                if progress and (now - last_report > 10 or next_write == len(todo)):
                    last_report = now
                    print(f"apps sample: {written}/{len(todo)} problems ({written * n} samples) in "
                          f"{now - started:.0f}s", file=sys.stderr)
        finally:
            for fut in futures:
                fut.cancel()


def run(prompts_path: Path | None, problems_path: Path | None, out: Path, server_url: str, model: str,
        config: SamplingConfig, *, concurrency: int = 16, limit: int | None = None,
        timeout_s: float = 1800.0) -> dict[str, Any]:
    """The CLI's work: load prompts (``--prompts`` or ``--problems``), sample, return the report."""
    if (prompts_path is None) == (problems_path is None):
        raise ValueError("give exactly one of --prompts (test_prompts.jsonl of `apps prepare`) or --problems "
                         "(APPS rows)")
    prompts = (load_prompts(prompts_path, limit) if prompts_path is not None
               else prompts_from_problems(problems_path, limit))
    if not prompts:
        raise ValueError(f"no prompts in {prompts_path or problems_path}")
    return sample_file(prompts, out, ChatClient(server_url, timeout_s=timeout_s), model, config,
                       concurrency=concurrency)


def parse_extra(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--extra-body is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ValueError("--extra-body must be a JSON object")
    reserved = sorted(set(value) & {"model", "messages", "seed", "n", "stream"})
    if reserved:
        raise ValueError(f"--extra-body may not set {', '.join(reserved)}")
    return value


__all__ = ["SamplingConfig", "ChatClient", "load_prompts", "prompts_from_problems", "read_complete",
                          "sample_file", "run", "parse_extra", "GenerationError", "JsonlError"]
