"""Recipe builders: resources, seeds, outputs, the seed's values and the known fixes."""
from __future__ import annotations

import dataclasses

import pytest

from tasks.apps import steps as apps
from tasks.openmath import steps as openmath
from tasks.profiles import ClusterProfile, ProfileError
from tasks.steps.base import JobOptions, RecipeError, slurm_time_seconds


def labeling(**kw) -> openmath.LabelingParams:
    base = dict(model_path="/m/mixtral-trtllm", output_dir="/m/out/math", dataset="math",
                examples_type="math_text_with_code", code_dir="/m/code", data_dir="/m/data")
    return openmath.LabelingParams(**{**base, **kw})


def sft(model: str, **kw) -> openmath.NemoSftParams:
    return openmath.NemoSftParams(model=model, nemo_model="/m/base", output_dir="/m/train", sft_data="/m/sft.jsonl",
                                  validation_file="/m/data/gsm8k/validation-sft.jsonl", code_dir="/m/code",
                                  expname="exp", **kw)


@pytest.mark.parametrize("engine", ["nemo_skills", "native"])
def test_labeling_is_one_array_with_throttle_and_seed_offset(pyxis: ClusterProfile, engine: str) -> None:
    job = openmath.labeling_array_job(224, 24, labeling(engine=engine), pyxis, starting_seed=32)
    assert job.spec.array == "0-223" and job.spec.array_throttle == 24
    assert job.outputs[0] == "/m/out/math/output-rs32.jsonl" and job.outputs[-1] == "/m/out/math/output-rs255.jsonl"
    assert "export SKILLFLOW_SEED=$((SLURM_ARRAY_TASK_ID + 32))" in job.spec.command
    assert job.dirs == ("/m/out/math",)


def test_labeling_applies_num_few_shots_fix(pyxis: ClusterProfile) -> None:
    command = openmath.labeling_array_job(2, None, labeling(), pyxis).spec.command
    assert "++prompt.few_shot_examples.num_few_shots=5" in command
    assert "inference.temperature=1.0 inference.top_k=0 inference.top_p=0.95" in command
    assert "++prompt.context_type" not in command  # empty context is the default, as in the seed doc
    masked = openmath.labeling_array_job(2, None, labeling(dataset="math-masked", context_type="masked_solution"),
                                         pyxis).spec.command
    # upstream reads the prepared file (++data_file), never <checkout>/datasets
    assert "++prompt.context_type=masked_solution ++data_file=/data/math-masked/train_full.jsonl" in masked
    assert "++dataset" not in masked and "++split_name" not in masked


def test_known_fixes_are_unique_and_described() -> None:
    keys = [f.key for f in openmath.KNOWN_FIXES + apps.KNOWN_FIXES]
    assert len(keys) == len(set(keys))
    assert all(f.upstream and f.fix and f.ref for f in openmath.KNOWN_FIXES + apps.KNOWN_FIXES)


def test_eval_greedy_uses_seed_values_and_all_benchmarks(pyxis: ClusterProfile) -> None:
    params = openmath.EvalParams(model_path="/m/engine", output_dir="/m/eval", code_dir="/m/code", data_dir="/m/data")
    job = openmath.eval_greedy_job(params, pyxis)
    assert job.spec.ntasks_per_node == 8 and job.spec.gpus_per_node == 8
    assert job.spec.image == pyxis.images["trtllm"] and job.spec.sidecars[0].image == pyxis.images["sandbox"]
    assert job.spec.env["SLURM_MPI_TYPE"] == "pmix"
    assert [o.split("/")[-2] for o in job.outputs] == list(openmath.SEED_BENCHMARKS)
    for flag in ("++server.code_execution.max_code_executions=6", "++server.code_execution.stop_on_code_error=False",
                 "++batch_size=64", "++prompt.few_shot_examples.num_few_shots=0", "+prompt=openmathinstruct/sft"):
        assert job.spec.command.count(flag) == 8
    assert "skip_filled" not in job.spec.command
    assert "HF_TOKEN" not in job.spec.command
    assert "++data_file=/data/gsm8k/test.jsonl" in job.spec.command and "+dataset=" not in job.spec.command
    assert set(job.inputs) == {"/m/engine", "/m/code", *(f"/m/data/{b}/test.jsonl" for b in openmath.SEED_BENCHMARKS)}


