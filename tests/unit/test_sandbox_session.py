"""Code sessions (docs/recipes/openmath.md §5.3): replay, error messages, truncation -- through a real sandbox pool.

Byte-for-byte agreement with upstream's sandbox is tests/unit/test_sandbox_fidelity.py; these are
the session rules, readable.
"""
from __future__ import annotations

import re

import pytest

from tasks.sandbox import CodeSession, Limits, LocalSandbox, SandboxPool, build_program
from tasks.sandbox.session import PROGRAM_PRELOAD, as_upstream_sends

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def sandbox():
    with SandboxPool(workers=2, limits=Limits(timeout_s=30), preload=PROGRAM_PRELOAD) as pool:
        yield LocalSandbox(pool)


def test_last_expression_is_shown_like_ipython(sandbox):
    reply = CodeSession().execute(sandbox, "x = 6 * 7\nx")
    assert reply == {"result": "42", "error_message": ""}


def test_session_replays_successful_snippets_and_shows_only_the_last(sandbox):
    session = CodeSession()
    assert session.execute(sandbox, "print('first')\ny = 10")["result"] == "first"
    reply = session.execute(sandbox, "print(y * 3)")
    assert reply == {"result": "30", "error_message": ""}
    assert len(session.snippets) == 2


def test_runtime_error_message_and_session_cleared(sandbox):
    session = CodeSession()
    session.execute(sandbox, "z = 5\nprint(z)")
    reply = session.execute(sandbox, "print(z)\n1/0")
    assert reply["error_message"] == "Execution error: division by zero"
    plain = ANSI.sub("", reply["result"])     # IPython's traceback, coloured, as upstream shows it
    assert plain.startswith("5\n" + "-" * 75 + "\nZeroDivisionError")
    assert "Traceback (most recent call last)" in plain
    assert plain.endswith("ZeroDivisionError: division by zero")
    assert session.snippets == []
    assert session.execute(sandbox, "print(z)")["error_message"] == "Execution error: name 'z' is not defined"


def test_syntax_error_message(sandbox):
    reply = CodeSession().execute(sandbox, "print(1 +)")
    assert reply["error_message"].startswith("Syntax error: invalid syntax")
    assert "SyntaxError" in ANSI.sub("", reply["result"])


def test_empty_output_is_result_not_defined(sandbox):
    reply = CodeSession().execute(sandbox, "a = 1")
    assert reply == {"result": "", "error_message": "Result is not defined"}


def test_long_output_is_cut_at_1000_characters(sandbox):
    reply = CodeSession().execute(sandbox, "print('ab' * 800)")
    assert reply["result"] == ("ab" * 800)[:1000] + "<output cut>"
    assert reply["error_message"] == ""


def test_timeout(sandbox):
    reply = CodeSession().execute(sandbox, "while True: pass", timeout=1.0)
    assert reply == {"result": None, "error_message": "timeout"}


def test_out_prefix_is_stripped_and_stderr_follows_stdout(sandbox):
    reply = CodeSession().execute(sandbox, "import sys\nprint('warn', file=sys.stderr)\nprint('Out[1]: 7')")
    assert reply["result"] == "7\nwarn"


def test_long_value_is_pretty_printed_like_ipython(sandbox):
    # IPython puts a multi-line value on the line after "Out[1]: "; upstream strips the prompt only.
    reply = CodeSession().execute(sandbox, "list(range(25))")
    assert reply["result"] == "\n[" + ",\n ".join(str(i) for i in range(25)) + "]"


def test_escapes_are_decoded_once_as_upstream_sends_code(sandbox):
    # Upstream pastes code into a (non-raw) string literal of its program: "\n" written by the model
    # becomes a line break inside the string, a syntax error.
    assert as_upstream_sends('print("a\\nb")') == 'print("a\nb")'
    assert as_upstream_sends('print(r"\\d")') == 'print(r"\\d")'   # invalid escape: left as written
    reply = CodeSession().execute(sandbox, 'print("a\\nb")')
    assert reply["error_message"].startswith("Syntax error: unterminated string literal")
    assert CodeSession().execute(sandbox, 'print("a\\\\nb")')["result"] == "a\nb"


def test_code_that_breaks_upstreams_literal_is_a_timeout(sandbox):
    # Ending in a quote closes upstream's literal early; its program does not compile and its
    # client reports "timeout". We answer the same at once, without running anything.
    session = CodeSession()
    session.execute(sandbox, "x = 2\nx")
    assert session.execute(sandbox, 's = "abc"') == {"result": None, "error_message": "timeout"}
    assert session.snippets == []


def test_program_is_plain_python_text():
    # What we send to a remote NeMo-Skills sandbox: this module's source plus one call.
    assert build_program(["1"]).rstrip().endswith("replay_main(\"[\\\"1\\\"]\", 1000)")
