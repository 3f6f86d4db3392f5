"""Code sessions (docs/recipes/openmath.md §5.3): replay, error messages, truncation -- through a real sandbox pool."""
from __future__ import annotations

import pytest

from tasks.sandbox import CodeSession, Limits, LocalSandbox, SandboxPool, build_program
from tasks.sandbox.replay import replay


@pytest.fixture(scope="module")
def sandbox():
    with SandboxPool(workers=2, limits=Limits(timeout_s=10)) as pool:
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
    assert reply["result"].startswith("5\nTraceback (most recent call last):")
    assert reply["result"].endswith("ZeroDivisionError: division by zero")
    assert session.snippets == []
    assert session.execute(sandbox, "print(z)")["error_message"] == "Execution error: name 'z' is not defined"


def test_syntax_error_message(sandbox):
    reply = CodeSession().execute(sandbox, "print(1 +)")
    assert reply["error_message"].startswith("Syntax error: invalid syntax")
    assert "SyntaxError" in reply["result"]


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
    reply = CodeSession().execute(sandbox, "import sys\nsys.stderr.write('warn\\n')\nprint('Out[1]: 7')")
    assert reply["result"] == "7\nwarn"


def test_replay_runs_without_a_sandbox_too():
    # The program is plain Python: what we send to a remote NeMo-Skills sandbox is what we test here.
    assert replay(["import math", "math.factorial(5)"]) == {"result": "120", "error_message": ""}
    assert build_program(["1"]).rstrip().endswith("replay_main(\"[\\\"1\\\"]\", 1000)")
