"""Bad input: DAG params outside their schema, and data files a user got wrong.

Params go through the real REST API of the stack's Airflow (what the trigger form and the CLI
use); files go through the real ``skillflow`` command line and the model check over SSH.
"""
from __future__ import annotations

import subprocess
import urllib.parse

import pytest

from tests.faults.driving import unique
from tests.integration.airflow_api import client_for

SECTION = "Bad input"
# Present in every checkout; the test also covers any other DAG the stack has parsed.
KNOWN_DAGS = ("openmath_eval", "openmath_datagen", "openmath_nightly", "apps_sft", "skillflow_demo",
              "selftest_slurm", "selftest_fanout")


def violations(schema: dict) -> list[object]:
    """Values that break ``schema``: a wrong type, and where the schema says so an enum miss,
    a bound one past its limit, a pattern miss, a length out of range. Only values that
    jsonschema itself rejects are returned, so every one is a real violation."""
    import jsonschema

    candidates: list[object] = [{"bad": [1]}, "not-a-number", 12345, [1, 2], True, None]
    if "enum" in schema:
        candidates.append("__not_one_of_the_choices__")
    for key, delta in (("minimum", -1), ("maximum", 1), ("exclusiveMinimum", 0), ("exclusiveMaximum", 0)):
        if isinstance(schema.get(key), (int, float)):
            candidates.append(schema[key] + delta)
    if "pattern" in schema:
        candidates += ["bad value; $(id)", ""]
    if isinstance(schema.get("minLength"), int) and schema["minLength"] > 0:
        candidates.append("")
    if isinstance(schema.get("maxLength"), int):
        candidates.append("x" * (schema["maxLength"] + 1))
    if isinstance(schema.get("minItems"), int) and schema["minItems"] > 0:
        candidates.append([])
    out = []
    for value in candidates:
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError:
            if value not in out:
                out.append(value)
    return out


@pytest.mark.reliability(section=SECTION, case="every DAG param outside its schema",
                         promise="the trigger is refused (HTTP 400) with a message naming the param; no run "
                                 "is created")
def test_every_param_outside_its_schema_is_rejected_naming_it(stack, measured):
    api = client_for(stack)
    for dag_id in KNOWN_DAGS:
        # A refused trigger needs no unpaused DAG; openmath_sft must stay paused (it would start
        # training on every SFT-data event of later tests).
        api.wait_for_dag(dag_id, unpause=False)
    dag_ids = sorted(d["dag_id"] for d in api._request("GET", "/api/v2/dags?limit=500")["dags"]
                     if not d.get("is_stale"))
    checked, params_seen, unconstrained, problems = 0, 0, [], []
    for dag_id in dag_ids:
        details = api._request("GET", f"/api/v2/dags/{dag_id}/details")
        for name, spec in (details.get("params") or {}).items():
            params_seen += 1
            values = violations(spec.get("schema") or {})
            if not values:  # no schema: no value is outside it
                unconstrained.append(f"{dag_id}.{name}")
            for value in values:
                checked += 1
                run_id = unique("bad-param")
                try:
                    api.trigger(dag_id, {name: value}, run_id=run_id)
                except Exception as exc:
                    text = str(exc)
                    if "HTTP 400" not in text or f"param {name}" not in text:
                        problems.append(f"{dag_id}.{name}={value!r}: refused without naming it: {text[:300]}")
                    continue
                # Accepted: stop the run before it does anything, then report it.
                api._request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}",
                             {"state": "failed"})
                problems.append(f"{dag_id}.{name}={value!r} was accepted")
    assert not problems, "\n".join(problems)
    assert set(KNOWN_DAGS) <= set(dag_ids) and checked >= params_seen - len(unconstrained) > 0
    free = f"; without a schema (any value valid): {', '.join(unconstrained)}" if unconstrained else ""
    measured(f"{checked} out-of-schema values over {params_seen} params of {len(dag_ids)} DAGs: "
             f"all refused with HTTP 400 naming the param{free}")


def skillflow(*args: str, cwd) -> subprocess.CompletedProcess:
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("skillflow")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.reliability(section=SECTION, case="malformed and truncated jsonl through the command line",
                         promise="exit status 2 and an error naming the file and the line; no output is "
                                 "written or marked done")
def test_malformed_and_truncated_lines_name_file_and_line(tmp_path, measured):
    (tmp_path / "bad.jsonl").write_text('{"question": "1+1", "expected_answer": 2}\nnot json\n')
    (tmp_path / "cut.jsonl").write_text('{"question": "1+1", "expected_answer": 2}\n{"question": "2+')
    seen = []
    for name, line, words in (("bad.jsonl", 2, "invalid JSON"), ("cut.jsonl", 2, "truncated")):
        out = skillflow("generate", "--server-url", "http://127.0.0.1:9", "--model", "m", "--input", name,
                        "--output-dir", f"out-{name}", cwd=tmp_path)
        assert out.returncode == 2, out
        assert f"{name}:{line}:" in out.stderr and words in out.stderr, out.stderr
        assert not (tmp_path / f"out-{name}").exists()
        seen.append(out.stderr.strip().splitlines()[-1])
    measured("; ".join(f"`{s}`" for s in seen))


@pytest.mark.reliability(section=SECTION, case="an empty dataset",
                         promise="generation (OpenMath) and sampling (APPS) refuse an empty or missing input "
                                 "file, naming it, instead of writing an empty result marked done")
def test_empty_dataset_is_an_error_naming_the_file(tmp_path, measured):
    """SFT data preparation is left out on purpose: an empty set of correct solutions is a valid
    (if useless) outcome of labeling with a weak model, and openmath_datagen reports it as
    coverage 0 rather than failing."""
    (tmp_path / "empty.jsonl").write_text("")
    gen = skillflow("generate", "--server-url", "http://127.0.0.1:9", "--model", "m", "--input", "empty.jsonl",
                    "--output-dir", "out", cwd=tmp_path)
    sample = skillflow("apps", "sample", "--server-url", "http://127.0.0.1:9", "--model", "m", "--prompts",
                       "empty.jsonl", "--out", "samples.jsonl", cwd=tmp_path)
    missing = skillflow("generate", "--server-url", "http://127.0.0.1:9", "--model", "m", "--input", "nope.jsonl",
                        "--output-dir", "out", cwd=tmp_path)
    assert gen.returncode == 2 and "empty.jsonl" in gen.stderr and "empty dataset" in gen.stderr, gen
    assert sample.returncode == 2 and "empty.jsonl" in sample.stderr, sample
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr, missing
    assert not (tmp_path / "out").exists() and not (tmp_path / "samples.jsonl").exists()
    measured("; ".join(f"`{out.stderr.strip().splitlines()[-1]}`" for out in (gen, sample, missing)))


@pytest.mark.reliability(section=SECTION, case="a missing model path",
                         promise="the evaluation fails before any job is submitted, naming the param and the "
                                 "path on the cluster")
def test_missing_model_path_is_named(stack, measured):
    from airflow.sdk.exceptions import AirflowFailException

    from operators.openmath.evaluation import check_model

    path = f"{stack.env['SKILLFLOW_VAR']}/cluster/models/{unique('no-such-model')}.gguf"
    with pytest.raises(AirflowFailException) as info:
        check_model({"checked_model": path}, {"profile": "local"})
    assert "param 'model'" in str(info.value) and path in str(info.value)
    measured(f"`{info.value}`")
