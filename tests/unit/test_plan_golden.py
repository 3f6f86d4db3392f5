"""``skillflow plan`` output for fixed forms, against golden folders under ``tests/golden/plans``.

Each case runs the real command line (the DAG file's param defaults, ``--conf`` on top, the same
``plan_dag`` the DAG's ``plan`` task calls) and compares every file it writes -- one sbatch per
job, named after the task, and ``plan.json`` -- with the recorded folder. Accepting a change is a
decision: ``SKILLFLOW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_plan_golden.py``
rewrites the folders, and the diff shows up in review.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.unit.local_env import LOCAL_ENV

pytest.importorskip("airflow", reason="skillflow plan reads the DAG files' param defaults")

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "plans"
UPDATE = os.environ.get("SKILLFLOW_UPDATE_GOLDEN") == "1"
LUSTRE = "/lustre/fsw/my_account"
CODE = f"{LUSTRE}/NeMo-Skills"

CASES: dict[str, tuple[str, str, dict]] = {
    "openmath_eval.example-pyxis.codellama-70b": ("openmath_eval", "example-pyxis", {
        "model": f"{LUSTRE}/models/OpenMath-CodeLlama-70b-Python-hf", "engine": "nemo_skills", "num_gpus": 8,
        "code_dir": CODE}),
    "openmath_eval.local.smoke": ("openmath_eval", "local", {
        "benchmarks": ["gsm8k:2", "math:0"], "data": "samples", "limit": 5}),
    "openmath_sft.example-pyxis.mistral-7b": ("openmath_sft", "example-pyxis", {
        "base_model": "Mistral-7B", "model_path": f"{LUSTRE}/models/Mistral-7B-v0.1", "code_dir": CODE,
        "data": "download"}),
    "openmath_sft.example-pyxis.codellama-70b": ("openmath_sft", "example-pyxis", {
        "base_model": "CodeLlama-70B", "model_path": f"{LUSTRE}/models/CodeLlama-70b-Python-hf", "code_dir": CODE,
        "data": f"{LUSTRE}/data/sft-data.jsonl"}),
    "openmath_sft.local.smollm2": ("openmath_sft", "local", {"data": "download", "max_steps": 6}),
    "openmath_datagen.example-pyxis.nemo_skills": ("openmath_datagen", "example-pyxis", {
        "model": f"{LUSTRE}/models/Mixtral-8x7B-trtllm", "engine": "nemo_skills", "code_dir": CODE,
        "configurations": ["gsm8k", "gsm8k-masked"], "num_runs": 4}),
    "openmath_datagen.local.native": ("openmath_datagen", "local", {
        "configurations": ["gsm8k", "gsm8k-masked"], "num_runs": 2, "data": "shared-sample"}),
    "apps_sft.example-pyxis.train": ("apps_sft", "example-pyxis", {
        "model": f"{LUSTRE}/models/deepseek-coder-6.7b-instruct", "train": True, "data": f"{LUSTRE}/apps"}),
    "apps_sft.local.train": ("apps_sft", "local", {"train": True}),
}


@pytest.fixture(autouse=True)
def _fake_local_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fixed stand-ins for the local profile's variables: no machine path may reach a golden file.
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SKILLFLOW_SMOLLM2_GGUF", "/opt/skillflow/.venv/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.delenv("AIRFLOW__CORE__DAGS_FOLDER", raising=False)


def run_plan(dag_id: str, profile: str, conf: dict, out: Path) -> int:
    from tasks.cli import main

    return main(["plan", dag_id, "--profile", profile, "--conf", json.dumps(conf), "--out", str(out),
                 "--run-id", "golden"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden(case: str, tmp_path: Path) -> None:
    dag_id, profile, conf = CASES[case]
    out = tmp_path / case
    assert run_plan(dag_id, profile, conf, out) == 0
    folder = GOLDEN / case
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(out, folder)
    assert folder.is_dir(), f"no golden folder {folder.name}; record it with SKILLFLOW_UPDATE_GOLDEN=1"
    made = sorted(p.name for p in out.iterdir())
    recorded = sorted(p.name for p in folder.iterdir())
    assert made == recorded, f"{case}: files differ (made {made}, recorded {recorded})"
    for name in made:
        text, expected = (out / name).read_text(), (folder / name).read_text()
        if text != expected:
            diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                                fromfile=f"golden/plans/{case}/{name}", tofile="skillflow plan"))
            pytest.fail(f"{case}/{name} differs from its golden file:\n{diff}\n"
                        "If the change is intended, rerun with SKILLFLOW_UPDATE_GOLDEN=1 and commit the new files.")


def test_every_golden_plan_has_a_case() -> None:
    stale = sorted({p.name for p in GOLDEN.iterdir() if p.is_dir()} - set(CASES)) if GOLDEN.is_dir() else []
    assert not stale, f"golden plan folders without a case: {stale}"


def test_plan_refuses_unknown_and_invalid_params(tmp_path: Path, capsys) -> None:
    assert run_plan("openmath_eval", "local", {"modle": "x"}, tmp_path / "a") == 2
    assert "unknown param(s) modle" in capsys.readouterr().err
    assert run_plan("openmath_eval", "local", {"num_gpus": 0}, tmp_path / "b") == 2
    assert "param 'num_gpus'" in capsys.readouterr().err
    assert run_plan("no_such_dag", "local", {}, tmp_path / "c") == 2
    assert "no DAG file" in capsys.readouterr().err
