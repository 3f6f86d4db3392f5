"""``apps_sft`` planning (tasks/apps/plan.py): refusals naming the param, job wiring, the report's
metric names and the seed-format comparison table."""
from __future__ import annotations

import dataclasses
import json

import pytest

from tasks.apps.plan import (LOCAL_SFT, AppsSftRequest, PlanError, build_plan, comparison_table, metric_names,
                             seed_table)
from tasks.plan import output_dir
from tasks.profiles import load_profile
from tasks.slurm.render import render_sbatch
from tasks.slurm.spec import JobSpec
from tasks.plan import output_dir
from tests.unit.test_openmath_sft_plan import check_golden
from tests.markdown import markdown_rows
from tests.unit.local_env import LOCAL_ENV, without_containers

FAKE_ENV = LOCAL_ENV


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)


def plan_for(profile_name: str, **form):
    profile = load_profile(profile_name)
    if profile_name == "local":
        profile = without_containers(profile)
    return build_plan(AppsSftRequest.from_params(form), profile, output_dir(profile, "apps_sft", "manual__1"))


def test_local_default_samples_smollm2_on_the_shipped_problems_without_training():
    plan = plan_for("local", n_samples=2, limit=3, max_tokens=128)
    out = "/var/lib/skillflow/cluster/work/apps_sft/manual__1"
    assert plan["model"] == FAKE_ENV["SKILLFLOW_SMOLLM2_GGUF"] and plan["server"] == "llama_cpp"
    assert plan["train"] is None and list(plan["sides"]) == ["base"]
    assert plan["prepare"]["command"] == f'"$SKILLFLOW_CLI" apps samples mapcoder10 --out {out}/data/test.jsonl'
    base = plan["sides"]["base"]
    sample = JobSpec.from_dict(base["sample_job"]).validate()
    assert sample.gpus_per_node == 0 and sample.image is None
    assert f"--problems {out}/data/test.jsonl" in sample.command
    assert "--n-sample 2" in sample.command and "--limit 3" in sample.command and "--max-tokens 128" in sample.command
    assert "llama_cpp.server" in sample.command and "--n_ctx 8192" in sample.command
    assert base["sample_outputs"] == [f"{out}/base/samples.jsonl", f"{out}/base/samples.jsonl.done"]
    ev = JobSpec.from_dict(base["eval_job"]).validate()
    assert f"--samples {out}/base/samples.jsonl" in ev.command and f"--problems {out}/data/test.jsonl" in ev.command
    assert "--workers" not in ev.command and ev.cpus_per_task is None
    assert base["eval_outputs"] == [f"{out}/base/eval/summary.json", f"{out}/base/eval/results.jsonl"]
    assert plan["dirs"] == [f"{out}/data", f"{out}/base", f"{out}/base/eval"]
    json.dumps(plan)  # XCom-able


@pytest.mark.parametrize("form, param, words", [
    ({"model": "deepseek-ai/deepseek-coder-6.7b-instruct"}, "model", "serves GGUF files"),
    ({"model": "/models/coder-hf", "train": True}, "model", "starts from a GGUF file"),
    ({"data": "codeparrot/apps"}, "data", "absolute folder"),
    ({"limit": 0}, "limit", "at least 1"),
    ({"n_samples": 0}, "n_samples", "positive integer"),
])
def test_local_refusals_name_the_param(form, param, words):
    with pytest.raises(PlanError) as info:
        plan_for("local", **form)
    assert f"param '{param}'" in str(info.value) and words in str(info.value)


def test_a_profile_with_neither_gpus_nor_a_training_environment_refuses_training():
    profile = dataclasses.replace(load_profile("local"), name="cpu-only", train_python=None)
    with pytest.raises(PlanError) as info:
        build_plan(AppsSftRequest.from_params({"train": True}), profile, output_dir(profile, "apps_sft", "m1"))
    assert "param 'train'" in str(info.value) and "profile 'cpu-only' has no GPUs with OpenRLHF" in str(info.value)
    assert "paths.train_python" in str(info.value)
    assert build_plan(AppsSftRequest.from_params({}), profile, output_dir(profile, "apps_sft", "m1"))["train"] is None


