"""The plans of every DAG, as they would run on a GPU cluster and on the local profile.

Two properties every plan must have (issue 17):

* on a profile with a container runtime, every ``srun`` of every rendered job starts a container
  of the profile, so no step -- the ``skillflow`` CLI, model code, the code sandbox -- runs on
  the bare node;
* data flow: each input of each job is written by an earlier job of the plan or is a declared
  input of the form or profile (and the check that says so fails, naming job and path, when not).

Forms cover each DAG's engines and branches, and every row of the paper's SFT table.
"""
from __future__ import annotations

import re

import pytest

from tests.unit.local_env import LOCAL_ENV
from tasks.openmath.steps import SFT_TABLE
from tasks.plan import PlanCheckError, PlannedJob, check_plan, data_flow_errors, plan_dag, plan_json, render_job
from tasks.profiles import load_profile

LUSTRE = "/lustre/fsw/my_account"
CODE = f"{LUSTRE}/NeMo-Skills"

GPU_FORMS: dict[str, list[dict]] = {
    "openmath_eval": [
        dict(model=f"{LUSTRE}/models/OpenMath-Mistral-7B-v0.1-hf", engine="nemo_skills", server="auto", num_gpus=8,
             code_dir=CODE),
        dict(model=f"{LUSTRE}/models/OpenMath-CodeLlama-70b-Python-hf", engine="nemo_skills", server="vllm",
             num_gpus=8, code_dir=CODE, data=f"{LUSTRE}/mirror"),
        dict(model=f"{LUSTRE}/models/OpenMath-Mistral-7B-v0.1-hf", engine="native", server="auto", num_gpus=1),
    ],
    "openmath_sft": [
        *(dict(base_model=row, model_path=f"{LUSTRE}/models/{row}-hf", code_dir=CODE, data="download")
          for row in SFT_TABLE),
        dict(base_model="Mistral-7B", model_path=f"{LUSTRE}/models/Mistral-7B-v0.1", code_dir=CODE,
             data=f"{LUSTRE}/data/sft-data.jsonl"),
        dict(base_model="Mistral-7B", model_path=f"{LUSTRE}/models/Mistral-7B-v0.1", code_dir=CODE, data="asset"),
    ],
    "openmath_datagen": [
        dict(model=f"{LUSTRE}/models/mixtral-trtllm", engine="nemo_skills", code_dir=CODE, num_runs=2),
        dict(model=f"{LUSTRE}/models/mixtral-hf", engine="native", num_runs=2, data=f"{LUSTRE}/mirror"),
    ],
    "apps_sft": [
        dict(model=f"{LUSTRE}/models/deepseek-coder-6.7b-instruct", train=True, data=f"{LUSTRE}/apps"),
        dict(train=False, data="mapcoder-sample"),
    ],
}
LOCAL_FORMS: dict[str, list[dict]] = {
    "openmath_eval": [dict(model="smollm2", engine="native", data="samples", benchmarks=["gsm8k:2", "math:0"])],
    "openmath_sft": [dict(base_model="smollm2", data="download"), dict(base_model="smollm2", data="asset")],
    "openmath_datagen": [dict(model="smollm2", engine="native", num_runs=2, data="shared-sample")],
    "apps_sft": [dict(train=True), dict(train=False)],
}


@pytest.fixture(autouse=True)
def _fake_local_paths(monkeypatch):
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SKILLFLOW_SMOLLM2_GGUF", "/opt/skillflow/.venv/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def _cases(forms: dict[str, list[dict]]):
    return [pytest.param(dag, form, id=f"{dag}-{i}") for dag, items in forms.items() for i, form in enumerate(items)]


def _srun_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^\s*srun\b", line)]


@pytest.mark.parametrize("dag_id,form", _cases(GPU_FORMS))
def test_every_gpu_profile_step_runs_inside_an_image(dag_id: str, form: dict) -> None:
    profile = load_profile("example-pyxis")
    plan = plan_dag(dag_id, form, profile)
    assert plan.jobs
    for job in plan.jobs:
        assert job.job.get("image"), f"{job.label}: the main step names no image"
        for sidecar in job.job.get("sidecars") or ():
            assert sidecar.get("image"), f"{job.label}: sidecar {sidecar['name']} names no image"
        text = render_job(job, profile)
        sruns = _srun_lines(text)
        assert sruns, f"{job.label}: the main step is not started through srun"
        for line in sruns:
            assert "--container-image=" in line and "--no-container-mount-home" in line, \
                f"{job.label}: srun without the profile's container runtime:\n{line}"
        # Model-written code only in the sandbox image: no job mount reaches a sandbox sidecar.
        for line in sruns:
            if f"--container-image={profile.images['sandbox']}" in line and "SKILLFLOW_SIDECAR" in line:
                assert "--container-mounts" not in line, f"{job.label}: the sandbox sees the job's mounts"
        # Every line of the script that runs a command outside srun is shell plumbing, never a tool.
        body = text.split("export SKILLFLOW_MAIN\n", 1)[1]
        outside = [line for line in body.splitlines() if line and not line.startswith(("srun ", "export ", "#"))
                   and not line.startswith(("SKILLFLOW_", "for p in", "echo ", "exit ", "sleep "))]
        assert not outside, f"{job.label}: lines outside srun: {outside}"


