"""Planning of openmath_sft: the paper's table, overrides, profile checks, and the rendered jobs.

The training jobs the DAG really submits for the Mistral-7B (8 nodes x 8 GPUs, TP 4) and
CodeLlama-70B (32 nodes, TP 8, PP 2) rows, and the local CPU chain, are pinned as golden files
(``SKILLFLOW_UPDATE_GOLDEN=1`` rewrites them; tests/golden_files.py).
"""
from __future__ import annotations

import pytest

from tests.unit.local_env import LOCAL_ENV
from tasks.forms import PlanError
from tasks.openmath.sft import SftRequest, build_plan, resolve_row
from tasks.profiles import load_profile
from tasks.sft.progress import nemo_progress, steps_per_epoch
from tasks.slurm.render import render_sbatch
from tasks.slurm.spec import JobSpec
from tests import golden_files

GOLDEN = golden_files.ROOT / "sft_plan"
EXP = "/lustre/fsw/my_account/skillflow/openmath_sft/run1"
DATA = "/lustre/fsw/my_account/data/sft-data.jsonl"
CODE = "/lustre/fsw/my_account/NeMo-Skills"


@pytest.fixture(autouse=True)
def _fake_local_paths(monkeypatch):
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SKILLFLOW_SMOLLM2_GGUF", "/opt/skillflow/.venv/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def gpu_plan(**form):
    form.setdefault("code_dir", CODE)
    form.setdefault("model_path", "/lustre/fsw/my_account/models/base-hf")
    req = SftRequest.from_params(form)
    return build_plan(req, load_profile("example-pyxis"), EXP, DATA, "s3://bucket/openmath_sft/abc")


def local_plan(**form):
    req = SftRequest.from_params({"base_model": "smollm2", **form})
    return build_plan(req, load_profile("local"), "/var/lib/skillflow/cluster/work/openmath_sft/run1",
                      "/var/lib/skillflow/cluster/work/data/sft.jsonl", "s3://skillflow/openmath_sft/abc")


def rendered(plan, step: str, profile: str) -> str:
    return render_sbatch(JobSpec.from_dict(plan["jobs"][step]["job"]).validate(), load_profile(profile))


def check_golden(name: str, text: str) -> None:
    golden_files.check(GOLDEN / name, text)


@pytest.mark.parametrize("model,nodes,tp,pp,lr,epochs", [("Mistral-7B", 8, 4, 1, "1e-6", 4),
                                                          ("CodeLlama-70B", 32, 8, 2, "1e-5", 3)])
def test_table_rows_fill_the_training_job(model, nodes, tp, pp, lr, epochs):
    plan = gpu_plan(base_model=model)
    job = plan["jobs"]["train"]["job"]
    assert job["nodes"] == nodes and job["gpus_per_node"] == 8 and job["ntasks_per_node"] == 8
    cmd = job["command"]
    for piece in (f"++model.tensor_model_parallel_size={tp}", f"++model.pipeline_model_parallel_size={pp}",
                  f"++model.optim.lr={lr}", f"++trainer.sft.max_epochs={epochs}", "++trainer.sft.val_check_interval=4000",
                  "++exp_manager.checkpoint_callback_params.save_top_k=8",
                  "++model.data.train_ds.global_batch_size=128", "++model.data.train_ds.micro_batch_size=1"):
        assert piece in cmd, piece
    assert "++model.global_batch_size" not in cmd  # start_sft.py would overwrite it with train_ds's
    # The partition's walltime (4 h) minus the row's start-up, step, validation and save budgets and
    # the 10 min margin; no signal (nothing handles SIGTERM at NeMo-Aligner b0da1ef).
    loop = {"Mistral-7B": "00:03:24:30", "CodeLlama-70B": "00:02:33:30"}[model]
    assert f"++exp_manager.max_time_per_run={loop}" in cmd and "signal" not in job
    check_golden(f"train-{model.lower()}.example-pyxis.sbatch", rendered(plan, "train", "example-pyxis"))