def test_local_profile_trains_smollm2_on_the_cpu_on_the_shipped_training_problems():
    """The CPU stand-in for OpenRLHF: GGUF -> HF, the local trainer over OpenRLHF's chat format,
    the final weights as HF folder (uploaded) and GGUF (sampled by llama.cpp)."""
    profile = without_containers(load_profile("local"))
    out = "/var/lib/skillflow/cluster/work/apps_sft/manual__1"
    plan = build_plan(AppsSftRequest.from_params({"train": True, "limit": 3, "n_samples": 2}), profile,
                      out, s3_prefix="s3://skillflow/apps_sft/manual__1")
    gguf = FAKE_ENV["SKILLFLOW_SMOLLM2_GGUF"]
    prep = plan["prepare"]["command"]
    assert prep.startswith(f'"$SKILLFLOW_CLI" apps samples mapcoder10 --out {out}/data/test.jsonl')
    assert f"apps samples mapcoder10 --split train --out {out}/data/apps/train.jsonl" in prep
    assert f"apps prepare --source {out}/data/apps/train.jsonl --split train --out {out}/data" in prep
    assert plan["prepare_outputs"] == [f"{out}/data/test.jsonl", f"{out}/data/train_sft.jsonl"]
    train_py = "/opt/skillflow/.venv-train/bin/python"
    assert plan["convert"]["command"] == f"{train_py} -m tasks.sft.cli gguf-to-hf {gguf} {out}/base-hf\n"
    train = JobSpec.from_dict(plan["train"]).validate()
    assert train.gpus_per_node == 0 and train.image is None and train.time == "02:00:00"
    # With containers: the CPU trainer's image, the model's folder mounted where the command names it.
    boxed = build_plan(AppsSftRequest.from_params({"train": True}), load_profile("local"), out)
    convert = JobSpec.from_dict(boxed["convert"]).validate()
    assert convert.image == load_profile("local").images["trainer"] and convert.command.startswith("python3 ")
    assert f"{gguf.rsplit('/', 1)[0]}:{gguf.rsplit('/', 1)[0]}" in convert.mounts
    for piece in (f"-m tasks.sft.local_train --model {out}/base-hf --train-data {out}/data/train_sft.jsonl",
                  f"--out {out}/train", "--lr 2e-5", "--max-steps 5", "--global-batch-size 2", "--micro-batch-size 1",
                  "--max-seq-length 512", "--val-check-interval 5", "--save-top-k 1", "--holdout 2",
                  "--input-key question --output-key response --apply-chat-template"):
        assert piece in train.command, piece
    assert plan["train_progress"] == {"kind": "local", "status": f"{out}/train/status.json"}
    assert plan["train_tensorboard"] == f"{out}/train/tensorboard"
    assert plan["train_hyperparameters"] == {**LOCAL_SFT, "val_check_interval": 5, "save_top_k": 1,
                                             "train_time_limit": "02:00:00", "train_nodes": 2}
    # The seed's two nodes, data-parallel through torchrun in the profile's multi-node partition.
    assert train.nodes == 2 and train.ntasks_per_node == 1
    assert ('-m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node 1 '
            '--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" -m tasks.sft.local_train') in train.command
    export = plan["export"]["command"]
    assert export.index(f"average_topk {out}/train/checkpoints {out}/train/model") < export.index(
        f"hf-to-gguf {out}/train/model {gguf} {out}/train/model-f16.gguf") and " && " in export
    assert f"checkpoint upload {out}/train/model s3://skillflow/apps_sft/manual__1/sft-model" in plan["upload"]["command"]
    assert plan["upload_result"] == f"{out}/train/upload.json"
    assert list(plan["sides"]) == ["base", "sft"]
    assert plan["sides"]["base"]["model"] == gguf and plan["sides"]["sft"]["model"] == f"{out}/train/model-f16.gguf"
    sft = JobSpec.from_dict(plan["sides"]["sft"]["sample_job"]).validate()
    assert "llama_cpp.server" in sft.command and f"--model {out}/train/model-f16.gguf" in sft.command
    assert f"{out}/train" in plan["dirs"] and f"{out}/sft/eval" in plan["dirs"]
    json.dumps(plan)  # XCom-able
    check_golden("apps-train.local.sbatch", rendered_plan(plan, "local"))


def test_local_training_on_a_folder_prepares_its_train_split():
    plan = plan_for("local", train=True, data="/data/apps")
    out = "/var/lib/skillflow/cluster/work/apps_sft/manual__1"
    assert plan["prepare"]["command"] == f'"$SKILLFLOW_CLI" apps prepare --source /data/apps --out {out}/data'
    assert f"--train-data {out}/data/train_sft.jsonl" in plan["train"]["command"]
    assert plan["upload"] is None  # no S3 prefix given: nothing to upload to