@pytest.mark.parametrize("dag_id,form", _cases(GPU_FORMS))
def test_every_gpu_plan_has_a_complete_data_flow(dag_id: str, form: dict) -> None:
    plan = plan_dag(dag_id, form, load_profile("example-pyxis"), check=False)
    assert data_flow_errors(plan) == []
    assert all(job.outputs for job in plan.jobs), [j.label for j in plan.jobs if not j.outputs]


@pytest.mark.parametrize("dag_id,form", _cases(LOCAL_FORMS))
def test_every_local_plan_has_a_complete_data_flow(dag_id: str, form: dict) -> None:
    plan = plan_dag(dag_id, form, load_profile("local"), check=False)
    assert data_flow_errors(plan) == []


def test_a_job_reading_a_path_nothing_writes_fails_the_plan() -> None:
    profile = load_profile("example-pyxis")
    plan = plan_dag("openmath_eval", GPU_FORMS["openmath_eval"][0], profile)
    greedy = next(j for j in plan.jobs if j.task_id == "greedy")
    orphan = PlannedJob(task_id="greedy", key="orphan", job=greedy.job,
                        inputs=(f"{LUSTRE}/nowhere/test.jsonl", *greedy.inputs), outputs=greedy.outputs)
    plan.jobs.insert(plan.jobs.index(greedy), orphan)
    with pytest.raises(PlanCheckError) as err:
        check_plan(plan)
    assert f"job greedy[orphan] reads {LUSTRE}/nowhere/test.jsonl, but nothing writes it" in str(err.value)
    # Order matters: reading what only a later job writes is as wrong as reading what none writes.
    summarize = plan.jobs.pop()
    plan.jobs.insert(1, summarize)
    messages = data_flow_errors(plan)
    assert any(m.startswith("job summarize reads ") and "written only later, by greedy" in m for m in messages)


def test_undeclared_model_is_named_with_its_job() -> None:
    profile = load_profile("example-pyxis")
    plan = plan_dag("apps_sft", GPU_FORMS["apps_sft"][0], profile)
    plan.declared_inputs.clear()
    messages = data_flow_errors(plan)
    assert any(m.startswith("job prepare reads /lustre/fsw/my_account/apps/test.jsonl") for m in messages)
    assert any(m.startswith("job train reads /lustre/fsw/my_account/models/deepseek-coder-6.7b-instruct")
               for m in messages)


def test_the_sft_validation_file_is_written_by_the_plan() -> None:
    """Issue 17: the validation file the NeMo SFT job names was written by no job."""
    plan = plan_dag("openmath_sft", GPU_FORMS["openmath_sft"][-2], load_profile("example-pyxis"))
    train = next(j for j in plan.jobs if j.task_id == "train")
    validation = next(p for p in train.inputs if p.endswith("validation-sft.jsonl"))
    writers = [j.label for j in plan.jobs if validation in j.outputs]
    assert writers == ["prepare_sft_data"]


def test_eval_reads_the_data_it_prepared() -> None:
    """Issue 17: with engine=nemo_skills the prepared data must be what generate_solutions.py reads."""
    plan = plan_dag("openmath_eval", GPU_FORMS["openmath_eval"][0], load_profile("example-pyxis"))
    prepare = plan.jobs[0]
    for job in (j for j in plan.jobs if j.task_id in ("greedy", "sampling")):
        data = [p for p in job.inputs if p.endswith("/test.jsonl")]
        assert data and set(data) <= set(prepare.outputs)
        assert "++data_file=/data/" in job.job["command"]


def test_greedy_is_one_job_per_benchmark_with_the_seed_batch_size() -> None:
    profile = load_profile("example-pyxis")
    big = plan_dag("openmath_eval", GPU_FORMS["openmath_eval"][1], profile)
    greedy = [j for j in big.jobs if j.task_id == "greedy"]
    assert [j.key for j in greedy] == ["gsm8k", "asdiv", "gsm-hard", "mawps", "svamp", "tabmwp", "algebra222", "math"]
    assert all("++batch_size=16" in j.job["command"] and "++skip_filled=True" in j.job["command"] for j in greedy)
    small = plan_dag("openmath_eval", GPU_FORMS["openmath_eval"][0], profile)
    assert all("++batch_size=64" in j.job["command"] for j in small.jobs if j.task_id == "greedy")
    forced = plan_dag("openmath_eval", {**GPU_FORMS["openmath_eval"][1], "batch_size": 32}, profile)
    assert all("++batch_size=32" in j.job["command"] for j in forced.jobs if j.task_id == "greedy")


def test_plan_json_lists_jobs_inputs_outputs_images_and_times() -> None:
    profile = load_profile("example-pyxis")
    data = plan_json(plan_dag("openmath_sft", GPU_FORMS["openmath_sft"][0], profile))
    assert data["dag_id"] == "openmath_sft" and data["profile"] == "example-pyxis" and data["errors"] == []
    assert [j["task_id"] for j in data["jobs"]] == ["download_data", "prepare_sft_data", "convert", "train",
                                                    "average_checkpoints", "export", "upload_checkpoint"]
    train = data["jobs"][3]
    assert train["file"] == "train.sbatch" and train["time"] == "04:00:00" and train["nodes"] == 8
    assert train["images"] == [profile.images["nemo"], profile.images["sandbox"]]
    assert {d["from"] for d in data["declared_inputs"]} == {"param 'model_path'", "param 'code_dir'"}
