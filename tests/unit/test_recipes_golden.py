"""Rendered sbatch scripts of the published recipes against recorded golden files.

A change in any rendered script fails here with a diff; accepting it is a decision:
``SKILLFLOW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_recipes_golden.py``
rewrites the files, and the diff shows up in review (CI refuses the variable: tests/golden_files.py).
The other golden folder, ``sft_plan``, is pinned by the SFT plan tests; the stale-file checks here
cover both folders.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tasks.apps import steps as apps
from tasks.openmath import steps as openmath
from tasks.profiles import ClusterProfile, load_profile
from tasks.slurm.render import render_sbatch
from tasks.steps.base import JobOptions, RecipeJob
from tasks.steps.engines import NativeServer
from tests import golden_files
from tests.unit.local_env import LOCAL_ENV

GOLDEN = golden_files.ROOT / "sbatch"
PROFILES = ("example-pyxis", "local")
# Fixed stand-ins for the local profile's ${SKILLFLOW_ROOT} / ${SKILLFLOW_VAR}: no machine path
# may reach a golden file.
FAKE_ENV = LOCAL_ENV

ROOT = "/shared/openmath"
CODE = f"{ROOT}/NeMo-Skills"


def _native_server(profile: ClusterProfile) -> NativeServer:
    return NativeServer(served_model_name="openmath-mistral-7b", num_gpus=1 if profile.cpu_stand_ins else 8)


def _model(engine: str, profile: ClusterProfile) -> str:
    if engine == "nemo_skills":
        return f"{ROOT}/models/openmath-mistral-7b-trtllm"
    return f"{ROOT}/models/openmath-mistral-7b.gguf" if profile.cpu_stand_ins else \
        f"{ROOT}/models/OpenMath-Mistral-7B-v0.1-hf"


def _eval_params(engine: str, profile: ClusterProfile, **kw) -> openmath.EvalParams:
    return openmath.EvalParams(model_path=_model(engine, profile), output_dir=f"{ROOT}/results/openmath-mistral-7b",
                               engine=engine, code_dir=CODE, data_dir=f"{ROOT}/data",
                               native_server=_native_server(profile), **kw)


def eval_greedy(engine: str) -> Callable[[ClusterProfile], RecipeJob]:
    return lambda p: openmath.eval_greedy_job(_eval_params(engine, p), p)


def eval_sampling_chunk(engine: str) -> Callable[[ClusterProfile], RecipeJob]:
    return lambda p: openmath.eval_sampling_chunk_job(
        range(10, 20), _eval_params(engine, p, benchmarks=openmath.SAMPLING_BENCHMARKS), p)


def labeling_array(engine: str) -> Callable[[ClusterProfile], RecipeJob]:
    def build(p: ClusterProfile) -> RecipeJob:
        params = openmath.LabelingParams(
            model_path=f"{ROOT}/models/mixtral-8x7b-trtllm" if engine == "nemo_skills" else _model(engine, p),
            output_dir=f"{ROOT}/synthetic-solutions/gsm8k-masked", dataset="gsm8k-masked",
            examples_type="gsm8k_text_with_code", context_type="masked_solution", engine=engine, code_dir=CODE,
            data_dir=f"{ROOT}/data", native_server=_native_server(p))
        return openmath.labeling_array_job(128, 16, params, p, opts=JobOptions(time="04:00:00"))
    return build


def trtllm_build(p: ClusterProfile) -> RecipeJob:
    return openmath.trtllm_build_job(openmath.TrtllmBuildParams(
        hf_model_path=f"{ROOT}/models/OpenMath-Mistral-7B-v0.1-hf",
        engine_dir=f"{ROOT}/models/openmath-mistral-7b-trtllm", code_dir=CODE), p)


def nemo_sft(model: str, expname: str) -> Callable[[ClusterProfile], RecipeJob]:
    return lambda p: openmath.nemo_sft_job(openmath.NemoSftParams(
        model=model, nemo_model=f"{ROOT}/models/{expname}-base", output_dir=f"{ROOT}/checkpoints/{expname}/training",
        sft_data=f"{ROOT}/data/sft-data.jsonl", validation_file=f"{ROOT}/data/gsm8k/validation-sft.jsonl",
        code_dir=CODE, expname=expname), p, JobOptions(time=p.max_time))


def hf_to_nemo(p: ClusterProfile) -> RecipeJob:
    return openmath.hf_to_nemo_job(openmath.HfToNemoParams(
        hf_model_path=f"{ROOT}/models/Mistral-7B-v0.1", out_nemo=f"{ROOT}/models/mistral-7b-base.nemo",
        hf_model_name="mistralai/Mistral-7B-v0.1", code_dir=CODE), p)


def average_checkpoints(p: ClusterProfile) -> RecipeJob:
    return openmath.average_checkpoints_job(openmath.AverageCheckpointsParams(
        checkpoint_dir=f"{ROOT}/checkpoints/openmath-mistral-7b/training/checkpoints",
        nemo_model=f"{ROOT}/models/mistral-7b-base", out_nemo=f"{ROOT}/checkpoints/openmath-mistral-7b.nemo",
        code_dir=CODE), p)


def nemo_to_hf(p: ClusterProfile) -> RecipeJob:
    return openmath.nemo_to_hf_job(openmath.NemoToHfParams(
        nemo_path=f"{ROOT}/checkpoints/openmath-mistral-7b.nemo", out_dir=f"{ROOT}/models/openmath-mistral-7b-hf",
        hf_model_name="mistralai/Mistral-7B-v0.1", code_dir=CODE, hf_base=f"{ROOT}/models/Mistral-7B-v0.1"), p)


def openrlhf_sft(p: ClusterProfile) -> RecipeJob:
    return apps.openrlhf_sft_job(apps.OpenrlhfSftParams(
        pretrain="/shared/apps/models/deepseek-coder-6.7b-instruct", dataset="/shared/apps/data/train_sft.jsonl",
        output_dir="/shared/apps/runs/openrlhf-sft-packing"), p, JobOptions(time="12:00:00"))


def native_apps_sampling(p: ClusterProfile) -> RecipeJob:
    gpu = not p.cpu_stand_ins
    return apps.native_apps_sampling_job(apps.NativeSamplingParams(
        model="/shared/apps/runs/openrlhf-sft-packing/model" if gpu else "/shared/apps/models/smollm2.gguf",
        prompts="/shared/apps/data/test_prompts.jsonl", out="/shared/apps/runs/openrlhf-sft-packing/samples.jsonl",
        server=NativeServer(served_model_name="apps-model", num_gpus=4 if gpu else 1,
                            ctx_size=16384 if gpu else 8192)), p)


def apps_eval(p: ClusterProfile) -> RecipeJob:
    return apps.apps_eval_job(apps.AppsEvalParams(
        samples="/shared/apps/runs/openrlhf-sft-packing/samples.jsonl", problems="/shared/apps/data/apps/test.jsonl",
        out_dir="/shared/apps/runs/openrlhf-sft-packing/eval", cpus=32), p, JobOptions(time="02:00:00"))

CASES: dict[str, Callable[[ClusterProfile], RecipeJob]] = {
    "openmath-eval-greedy.nemo_skills": eval_greedy("nemo_skills"),
    "openmath-eval-greedy.native": eval_greedy("native"),
    "openmath-eval-sampling-chunk.nemo_skills": eval_sampling_chunk("nemo_skills"),
    "openmath-eval-sampling-chunk.native": eval_sampling_chunk("native"),
    "openmath-labeling-array.nemo_skills": labeling_array("nemo_skills"),
    "openmath-labeling-array.native": labeling_array("native"),
    "openmath-trtllm-build": trtllm_build,
    "openmath-hf-to-nemo": hf_to_nemo,
    "openmath-nemo-sft-mistral-7b": nemo_sft("Mistral-7B", "openmath-mistral-7b"),
    "openmath-nemo-sft-codellama-70b": nemo_sft("CodeLlama-70B", "openmath-codellama-70b"),
    "openmath-average-checkpoints": average_checkpoints,
    "openmath-nemo-to-hf": nemo_to_hf,
    "apps-openrlhf-sft": openrlhf_sft,
    "apps-native-sampling": native_apps_sampling,
    "apps-eval": apps_eval,
}


#: Steps only a GPU cluster runs: the local profile has CPU stand-ins for them (tasks/sft/steps.py)
#: and no image of the upstream tool, so they are rendered for example-pyxis alone.
GPU_ONLY = {"openmath-eval-greedy.nemo_skills", "openmath-eval-sampling-chunk.nemo_skills",
            "openmath-labeling-array.nemo_skills", "openmath-trtllm-build", "openmath-hf-to-nemo",
            "openmath-nemo-sft-mistral-7b", "openmath-nemo-sft-codellama-70b", "openmath-average-checkpoints",
            "openmath-nemo-to-hf", "apps-openrlhf-sft"}
RENDERED = [(step, profile) for step in sorted(CASES) for profile in PROFILES
            if profile == "example-pyxis" or step not in GPU_ONLY]


def golden_name(step: str, profile: str) -> str:
    return f"{step}.{profile}.sbatch"


def render_case(step: str, profile_name: str) -> str:
    profile = load_profile(profile_name)
    return render_sbatch(CASES[step](profile).spec, profile)


@pytest.fixture(autouse=True)
def _fake_local_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("step, profile_name", RENDERED)
def test_rendered_script_matches_golden(step: str, profile_name: str) -> None:
    golden_files.check(GOLDEN / golden_name(step, profile_name), render_case(step, profile_name),
                       hint=f"rendered sbatch for {step} on profile {profile_name}: ")


def test_every_golden_file_has_a_case() -> None:
    expected = {golden_name(s, p) for s, p in RENDERED}
    present = {p.name for p in GOLDEN.glob("*.sbatch")}
    stale = sorted(present - expected)
    assert not stale, f"golden files without a case (delete them or restore the case): {stale}"


# The test modules that pin files under golden/sft_plan (through golden_files.check).
SFT_PLAN_MODULES = ("tests/unit/test_openmath_sft_plan.py", "tests/unit/test_apps_plan.py")


def test_every_sft_plan_golden_file_is_checked(tmp_path) -> None:
    """The SFT plan tests name their golden files inside test bodies, not in a table; so run them
    with every check recorded, and compare the record with the folder."""
    record = tmp_path / "checked.txt"
    env = {k: v for k, v in os.environ.items() if k != golden_files.UPDATE_ENV}
    env[golden_files.CHECKED_ENV] = str(record)
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SFT_PLAN_MODULES],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    checked = set(record.read_text().split()) if record.exists() else set()
    present = {f"sft_plan/{p.name}" for p in (golden_files.ROOT / "sft_plan").iterdir()}
    stale = sorted(present - checked)
    assert not stale, f"golden files that no test compares (delete them or restore the test): {stale}"
    assert checked <= present


def test_golden_files_hold_no_machine_path() -> None:
    repo = str(Path(__file__).resolve().parents[2])
    home = os.path.expanduser("~")
    for path in GOLDEN.glob("*.sbatch"):
        text = path.read_text()
        assert repo not in text, f"{path.name} contains this checkout's path {repo}"
        assert home == "/" or home not in text, f"{path.name} contains the home directory {home}"
    local = (GOLDEN / golden_name("apps-native-sampling", "local")).read_text()
    assert "localhost/skillflow-model-server:checkout-test" in local and "/var/lib/skillflow/cluster/work" in local