def rendered_plan(plan, profile_name: str) -> str:
    """Every job of a plan rendered as the sbatch script the DAG submits, in DAG order, then the
    paths the DAG checks: what a golden file pins."""
    profile = load_profile(profile_name)
    jobs = [(name, plan.get(name)) for name in ("prepare", "convert", "train", "export", "upload")]
    jobs += [(f"{kind}_{side}", info[f"{kind}_job"]) for side, info in plan["sides"].items()
             for kind in ("sample", "eval")]
    parts = [f"### {name}\n" + render_sbatch(JobSpec.from_dict(job).validate(), profile) for name, job in jobs if job]
    paths = {k: plan.get(k) for k in ("prepare_outputs", "train_outputs", "train_tensorboard", "upload_result",
                                      "dirs", "model", "server")}
    paths["sides"] = {s: {k: v for k, v in info.items() if not k.endswith("_job")} for s, info in plan["sides"].items()}
    return "\n".join(parts) + "### paths\n" + json.dumps(paths, indent=1, sort_keys=True) + "\n"


def test_gpu_plan_is_pinned():
    """The OpenRLHF path of GPU profiles: every job byte for byte (the local CPU branch must not move it)."""
    profile = load_profile("example-pyxis")
    plan = build_plan(AppsSftRequest.from_params({"model": "/lustre/models/deepseek-coder-6.7b-instruct",
                                                  "data": "/lustre/apps", "train": True}),
                      profile, output_dir(profile, "apps_sft", "manual__1"), s3_prefix="s3://bucket/apps_sft/manual__1")
    check_golden("apps-train.example-pyxis.sbatch", rendered_plan(plan, "example-pyxis"))
    check_golden("apps-base.example-pyxis.sbatch", rendered_plan(plan_for("example-pyxis"), "example-pyxis"))


def test_gpu_profile_trains_with_the_seed_flags_then_samples_both_models_with_vllm():
    plan = plan_for("example-pyxis", model="/lustre/models/deepseek-coder-6.7b-instruct", data="/lustre/apps",
                    train=True)
    out = "/lustre/fsw/my_account/skillflow/apps_sft/manual__1"
    assert plan["prepare"]["command"] == f'"$SKILLFLOW_CLI" apps prepare --source /lustre/apps --out {out}/data'
    assert plan["prepare_outputs"] == [f"{out}/data/test_prompts.jsonl", f"{out}/data/train_sft.jsonl"]
    train = JobSpec.from_dict(plan["train"]).validate()
    assert train.nodes == 2 and train.gpus_per_node == 4 and train.exclusive and train.mem == "0"
    for flag in ("--packing_samples", "--apply_chat_template", "--gradient_checkpointing", "--zero_stage 3",
                 "--learning_rate 2e-5", "--train_batch_size 256", "--micro_train_batch_size 2", "--bf16",
                 "--flash_attn", "--seed 42", "--max_len 2048"):
        assert flag in train.command
    assert train.time == load_profile("example-pyxis").max_time == "04:00:00"
    assert plan["train_outputs"][0] == f"{out}/train/model/config.json"
    assert list(plan["sides"]) == ["base", "sft"]
    assert plan["sides"]["sft"]["model"] == f"{out}/train/model"
    for side in ("base", "sft"):
        spec = JobSpec.from_dict(plan["sides"][side]["sample_job"]).validate()
        assert spec.gpus_per_node == 4 and "vllm.entrypoints.openai.api_server" in spec.command
        assert "--tensor-parallel-size 4" in spec.command and "--prompts /prompts/test_prompts.jsonl" in spec.command
        assert "--extra-body" not in spec.command  # vLLM's defaults are already plain T + top-p
        ev = JobSpec.from_dict(plan["sides"][side]["eval_job"]).validate()
        assert ev.cpus_per_task == 32 and "--problems /problems/test.jsonl" in ev.command
        assert "/lustre/apps:/problems" in ev.mounts
    assert f"{out}/train/model:/model" in JobSpec.from_dict(plan["sides"]["sft"]["sample_job"]).mounts
    assert f"{out}/train" in plan["dirs"] and f"{out}/sft/eval" in plan["dirs"]


