"""MapCoder/xCodeEval-format APPS subsets (shared data) to APPS-layout rows.

MapCoder's conversion turned each APPS test into ``{"input": str, "output": [..]}``: a
call-based test's argument list became its ``str()``-ed arguments joined by newlines, and a
return value that was not a list was wrapped in one. No ``fn_name`` or ``solutions`` survive.

Two ways back, because the two harnesses disagree on what a call-based problem is:

* ``call_based="fn_name"`` (APPS semantics): ``fn_name`` from the starter code's ``def``, the
  arguments parsed back one per line (``ast.literal_eval``, else the raw text), outputs as
  stored (the APPS harness accepts the value or its first element). Ambiguous cases are counted:
  a text argument that looks like a literal ("12", "True") comes back as that literal.
* ``call_based="stdin"`` (MapCoder semantics, what its models were prompted for): the program
  reads the argument lines from stdin and prints the result, expected stdout = ``str(value)``.
"""
from __future__ import annotations

import ast
import json
import re
from collections import Counter
from typing import Any

_DEF = re.compile(r"def\s+(\w+)\s*\((.*?)\)\s*(?:->[^:]*)?:", re.S)


def parse_starter(starter_code: str) -> tuple[str, int] | None:
    """``(function name, number of positional parameters without self)`` of the first ``def``."""
    m = _DEF.search(starter_code or "")
    if not m:
        return None
    params, depth, cur = [], 0, ""
    for ch in m.group(2):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            params.append(cur)
            cur = ""
        else:
            cur += ch
    params.append(cur)
    names = [p.split(":")[0].split("=")[0].strip() for p in params]
    names = [n for n in names if n and n != "self" and not n.startswith("*")]
    return m.group(1), len(names)


def _literal(text: str, stats: Counter) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if not isinstance(value, (list, tuple, dict, set)) and not text.strip().startswith(("'", '"')):
        stats["scalar_args_guessed"] += 1
    return value


def convert_row(row: dict[str, Any], call_based: str, stats: Counter) -> dict[str, Any] | None:
    """One MapCoder row to one APPS-layout row (``problem_id``, ``question``, ``input_output``...);
    ``None`` when the tests cannot be mapped (counted in ``stats``)."""
    tests = row.get("test_list") or []
    starter = row.get("starter_code") or ""
    io: dict[str, Any] = {"inputs": [], "outputs": []}
    if starter.strip() and call_based == "fn_name":
        sig = parse_starter(starter)
        if sig is None:
            stats["skipped_no_def_in_starter"] += 1
            return None
        io["fn_name"], arity = sig
        for t in tests:
            text = t["input"]
            parts = [text] if arity == 1 else text.split("\n")
            if len(parts) != arity:
                stats["skipped_arity_mismatch"] += 1
                return None
            io["inputs"].append([_literal(p, stats) for p in parts])
            io["outputs"].append(t["output"])
        stats["call_based"] += 1
    else:
        for t in tests:
            out = t["output"]
            if starter.strip():  # call-based problem run as a stdin program, MapCoder-style
                value = out[0] if len(out) == 1 else out
                io["inputs"].append(t["input"])
                io["outputs"].append(value if isinstance(value, str) else str(value))
                stats["call_based_as_stdin_tests"] += 1
            else:
                io["inputs"].append(t["input"])
                io["outputs"].append(out[0] if len(out) == 1 else out)
        stats["call_based_as_stdin" if starter.strip() else "standard_input"] += 1
    stats["converted"] += 1
    return {"problem_id": row["id"], "question": row.get("description", ""), "solutions": "",
            "input_output": json.dumps(io), "difficulty": row.get("difficulty", "unknown"),
            "url": "", "starter_code": starter, "source_name": row.get("name")}