def test_sampling_chunk_runs_only_its_seeds(pyxis: ClusterProfile) -> None:
    params = openmath.EvalParams(model_path="/m/engine", output_dir="/m/eval", code_dir="/m/code", data_dir="/m/data",
                                 benchmarks=openmath.SAMPLING_BENCHMARKS)
    job = openmath.eval_sampling_chunk_job(range(40, 50), params, pyxis)
    assert "output-greedy" not in job.spec.command
    assert job.spec.command.count("inference.temperature=0.7") == 20 and "++skip_filled=True" in job.spec.command
    assert len(job.outputs) == 20 and job.outputs[0] == "/m/eval/gsm8k/output-rs40.jsonl"
    with pytest.raises(RecipeError, match="consecutive"):
        openmath.eval_sampling_chunk_job([1, 3], params, pyxis)


def test_generation_engines_need_their_inputs(pyxis: ClusterProfile) -> None:
    with pytest.raises(RecipeError, match="code_dir"):
        openmath.eval_greedy_job(openmath.EvalParams(model_path="/m", output_dir="/o"), pyxis)
    with pytest.raises(RecipeError, match="data_dir"):
        openmath.eval_greedy_job(openmath.EvalParams(model_path="/m", output_dir="/o", engine="native"), pyxis)
    with pytest.raises(RecipeError, match="engine"):
        openmath.eval_greedy_job(openmath.EvalParams(model_path="/m", output_dir="/o", engine="trt"), pyxis)
    with pytest.raises(RecipeError, match="data_dir"):
        openmath.eval_greedy_job(openmath.EvalParams(model_path="/m", output_dir="/o", code_dir="/c"), pyxis)
    with pytest.raises(RecipeError, match="benchmarks"):
        openmath.eval_greedy_job(openmath.EvalParams(model_path="/m", output_dir="/o", code_dir="/c", data_dir="/d",
                                                     benchmarks=("../etc",)), pyxis)
    with pytest.raises(RecipeError, match="absolute"):
        openmath.eval_greedy_job(openmath.EvalParams(model_path="models/x", output_dir="/o", code_dir="/c",
                                                     data_dir="/d"), pyxis)


def test_native_engine_picks_server_per_profile(pyxis: ClusterProfile, local: ClusterProfile) -> None:
    params = openmath.EvalParams(model_path="/m/model", output_dir="/o", engine="native", data_dir="/d")
    gpu = openmath.eval_greedy_job(params, pyxis).spec
    assert "vllm.entrypoints.openai.api_server" in gpu.command and gpu.image == pyxis.images["vllm"]
    # The local profile: llama.cpp's server in its image, the sandbox in its own (skillflow exists
    # only in images), started as on a GPU cluster; on a GPU profile without a model server
    # image, llama.cpp is an error naming the missing key, never a step on the bare node.
    cpu = openmath.eval_greedy_job(params, local).spec
    assert "-m llama_cpp.server" in cpu.command and "/v1/models" in cpu.command
    assert cpu.gpus_per_node == 0 and cpu.image == local.images["model_server"]
    assert cpu.sidecars[0].image == local.images["sandbox"] and "/start.sh" in cpu.sidecars[0].command
    assert gpu.sidecars[0].image == pyxis.images["sandbox"] and "/start.sh" in gpu.sidecars[0].command
    # Without containers, both run on the node from the profile's paths.
    bare = openmath.eval_greedy_job(params, dataclasses.replace(local, runtime="none")).spec
    assert "-m llama_cpp.server" in bare.command and bare.image is None
    assert 'sandbox serve --host 127.0.0.1 --port "$SKILLFLOW_SANDBOX_PORT"' in bare.sidecars[0].command
    with pytest.raises(ProfileError, match="container.images has no 'model_server'"):
        openmath.eval_greedy_job(dataclasses.replace(params, native_server=openmath.NativeServer(kind="llama_cpp")),
                                 pyxis)


def test_images_come_from_the_profile(pyxis: ClusterProfile) -> None:
    custom = dataclasses.replace(pyxis, images={**pyxis.images, "trtllm": "site/trt:9", "nemo": "site/nemo:9"})
    build = openmath.trtllm_build_job(openmath.TrtllmBuildParams(hf_model_path="/m/hf", engine_dir="/m/e",
                                                                 code_dir="/c"), custom)
    assert build.spec.image == "site/trt:9"
    assert openmath.nemo_sft_job(sft("Mistral-7B"), custom).spec.image == "site/nemo:9"
    broken = dataclasses.replace(pyxis, images={"sandbox": "s"})
    with pytest.raises(Exception, match="container.images has no 'nemo'"):
        openmath.nemo_sft_job(sft("Mistral-7B"), broken)


