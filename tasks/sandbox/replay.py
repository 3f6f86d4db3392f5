"""The program a code session sends to a sandbox: replay snippets, report the last one as JSON.

This file is *source text* for the sandbox as well as a module: :func:`build_program` in
:mod:`tasks.sandbox.session` sends its whole text followed by one call to :func:`replay_main`, so
the program runs in any sandbox that executes Python and returns its stdout (ours, or the
NeMo-Skills image). It must therefore import only the standard library and do nothing at import.

NeMo-Skills runs the snippets in an IPython ``InteractiveShell``. We emulate the parts of it that
show in the output without depending on IPython (startup ~0.3 s per execution, and not installed
here): snippets share one namespace; when a snippet's last statement is an expression its value
is printed as ``repr`` (IPython's ``Out[1]: value`` with the prefix already stripped); tracebacks
are part of the output, stdout first, then stderr. Known differences: IPython pretty-prints long
containers over several lines and labels traceback frames ``Cell In[1]``; we print one-line
``repr`` and standard tracebacks.
"""
from __future__ import annotations

import ast
import contextlib
import io
import json
import linecache
import sys
import traceback
import warnings

_CELL = "<llm-code>"


def _run_cell(source: str, namespace: dict) -> tuple[str, str, str]:
    """Run one snippet; return (stdout, stderr, error kind: "" | "syntax" | "exec" + ": " + message)."""
    out, err = io.StringIO(), io.StringIO()
    linecache.cache[_CELL] = (len(source), None, source.splitlines(True), _CELL)
    try:
        tree = ast.parse(source, _CELL, "exec")
    except SyntaxError as exc:  # IndentationError included
        out.write("".join(traceback.format_exception_only(type(exc), exc)))
        return out.getvalue(), err.getvalue(), f"syntax: {exc}"
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exec(compile(tree, _CELL, "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), _CELL, "eval"), namespace)
                if value is not None:
                    namespace["_"] = value
                    print(repr(value))
        except BaseException as exc:  # SystemExit too: a snippet cannot end the session program
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            out.write("".join(traceback.format_exception(type(exc), exc, tb)))
            return out.getvalue(), err.getvalue(), f"exec: {exc}"
    return out.getvalue(), err.getvalue(), ""


def replay(snippets: list[str], max_output_characters: int = 1000) -> dict:
    """Run ``snippets`` in one namespace; report the output and error of the last one only."""
    try:
        warnings.filterwarnings("ignore")
        namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        stdout = stderr = kind = ""
        for snippet in snippets:
            stdout, stderr, kind = _run_cell(snippet, namespace)
        output = f"{stdout}{stderr}".strip().replace("Out[1]: ", "")
        if len(output) > max_output_characters:
            output = output[:max_output_characters] + "<output cut>"
        if kind.startswith("exec: "):
            error = "Execution error: " + kind[len("exec: "):]
        elif kind.startswith("syntax: "):
            error = "Syntax error: " + kind[len("syntax: "):]
        elif output == "":
            error = "Result is not defined"
        else:
            error = ""
        return {"result": output, "error_message": error}
    except BaseException:
        return {"result": None, "error_message": "Undefined error:" + traceback.format_exc()}


def replay_main(snippets_json: str, max_output_characters: int) -> None:
    """Entry point used by the generated program: print the reply as one JSON line on real stdout."""
    real_stdout = sys.stdout  # snippets may rebind sys.stdout; the reply must still reach fd 1
    reply = replay(json.loads(snippets_json), max_output_characters)
    real_stdout.write("\n" + json.dumps(reply) + "\n")
    real_stdout.flush()