def test_trained_model_is_uploaded_from_the_cluster_with_the_clusters_own_credentials():
    profile = load_profile("example-pyxis")
    plan = build_plan(AppsSftRequest.from_params({"model": "/lustre/m", "data": "/lustre/apps", "train": True}),
                      profile, output_dir(profile, "apps_sft", "manual__1"), s3_prefix="s3://bucket/apps_sft/manual__1")
    out = "/lustre/fsw/my_account/skillflow/apps_sft/manual__1"
    upload = JobSpec.from_dict(plan["upload"]).validate()
    assert f"checkpoint upload {out}/train/model s3://bucket/apps_sft/manual__1/sft-model" in upload.command
    assert upload.env == profile.storage_env and "AWS_SECRET" not in str(plan)
    assert plan["upload_result"] == f"{out}/train/upload.json" and plan["train_tensorboard"] == f"{out}/train/runs"
    assert plan_for("example-pyxis")["upload"] is None  # nothing trained, nothing to upload


def test_gpu_profile_defaults_to_the_seed_model_and_refuses_training_it_by_hub_name():
    plan = plan_for("example-pyxis")
    assert plan["model"] == "deepseek-ai/deepseek-coder-6.7b-instruct"
    assert "--model deepseek-ai/deepseek-coder-6.7b-instruct" in plan["sides"]["base"]["sample_job"]["command"]
    with pytest.raises(PlanError, match="param 'model': training reads the model folder"):
        plan_for("example-pyxis", train=True, data="/lustre/apps")
    with pytest.raises(PlanError, match="param 'train': the mapcoder-sample training problems .* are sized for the "
                                        "local CPU stand-in"):
        plan_for("example-pyxis", train=True, model="/lustre/m")


SUMMARY = {
    "total": {"problems": 3, "samples": 30, "correct": 4, "pass@1": 0.13333333333333333, "pass@5": 0.5,
              "pass@10": 0.6666666666666666},
    "interview": {"problems": 1, "samples": 10, "correct": 0, "pass@1": 0.0, "pass@5": 0.0, "pass@10": 0.0},
    "competition": {"problems": 1, "samples": 10, "correct": 1, "pass@1": 0.1, "pass@5": 0.5, "pass@10": 1.0},
    "introductory": {"problems": 1, "samples": 10, "correct": 3, "pass@1": 0.3, "pass@5": 0.9166666666666666,
                     "pass@10": 1.0},
}


def test_metric_names_have_no_at_sign_and_skip_unavailable_k():
    m = metric_names(SUMMARY)
    assert m["total.pass_at_1"] == pytest.approx(0.13333333333333333)
    assert m["introductory.pass_at_5"] == pytest.approx(0.9166666666666666) and m["interview.problems"] == 1.0
    assert not any("@" in k for k in m)
    short = {"total": {"problems": 2, "samples": 4, "correct": 1, "pass@1": 0.25, "pass@5": None,
                       "short@5": [1, 2], "pass@10": None}}
    assert metric_names(short) == {"total.problems": 2.0, "total.samples": 4.0, "total.correct": 1.0,
                                   "total.pass_at_1": 0.25}


def test_seed_table_matches_the_seed_layout():
    table = seed_table(SUMMARY)
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "Difficulty"
    assert [c.strip() for c in lines[0].split("|")[2:5]] == ["pass@1", "pass@5", "pass@10"]
    assert set(lines[1].replace("|", "").replace(" ", "")) == {"-"}
    # the seed's row order and full-precision floats
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["total", "introductory", "interview", "competition"]
    assert "0.13333333333333333" in lines[2] and "0.9166666666666666" in lines[3]
    assert "n/a (n<10)" in seed_table({"total": {"pass@1": 0.5, "pass@5": 0.7, "pass@10": None}})


def test_comparison_shows_both_models_and_the_difference_or_notes_base_only():
    sft = json.loads(json.dumps(SUMMARY))
    sft["total"]["pass@1"] = 0.2
    both = comparison_table({"base": {"model": "/m/base", "pass_at_k": SUMMARY, "problems": 3, "samples": 30},
                             "sft": {"model": "/m/sft", "pass_at_k": sft, "problems": 3, "samples": 30}}, True)
    assert "## Base model: `/m/base`" in both and "## SFT model: `/m/sft`" in both
    assert ["total", "+0.0667", "+0.0000", "+0.0000"] in markdown_rows(both) and "Note:" not in both
    alone = comparison_table({"base": {"model": "/m/base", "pass_at_k": SUMMARY, "problems": 3, "samples": 30}},
                             False)
    assert "Note: this run did not train" in alone and "## SFT model" not in alone
    assert "SFT minus base" not in alone