def test_form_values_override_the_table():
    plan = gpu_plan(base_model="Mistral-7B", epochs=1, lr="5e-6", num_nodes=2, max_steps=50, time_limit="01:00:00")
    cmd = plan["jobs"]["train"]["job"]["command"]
    assert "++trainer.sft.max_epochs=1" in cmd and "++model.optim.lr=5e-6" in cmd and "++trainer.sft.max_steps=50" in cmd
    assert plan["jobs"]["train"]["job"]["nodes"] == 2
    assert plan["hyperparameters"]["gpus"] == 16


def test_custom_needs_every_value_and_names_the_missing_ones():
    with pytest.raises(PlanError, match="epochs, lr, num_nodes, gpus_per_node, tp, pp"):
        resolve_row(SftRequest(base_model="custom", model_path="/m", hf_model_name="org/model"))
    row = resolve_row(SftRequest(base_model="custom", model_path="/m", hf_model_name="org/m", epochs=2, lr="1e-5",
                                 num_nodes=4, gpus_per_node=8, tp=8, pp=1))
    assert (row.gpus, row.tp, row.epochs) == (32, 8, 2)


def test_profiles_refuse_models_they_cannot_train():
    with pytest.raises(PlanError, match="needs a GPU cluster"):
        local_plan(base_model="Mistral-7B")
    with pytest.raises(PlanError, match="CPU stand-in"):
        gpu_plan(base_model="smollm2")
    with pytest.raises(PlanError, match="code_dir"):
        gpu_plan(base_model="Mistral-7B", code_dir=None)
    with pytest.raises(PlanError, match="lr"):
        gpu_plan(base_model="Mistral-7B", lr="fast")


def test_download_adds_the_data_steps():
    req = SftRequest.from_params({"base_model": "Mistral-7B", "code_dir": CODE, "model_path": "/m/base",
                                  "omi1_revision": "abc123"})
    plan = build_plan(req, load_profile("example-pyxis"), EXP, None, "s3://b/p")
    assert "correct_solutions/train.jsonl" in plan["jobs"]["download"]["job"]["command"]
    assert "abc123" in plan["jobs"]["download"]["job"]["command"]
    assert "--num-output-samples 1024000" in plan["jobs"]["prepare"]["job"]["command"]
    assert plan["train_data"] == f"{EXP}/data/sft-data.jsonl"


def test_local_chain_is_the_cpu_stand_ins():
    plan = local_plan(max_steps=6, time_limit="00:02:00")
    assert plan["local"] and plan["eval_model"].endswith("/final/model-f16.gguf")
    assert set(plan["jobs"]) == {"convert", "train", "average", "export", "upload"}
    assert [p["task_id"] for p in plan["planned"]] == ["convert", "train", "average_checkpoints", "export",
                                                       "upload_checkpoint"]
    train = plan["jobs"]["train"]["job"]
    # 120 s walltime: stop by 90 s after the job started (NeMo's 15 min margin scaled down) at the
    # end of the last step that fits; no signal, as on GPUs.
    assert '--deadline-epoch "$(( $(date +%s) + 90 ))"' in train["command"] and "signal" not in train
    upload = plan["jobs"]["upload"]["job"]
    assert upload["env"]["AWS_PROFILE"] == "skillflow" and "aws_secret" not in str(upload)
    for step in ("convert", "train", "average", "export", "upload"):
        check_golden(f"{step}.local.sbatch", rendered(plan, step, "local"))


def test_progress_helpers():
    assert steps_per_epoch(1_024_000, 128) == 8000
    assert steps_per_epoch(130, 128) == 1 and steps_per_epoch(127, 128) == 0
    names = ["megatron_gpt_sft--val_code_generation_accuracy=0.512-step=4000-consumed_samples=512000.0-epoch=0",
             "megatron_gpt_sft--val_code_generation_accuracy=0.530-step=8000-consumed_samples=1024000.0-epoch=1-last"]
    assert nemo_progress(names) == 8000 and nemo_progress([]) == 0
