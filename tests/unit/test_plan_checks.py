"""Plan-time checks (tasks/slurm/plan_checks.py): a plan that breaks a limit of the profile fails at
the ``plan`` step with a message naming the form's param and the limit; the shipped forms pass."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import tasks.apps.plan as apps
import tasks.openmath.datagen as datagen
import tasks.openmath.evaluation as evaluation
import tasks.openmath.sft as sft
from tasks.profiles import ProfileError, load_profile
from tasks.slurm.durations import format_seconds, slurm_time_seconds
from tasks.slurm.limits import gpus_in_gres
from tasks.slurm.plan_checks import (FORMS, PlanCheckError, check_plan, checked_plan, iter_job_specs,
                                     missing_image_message, profile_limit_errors)
from tests.unit.local_env import LOCAL_ENV

FAKE_ENV = LOCAL_ENV
GPU_EVAL = {"model": "/lustre/models/m", "engine": "nemo_skills", "code_dir": "/lustre/NeMo-Skills"}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("text,seconds", [
    ("90", 5400), ("1:30", 90), ("02:00:00", 7200), ("1-00", 86400), ("1-02:03", 93780), ("1-02:03:04", 93784),
    ("UNLIMITED", None), ("INFINITE", None)])
def test_slurm_time_forms(text, seconds):
    assert slurm_time_seconds(text) == seconds


def test_bad_time_names_the_value():
    with pytest.raises(ValueError, match="'4h' is not a Slurm time limit"):
        slurm_time_seconds("4h")
    assert format_seconds(93784) == "1-02:03:04" and format_seconds(7200) == "02:00:00"


@pytest.mark.parametrize("gres,gpus", [("gpu:8", 8), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:4,gpu:v100:2", 6),
                                       ("(null)", 0), ("", 0), ("gpu:2(S:0),shard:8", 2)])
def test_gpus_in_gres(gres, gpus):
    assert gpus_in_gres(gres) == gpus


def eval_plan(profile, form):
    return evaluation.build_plan(evaluation.EvalRequest.from_params(form), profile, "/lustre/out")


def test_time_over_max_time_names_the_param_and_the_limit():
    profile = load_profile("example-pyxis")
    form = {**GPU_EVAL, "time_limit": "06:00:00"}
    with pytest.raises(PlanCheckError) as err:
        checked_plan(lambda: eval_plan(profile, form), profile, form, FORMS["openmath_eval"])
    text = str(err.value)
    assert "param 'time_limit' (now '06:00:00') to at most 04:00:00" in text
    assert "max_time=04:00:00 (slurm.max_time of profile 'example-pyxis')" in text
    # One line for the limit, however many jobs break it.
    assert len(err.value.violations) == 1 and len(err.value.violations[0].jobs) > 1


def test_gpus_over_the_node_name_the_param_that_asked():
    profile = load_profile("example-pyxis")
    form = {"model": "/lustre/m", "data": "/lustre/apps", "sampling_gpus": 16, "gpus_per_node": 4}
    with pytest.raises(PlanCheckError) as err:
        checked_plan(lambda: apps.build_plan(apps.AppsSftRequest.from_params(form), profile, "/lustre/out"),
                     profile, form, FORMS["apps_sft"])
    text = str(err.value)
    assert "job 'apps-sample-base' asks 16 GPUs per node, over the limit gpus_per_node=8" in text
    assert "param 'sampling_gpus' (now 16) to at most 8" in text and "'gpus_per_node'" not in text


def test_image_key_missing_from_the_profile_names_the_params_that_chose_it(tmp_path: Path):
    raw = yaml.safe_load((Path(evaluation.__file__).parents[1] / "cluster_profiles" / "example-pyxis.yaml").read_text())
    del raw["container"]["images"]["trtllm"]
    path = tmp_path / "no-trtllm.yaml"
    path.write_text(yaml.safe_dump(raw))
    profile = load_profile(str(path))
    with pytest.raises(PlanCheckError) as err:
        checked_plan(lambda: eval_plan(profile, GPU_EVAL), profile, GPU_EVAL, FORMS["openmath_eval"])
    text = str(err.value)
    assert "the form (param 'engine'='nemo_skills') needs the image key 'trtllm'" in text
    assert f"container.images of {path} does not define" in text and "add container.images.trtllm" in text


def test_an_image_the_profile_does_not_name_is_refused():
    profile = load_profile("example-pyxis")
    plan = {"jobs": [{"name": "j", "command": "true", "image": "docker.io/someone/else:latest"}]}
    [violation] = check_plan(plan, profile)
    assert violation.message.startswith("job 'j' runs image 'docker.io/someone/else:latest', which no key of "
                                        "container.images")
    sidecar = {"name": "s", "command": "x", "sidecars": [{"name": "sandbox", "command": "y", "image": "evil:1"}]}
    assert "runs image 'evil:1' in sidecar 'sandbox'" in check_plan([sidecar], profile)[0].message


def test_a_job_on_another_partition_is_not_held_to_this_partitions_limit():
    profile = load_profile("example-pyxis")
    plan = {"a": {"name": "a", "command": "x", "time": "2-00:00:00", "partition": "long"},
            "b": [{"name": "b", "command": "x", "time": "2-00:00:00"}]}
    assert [v.jobs for v in check_plan(plan, profile)] == [("b",)]
    assert [w for w, _ in iter_job_specs(plan)] == ["plan.a", "plan.b[0]"]


def _shipped_plans(profile_name):
    profile = load_profile(profile_name)
    if profile_name == "local":
        yield "openmath_eval", eval_plan(profile, {"model": "smollm2", "engine": "native", "data": "samples"})
        yield "apps_sft", apps.build_plan(apps.AppsSftRequest.from_params({"train": True}), profile, "/o")
        yield "openmath_sft", sft.build_plan(sft.SftRequest.from_params({}), profile, "/o", "/o/d.jsonl", "s3://b/p")
        yield "openmath_datagen", datagen.build_plan(datagen.DatagenRequest.from_params(
            {"model": "smollm2", "engine": "native", "num_gpus": 1, "data": "shared-sample", "num_runs": 1}),
            profile, "/o")
    else:
        yield "openmath_eval", eval_plan(profile, GPU_EVAL)
        yield "apps_sft", apps.build_plan(apps.AppsSftRequest.from_params(
            {"model": "/lustre/m", "data": "/lustre/apps", "train": True}), profile, "/o")
        yield "openmath_datagen", datagen.build_plan(datagen.DatagenRequest.from_params(
            {"model": "/lustre/m", "code_dir": "/lustre/ns", "data": "download", "num_runs": 1}), profile, "/o")
        for row in ("Mistral-7B", "CodeLlama-70B"):
            yield "openmath_sft", sft.build_plan(sft.SftRequest.from_params(
                {"base_model": row, "code_dir": "/lustre/ns", "model_path": "/lustre/m"}), profile, "/o",
                "/o/d.jsonl", "s3://b/p")


@pytest.mark.parametrize("profile_name", ["local", "example-pyxis"])
def test_the_shipped_default_forms_fit_their_profiles(profile_name):
    profile = load_profile(profile_name)
    seen = 0
    for dag_id, plan in _shipped_plans(profile_name):
        assert check_plan(plan, profile, {}, FORMS[dag_id]) == [], dag_id
        seen += sum(1 for _ in iter_job_specs(plan))
    assert seen >= 8  # the walker found the jobs wherever each plan keeps them


def test_the_plan_dag_entry_points():
    """How ``tasks.plan.plan_dag`` (skillflow plan, and the DAGs' plan tasks) calls these checks:
    a plan with ``dag_id``, ``profile``, ``params`` and ``jobs[].job`` in, messages out."""
    profile = load_profile("example-pyxis")
    form = {**GPU_EVAL, "num_gpus": 16}
    details = eval_plan(profile, form)
    jobs = [SimpleNamespace(job=spec) for _, spec in iter_job_specs(details)]
    plan = SimpleNamespace(dag_id="openmath_eval", profile=profile, params=form, jobs=jobs)
    [message] = profile_limit_errors(plan)
    assert message.startswith("jobs 'eval-trtllm-engine-tp16") and "param 'num_gpus' (now 16) to at most 8" in message
    gpu_job = next(j for j in jobs if j.job.get("gpus_per_node") == 16)
    single = SimpleNamespace(dag_id="openmath_eval", profile=profile, params=form, jobs=[gpu_job])
    assert profile_limit_errors(single)[0].startswith(f"job '{gpu_job.job['name']}' asks 16 GPUs per node")
    try:
        profile.image("no_such_key")
    except ProfileError as exc:
        message = missing_image_message(exc, profile, {"engine": "native", "server": "vllm"}, "openmath_eval")
    assert message.startswith("the form (param 'engine'='native', param 'server'='vllm') needs the image key "
                              "'no_such_key'")
    assert missing_image_message(ProfileError("models.x uses ${X}"), profile, {}, "openmath_eval") is None