def test_trtllm_build_copies_every_tokenizer_file(pyxis: ClusterProfile) -> None:
    job = openmath.trtllm_build_job(openmath.TrtllmBuildParams(hf_model_path="/m/hf", engine_dir="/m/engine",
                                                               code_dir="/c"), pyxis)
    assert "/model/tokenizer* /model/special_tokens_map.json /model/added_tokens.json" in job.spec.command
    assert "--tp_size 8" in job.spec.command and "--max_input_len 4096 --max_output_len 512" in job.spec.command
    assert "/m/engine/rank7.engine" in job.outputs and "/m/hf:/model" in job.spec.mounts


def test_sft_table_rows_drive_resources(pyxis: ClusterProfile) -> None:
    assert len(openmath.SFT_TABLE) == 6
    mistral = openmath.nemo_sft_job(sft("Mistral-7B"), pyxis).spec
    assert (mistral.nodes, mistral.ntasks_per_node, mistral.gpus_per_node) == (8, 8, 8)
    assert "++model.tensor_model_parallel_size=4" in mistral.command and "++model.optim.lr=1e-6" in mistral.command
    big = openmath.nemo_sft_job(sft("CodeLlama-70B"), pyxis).spec
    assert big.nodes == 32 and "++model.pipeline_model_parallel_size=2" in big.command
    assert "++trainer.sft.max_epochs=3" in big.command and "trainer.num_nodes=32" in big.command
    with pytest.raises(RecipeError, match="SFT_TABLE"):
        openmath.nemo_sft_job(sft("GPT-5"), pyxis)


def test_sft_checkpoints_before_walltime(pyxis: ClusterProfile) -> None:
    # 24 h minus the 7B budget (600 s start-up, 30 s step, 600 s validation, 300 s save) and the 600 s margin.
    spec = openmath.nemo_sft_job(sft("Mistral-7B"), pyxis, JobOptions(time="1-00:00:00")).spec
    assert "++exp_manager.max_time_per_run=00:23:24:30" in spec.command
    # Nothing at NeMo-Aligner b0da1ef handles SIGTERM: a signal would only kill the ranks early.
    assert spec.signal is None
    untimed = dataclasses.replace(pyxis, default_time=None, max_time=None)
    spec = openmath.nemo_sft_job(sft("Mistral-7B"), untimed).spec
    assert spec.signal is None and "max_time_per_run" not in spec.command
    with pytest.raises(RecipeError, match="longer walltime"):
        openmath.nemo_sft_job(sft("CodeLlama-70B"), pyxis, JobOptions(time="01:00:00"))


@pytest.mark.parametrize("model", sorted(openmath.SFT_TABLE))
@pytest.mark.parametrize("time", ["04:00:00", "1-00:00:00"])
def test_every_table_row_saves_within_the_margin(pyxis: ClusterProfile, model: str, time: str) -> None:
    """For each row of the paper's table: start-up + timed loop + the step in flight + validation +
    save ends inside the walltime, and leaves no more than the margin unused."""
    params = sft(model)
    spec = openmath.nemo_sft_job(params, pyxis, JobOptions(time=time)).spec
    value = next(w.split("=", 1)[1] for w in spec.command.split() if w.startswith("++exp_manager.max_time_per_run="))
    days, hours, minutes, seconds = (int(x) for x in value.split(":"))
    loop = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    budget = openmath.sft_budget_for(model)
    end = budget.startup_s + loop + budget.step_s + budget.validation_s + budget.save_s
    walltime = slurm_time_seconds(time)
    assert end <= walltime and walltime - end <= params.checkpoint_margin_s
    assert "--signal" not in " ".join(spec.extra_sbatch_args) and spec.signal is None


def test_sft_batch_sizes_reach_the_trainer(pyxis: ClusterProfile) -> None:
    """start_sft.py (9b7f9d57) copies model.data.train_ds.{global,micro}_batch_size into the model."""
    command = openmath.nemo_sft_job(sft("Mistral-7B", global_batch_size=64, micro_batch_size=2), pyxis).spec.command
    assert "++model.data.train_ds.global_batch_size=64" in command
    assert "++model.data.train_ds.micro_batch_size=2" in command
    assert "++model.global_batch_size" not in command and "++model.micro_batch_size" not in command


def test_sft_validation_file_is_an_input(pyxis: ClusterProfile) -> None:
    job = openmath.nemo_sft_job(sft("Mistral-7B"), pyxis)
    assert "model.data.validation_ds.file_path=/validation/validation-sft.jsonl" in job.spec.command
    assert "/m/data/gsm8k/validation-sft.jsonl" in job.inputs and "/code/datasets" not in job.spec.command


