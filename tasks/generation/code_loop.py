"""The generation loop with code execution of docs/recipes/openmath.md §5.2 (NeMo-Skills ``code_execution_model``).

One sample: ask the server to continue ``prompt + generation`` with ``</llm-code>`` added to the
stop phrases. When the new text ends with ``</llm-code>``, run the code of its last
``<llm-code>`` block in the sample's :class:`~tasks.sandbox.session.CodeSession`, append the
output block and continue. The sample ends when a call does not end in ``</llm-code>``, on a code
error with ``stop_on_code_error`` (no output block is appended), or right after the output of
the ``max_code_executions``-th execution ("Max code executions reached").

``error_message`` starts as ``<not_executed>``; each execution sets it to the sandbox's error
message, or to "" on success.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tasks.generation.client import Completion
from tasks.sandbox.session import NOT_EXECUTED, CodeSession, Sandbox

CODE_START, CODE_END = "<llm-code>", "</llm-code>"
OUTPUT_START, OUTPUT_END = "<llm-code-output>", "</llm-code-output>"
MAX_EXECUTIONS_REACHED = "Max code executions reached"


@dataclass(frozen=True)
class CodeExecutionConfig:
    """Defaults are upstream's (labeling); evaluation uses 6 executions without stop on error."""

    max_code_executions: int = 3
    stop_on_code_error: bool = True
    code_execution_timeout: float = 10.0
    max_code_output_characters: int = 1000


def stopped_on_code_end(text: str, completion: Completion) -> bool:
    """Whether the server stopped at ``</llm-code>`` and (as OpenAI servers do) left it out of ``text``.

    With ``stop_reason`` (vLLM, TensorRT-LLM) this is exact. Servers that only report
    ``finish_reason == "stop"`` (llama.cpp) cannot tell a stop string from end-of-sequence, so a
    stop while a ``<llm-code>`` block of this call is still open counts as ``</llm-code>``.
    """
    if completion.finish_reason != "stop" or text.rstrip().endswith(CODE_END):
        return False
    if completion.stop_reason is not None:
        return completion.stop_reason == CODE_END
    return text.rfind(CODE_START) > text.rfind(CODE_END)


def extract_code(text: str) -> str:
    """The code of the last ``<llm-code>`` block of ``text`` (which ends with ``</llm-code>``)."""
    start = text.rfind(CODE_START)
    body = text[start + len(CODE_START):] if start >= 0 else text
    end = body.rfind(CODE_END)
    return body[:end] if end >= 0 else body


def format_code_output(output: str) -> str:
    return f"\n{OUTPUT_START}\n{output}\n{OUTPUT_END}\n"


def cut_at_stop_phrases(text: str, stop_phrases: list[str] | tuple[str, ...]) -> str:
    """Drop everything from the first prompt-level stop phrase on (docs/recipes/openmath.md §5.2, final generation)."""
    cut = len(text)
    for phrase in stop_phrases:
        if phrase:
            at = text.find(phrase)
            if 0 <= at < cut:
                cut = at
    return text[:cut]


def generate_with_code(prompt: str, complete: Callable[[str, list[str]], Completion], sandbox: Sandbox,
                       config: CodeExecutionConfig, stop_phrases: list[str] | tuple[str, ...] = ()) -> dict:
    """Run the loop of docs/recipes/openmath.md §5.2 for one sample; returns ``{"generation", "error_message"}``.

    ``complete(text, stop)`` continues ``text`` (sampling and token budget are bound by the
    caller; each call may produce up to that many new tokens). The code output appended after a
    failed execution (``stop_on_code_error=False``) is the sandbox's ``result`` -- the traceback
    text -- or, when that is empty or null (timeout, "Result is not defined"), the error message.
    """
    stops = [*stop_phrases, CODE_END]
    session = CodeSession()
    generation = ""
    error_message = NOT_EXECUTED
    executions = 0
    while True:
        completion = complete(prompt + generation, stops)
        text = completion.text
        if stopped_on_code_end(text, completion):
            text += CODE_END
        generation += text
        if not text.strip().endswith(CODE_END) or executions >= config.max_code_executions:
            break
        reply = session.execute(sandbox, extract_code(text), timeout=config.code_execution_timeout,
                                max_output_characters=config.max_code_output_characters)
        executions += 1
        error_message = reply["error_message"] or ""
        if error_message and config.stop_on_code_error:
            break
        generation += format_code_output(reply["result"] or error_message)
        if executions >= config.max_code_executions:
            error_message = MAX_EXECUTIONS_REACHED
            break
    return {"generation": cut_at_stop_phrases(generation, stop_phrases), "error_message": error_message}
