"""CI's refusals, each shown on a real run of the suite's own tests in a child pytest:
a test that skips for a missing prerequisite fails in CI, and SKILLFLOW_UPDATE_GOLDEN is refused
(by the session and by ``.ci/run``) instead of rewriting the golden files it should compare."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import golden_files

ROOT = Path(__file__).resolve().parents[2]
# A test that needs the shared data folder, and is cheap when it has it.
NEEDS_SHARED = "tests/unit/test_grading_real_data.py::test_openai_labels_agree_on_shared_data"
GOLDEN_CASE = "tests/unit/test_recipes_golden.py::test_rendered_script_matches_golden"


def _pytest(*args: str, **env: str | None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("CI", golden_files.UPDATE_ENV)}
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env=full, capture_output=True, text=True, timeout=300)


def test_a_skip_for_missing_shared_data_fails_in_ci_only(tmp_path):
    missing = str(tmp_path / "no-shared")
    dev = _pytest(NEEDS_SHARED, SKILLFLOW_SHARED=missing)
    assert dev.returncode == 0 and "1 skipped" in dev.stdout, dev.stdout[-2000:]
    ci = _pytest(NEEDS_SHARED, SKILLFLOW_SHARED=missing, CI="true")
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "skipped in CI" in ci.stdout and f"{missing}/data is absent" in ci.stdout, ci.stdout[-2000:]


def test_ci_refuses_to_update_golden_files():
    run = _pytest(f"{GOLDEN_CASE}[apps-eval-example-pyxis]", CI="true", **{golden_files.UPDATE_ENV: "1"})
    assert run.returncode != 0, run.stdout[-2000:]
    assert f"{golden_files.UPDATE_ENV} is set in CI" in run.stdout + run.stderr, (run.stdout + run.stderr)[-2000:]
    # Outside CI the same run is a person accepting the rendered files (here: unchanged ones).
    dev = _pytest(f"{GOLDEN_CASE}[apps-eval-example-pyxis]", **{golden_files.UPDATE_ENV: "1"})
    assert dev.returncode == 0 and "1 passed" in dev.stdout, dev.stdout[-2000:]


def test_a_golden_check_made_in_ci_with_the_variable_fails(monkeypatch, tmp_path):
    """Even where the session-start refusal is bypassed (a test run without tests/conftest.py)."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv(golden_files.UPDATE_ENV, "1")
    target = golden_files.ROOT / "sbatch" / "apps-eval.local.sbatch"
    before = target.read_text()
    with pytest.raises(pytest.fail.Exception, match="set in CI"):
        golden_files.check(target, "rewritten\n")
    assert target.read_text() == before


def _ci_run(tmp_path, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    """``.ci/run`` with ``make`` replaced by a script that notes how it was called: the real one
    would run the whole suite inside this unit test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    note = tmp_path / "make-called"
    fake = bin_dir / "make"
    fake.write_text(f'#!/bin/sh\necho "$* CI=$CI" >> {note}\n')
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", golden_files.UPDATE_ENV)}
    run = subprocess.run([str(ROOT / ".ci" / "run")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**base, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env})
    return run, note.read_text().strip().replace("\n", "; ") if note.exists() else ""


def test_ci_entry_point_runs_make_test_the_recipes_the_reliability_suite_then_the_team_topology_with_ci_set(tmp_path):
    run, made = _ci_run(tmp_path)
    assert run.returncode == 0 and made == "test CI=true; test-recipes CI=true; faults CI=true; test-team CI=true", \
        (run.stderr, made)


def test_ci_entry_point_refuses_the_update_variable_and_a_false_ci(tmp_path):
    run, made = _ci_run(tmp_path, **{golden_files.UPDATE_ENV: "1"})
    assert run.returncode == 2 and "never rewrites" in run.stderr and made == "", (run.stderr, made)
    run, made = _ci_run(tmp_path, CI="false")
    assert run.returncode == 2 and "skip silently" in run.stderr and made == "", (run.stderr, made)