def test_nemo_to_hf_is_offline_and_on_the_cpu(pyxis: ClusterProfile) -> None:
    job = openmath.nemo_to_hf_job(openmath.NemoToHfParams(
        nemo_path="/m/final/model.nemo", out_dir="/m/final/hf", hf_model_name="mistralai/Mistral-7B-v0.1",
        code_dir="/c", hf_base="/m/models/base-hf"), pyxis)
    # nemo_to_hf.py applies its Mistral config when 'mistral' is in --hf-model-name: the mount keeps the name.
    assert "--hf-model-name /hf_base/Mistral-7B-v0.1" in job.spec.command and "--cpu-only" in job.spec.command
    assert "/m/models/base-hf:/hf_base/Mistral-7B-v0.1" in job.spec.mounts
    assert "mistralai/" not in job.spec.command and "HF_HUB_OFFLINE=1" in job.spec.command
    assert job.spec.gpus_per_node == 0 and "/m/models/base-hf" in job.inputs


def test_sft_wandb_key_is_never_rendered(pyxis: ClusterProfile, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "secret-123")
    command = openmath.nemo_sft_job(sft("Mistral-7B", wandb_project="openmath"), pyxis).spec.command
    assert "secret-123" not in command and "${WANDB_API_KEY:?" in command


@pytest.mark.parametrize("text,seconds", [("30", 1800), ("10:30", 630), ("04:00:00", 14400),
                                          ("2-00", 172800), ("1-02:03", 93780), ("1-00:00:05", 86405)])
def test_slurm_time_seconds(text: str, seconds: int) -> None:
    assert slurm_time_seconds(text) == seconds


def test_openrlhf_job_shape_and_flags(pyxis: ClusterProfile) -> None:
    job = apps.openrlhf_sft_job(apps.OpenrlhfSftParams(pretrain="/m/ds", dataset="/d/train_sft.jsonl",
                                                       output_dir="/o/run"), pyxis)
    spec = job.spec
    assert (spec.nodes, spec.ntasks_per_node, spec.gpus_per_node, spec.mem, spec.exclusive) == (2, 1, 4, "0", True)
    assert spec.image == pyxis.images["openrlhf"]
    assert ('deepspeed --hostfile "$SKILLFLOW_HOSTFILE" --no_ssh --node_rank "$NODE_RANK" --master_addr '
            '"$MASTER_ADDR" --master_port "$MASTER_PORT" --module openrlhf.cli.train_sft') in spec.command
    for flag in ("--pretrain /model", "--dataset /data/train_sft.jsonl", "--save_path /output/model",
                 "--max_len 2048", "--input_key question", "--output_key response", "--apply_chat_template",
                 "--train_batch_size 256", "--micro_train_batch_size 2", "--max_epochs 2", "--max_samples 5000000",
                 "--save_steps 17", "--logging_steps 1", "--eval_steps -1", "--zero_stage 3", "--seed 42",
                 "--bf16", "--flash_attn", "--learning_rate 2e-5", "--packing_samples",
                 "--use_tensorboard /output/runs", "--gradient_checkpointing"):
        assert f"{flag} \\" in spec.command or spec.command.rstrip().endswith(flag), flag
    assert job.outputs[0] == "/o/run/model/config.json"
    with pytest.raises(RecipeError, match="train_batch_size"):
        apps.openrlhf_sft_job(apps.OpenrlhfSftParams(pretrain="/m", dataset="/d.jsonl", output_dir="/o",
                                                     train_batch_size=100), pyxis)


def test_openrlhf_resumes_across_walltime(pyxis: ClusterProfile) -> None:
    """OpenRLHF 0.5.3 has no time limit: checkpoints every (margin - save) / step steps, and a job
    passes --load_checkpoint only once DeepSpeed's `latest` file exists (OpenRLHF raises otherwise)."""
    assert apps.openrlhf_save_steps(900, 45, 120) == 17
    with pytest.raises(RecipeError, match="checkpoint_margin_s"):
        apps.openrlhf_save_steps(100, 45, 120)
    job = apps.openrlhf_sft_job(apps.OpenrlhfSftParams(pretrain="/m/ds", dataset="/d/train_sft.jsonl",
                                                       output_dir="/o/run", checkpoint_margin_s=1800), pyxis)
    command = job.spec.command
    assert "--save_steps 37" in command and "--ckpt_path /output/ckpt/checkpoints_sft" in command
    assert "if [ -f /output/ckpt/checkpoints_sft/latest ]" in command
    assert 'SKILLFLOW_RESUME=(--load_checkpoint)' in command and '"${SKILLFLOW_RESUME[@]}"' in command
    assert job.inputs == ("/m/ds", "/d/train_sft.jsonl")
