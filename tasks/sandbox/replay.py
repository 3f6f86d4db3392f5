"""The program a code session sends to a sandbox: run the snippets in IPython, report the last one.

This file is *source text* for the sandbox as well as a module: :func:`build_program` in
:mod:`tasks.sandbox.session` sends its whole text followed by one call to :func:`replay_main`, so
the program runs in any sandbox that executes Python and returns its stdout (ours, or the
NeMo-Skills image). It must therefore import only the standard library at import time and do
nothing at import; IPython is imported when the program runs, in the sandbox's interpreter
(docker/sandbox/requirements.txt pins the version upstream's image had).

What the model sees must be what NeMo-Skills (9b7f9d57, ``Sandbox.execute_code`` in
nemo_skills/code_execution/sandbox.py) shows it, so this program does what the program built there
does, checked snippet by snippet in tests/unit/test_sandbox_fidelity.py:

* one ``InteractiveShell`` per execution runs the session's snippets in order with
  ``run_cell``, each inside IPython's output capture; only the last snippet's capture counts;
* the output is its stdout then its stderr, stripped, with every ``Out[1]: `` removed (a value
  IPython pretty-prints over several lines thus keeps the newline that followed the prompt);
  tracebacks are IPython's, with its colour codes, as part of the output;
* output over ``max_output_characters`` is cut there and ``<output cut>`` appended;
* ``error_message``: ``Execution error: <exception>`` when the last snippet raised,
  ``Syntax error: <error>`` when it did not compile, ``Result is not defined`` when it printed
  nothing, else empty; a failure of the program itself gives ``result`` None and
  ``Undefined error:`` with the traceback less its first three lines.

Deliberate difference: upstream's program also sets ``OPENBLAS_NUM_THREADS=16``; the sandbox's
workers keep one thread (what a program prints does not depend on it, and 16 threads would not
fit the memory limit). How snippets reach IPython (escape sequences decoded once) is done on the
client side, :func:`tasks.sandbox.session.as_upstream_sends`.
"""
from __future__ import annotations

import json
import sys
import traceback
import warnings


def replay(snippets: list[str], max_output_characters: int = 1000) -> dict:
    """Run ``snippets`` in one IPython shell; report the output and error of the last one only."""
    try:
        warnings.filterwarnings("ignore")
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.utils.capture import capture_output

        shell = InteractiveShell()
        stdout = stderr = ""
        outcome = None
        for snippet in snippets:
            with capture_output() as captured:
                outcome = shell.run_cell(snippet)
            stdout, stderr = captured.stdout, captured.stderr
        output = f"{stdout}{stderr}".strip().replace("Out[1]: ", "")
        if len(output) > max_output_characters:
            output = output[:max_output_characters] + "<output cut>"
        if outcome is not None and outcome.error_in_exec is not None:
            error = f"Execution error: {outcome.error_in_exec}"
        elif outcome is not None and outcome.error_before_exec is not None:
            error = f"Syntax error: {outcome.error_before_exec}"
        elif output == "":
            error = "Result is not defined"
        else:
            error = ""
        return {"result": output, "error_message": error}
    except Exception:
        return {"result": None, "error_message": "Undefined error:" + "\n".join(traceback.format_exc().split("\n")[3:])}


def replay_main(snippets_json: str, max_output_characters: int) -> None:
    """Entry point used by the generated program: print the reply as one JSON line on real stdout."""
    real_stdout = sys.stdout  # snippets may rebind sys.stdout; the reply must still reach fd 1
    reply = replay(json.loads(snippets_json), max_output_characters)
    real_stdout.write("\n" + json.dumps(reply) + "\n")
    real_stdout.flush()
