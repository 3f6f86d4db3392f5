"""Generation over a data file: prompts, concurrency, ordered output, resume and ``.done`` markers.

Output layout (docs/recipes/openmath.md §4.3/§4.4): ``output-greedy.jsonl`` or one ``output-rs{seed}.jsonl`` per seed,
line *i* answering input line *i* (after ``--limit``), each line = the input fields plus
``generation``, ``error_message`` and ``predicted_answer``. Lines are appended in input order as
soon as they and all before them are done, so an interrupted run leaves a consistent prefix;
``skip_filled`` counts that prefix and generates the rest. A last line cut off by a crash
(no newline, or not JSON) is removed and generated again. ``<output>.done`` is written beside a
file only once it holds every line.
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from tasks.generation.client import CompletionsClient, GenerationError, Sampling
from tasks.generation.code_loop import CodeExecutionConfig, generate_with_code
from tasks.prompts import PromptConfig, PromptError
from tasks.sandbox.session import Sandbox
from tasks.storage.jsonl import JsonlError, atomic_writer, iter_jsonl


def predicted_answer(generation: str) -> str | None:
    from tasks.grading.answer import extract_boxed

    return extract_boxed(generation)


def output_name(sampling_seed: int | None) -> str:
    """``output-greedy.jsonl`` for greedy, ``output-rs{seed}.jsonl`` for a sampling seed."""
    return "output-greedy.jsonl" if sampling_seed is None else f"output-rs{sampling_seed}.jsonl"


def done_marker(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def valid_prefix(path: Path) -> tuple[int, int]:
    """(number of complete lines, byte length of them) at the start of ``path``.

    Only the *last* line may be broken (that is what a crash leaves); a broken line followed by
    more lines is corruption we refuse to paper over, reported as ``file:line``.
    """
    if not path.exists():
        return 0, 0
    data = path.read_bytes()
    count = offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        line = data[offset:] if end < 0 else data[offset:end]
        ok = end >= 0
        if ok:
            try:
                ok = isinstance(json.loads(line), dict)
            except (json.JSONDecodeError, UnicodeDecodeError):
                ok = False
        if not ok:
            rest = data[end + 1:] if end >= 0 else b""
            if rest.strip():
                raise JsonlError(path, count + 1, "invalid line in the middle of an output file; "
                                                  "fix or delete the file before resuming")
            return count, offset
        count += 1
        offset = end + 1
    return count, offset


@dataclass
class Progress:
    """Periodic ``done/total`` lines on stderr, so a long run is visibly alive."""

    label: str
    total: int
    interval_s: float = 10.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    _start: float = field(default_factory=time.monotonic)
    _last: float = field(default_factory=time.monotonic)

    def advance(self, n: int = 1, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta = f", eta {left:.0f}s" if left != float("inf") else ""
            print(f"generate {self.label}: {self.done}/{self.total} done ({rate:.2f}/s{eta})",
                  file=self.stream, flush=True)


@dataclass
class GenerationSettings:
    """Everything but the file names that decides the content of an output file."""

    prompt: PromptConfig
    num_few_shots: int = 0
    examples_type: str | None = None
    context_type: str = "empty"
    max_tokens: int = 512
    code: CodeExecutionConfig = field(default_factory=CodeExecutionConfig)
    concurrency: int = 16
    progress_interval_s: float = 10.0


def render_all(rows: list[dict[str, Any]], settings: GenerationSettings, input_path: Path) -> list[str]:
    """Render every prompt up front, so a bad input line fails before any request is sent."""
    prompts = []
    for i, row in enumerate(rows, 1):
        try:
            prompts.append(settings.prompt.render(row, num_few_shots=settings.num_few_shots,
                                                  examples_type=settings.examples_type,
                                                  context_type=settings.context_type))
        except PromptError as exc:
            raise PromptError(f"{input_path}:{i}: {exc}") from None
    return prompts


def generate_file(rows: list[dict[str, Any]], prompts: list[str], output: Path, client: CompletionsClient,
                  sampling: Sampling, sandbox: Sandbox, settings: GenerationSettings, *,
                  skip_filled: bool) -> int:
    """Fill ``output`` with one line per row; returns how many lines this call generated."""
    output.parent.mkdir(parents=True, exist_ok=True)
    marker = done_marker(output)
    if skip_filled and marker.exists():
        print(f"generate {output.name}: already done ({marker.name} exists), skipping", file=sys.stderr)
        return 0
    marker.unlink(missing_ok=True)
    start = 0
    if skip_filled:
        start, keep = valid_prefix(output)
        if output.exists() and keep < output.stat().st_size:
            print(f"generate {output.name}: dropping a truncated last line (line {start + 1}); it is generated again",
                  file=sys.stderr)
            os.truncate(output, keep)
        if start > len(rows):
            raise JsonlError(output, len(rows) + 1, f"output has {start} lines but there are only {len(rows)} "
                                                    "inputs (was --limit lowered?); move the file away to restart")
    else:
        output.write_bytes(b"")
    todo = list(range(start, len(rows)))
    progress = Progress(output.name, len(rows), settings.progress_interval_s)
    progress.done = start

    def complete(text: str, stop: list[str]):
        return client.complete(text, max_tokens=settings.max_tokens, sampling=sampling, stop=stop)

    def one(index: int) -> str:
        result = generate_with_code(prompts[index], complete, sandbox, settings.code, settings.prompt.stop_phrases)
        line = {**rows[index], **result, "predicted_answer": predicted_answer(result["generation"])}
        return json.dumps(line, ensure_ascii=False) + "\n"

    written = _run_ordered(todo, one, output, settings.concurrency, progress)
    progress.advance(0, force=True)
    with atomic_writer(marker) as fh:
        fh.write(json.dumps({"lines": len(rows), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
    return written


def _run_ordered(todo: list[int], work: Callable[[int], str], output: Path, concurrency: int,
                 progress: Progress) -> int:
    """Run ``work`` on a bounded window of indices; append results to ``output`` in index order."""
    results: dict[int, str] = {}
    next_to_write = 0
    written = 0
    pending: dict[Future, int] = {}
    queue = iter(range(len(todo)))
    window = max(1, concurrency) * 2
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="generate") as pool, \
            open(output, "a", encoding="utf-8") as out:
        while True:
            while failure is None and len(pending) < window:
                pos = next(queue, None)
                if pos is None:
                    break
                pending[pool.submit(work, todo[pos])] = pos
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                pos = pending.pop(fut)
                try:
                    results[pos] = fut.result()
                except BaseException as exc:  # keep the first failure, finish what is running
                    failure = failure or exc
            while next_to_write in results:
                out.write(results.pop(next_to_write))
                out.flush()
                next_to_write += 1
                written += 1
                progress.advance()
    if failure is not None:
        if isinstance(failure, GenerationError):
            raise GenerationError(f"{failure}; {output} holds {progress.done} complete lines, "
                                  f"rerun with --skip-filled to resume") from failure
        raise failure
    return written


def load_rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows = []
    for row in iter_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        rows.append(row)
    return rows

