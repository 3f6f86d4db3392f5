"""APPS recipe steps (OpenRLHF 0.5.3 SFT, then vLLM sampling) as Slurm jobs (docs/recipes/apps_sft.md §1, §2.3, §7).

The seed sampled with ``llmkit_data.cli.sample``, a package no image carries and PyPI does not
publish; sampling here is ``skillflow apps sample`` against vLLM's OpenAI server in the same image.

Training runs the seed command on 2 nodes x 4 GPUs: one Slurm task per node, each running
DeepSpeed's launcher in ``--no_ssh`` mode with its own node rank, the rendezvous variables and
the hostfile exported by the renderer. ``--mem=0 --exclusive`` give the job all of each node's
memory, which is the seed's fix for SIGBUS in NCCL's shared-memory transport (docs/recipes/apps_sft.md §1.7).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from tasks.profiles import ClusterProfile
from tasks.steps.base import (JobOptions, KnownFix, PathMap, RecipeError, RecipeJob, abs_path, basename, make_spec, parent,
                                  positive, q, slug)
from tasks.steps.engines import NativeServer, native_image, native_step

KNOWN_FIXES: tuple[KnownFix, ...] = (
    KnownFix("per-node-rank", ("openrlhf_sft",),
             "the rank must be expanded on each node; expanding it on the submit host gives every node rank 0 "
             "and the job hangs",
             "the command text reaches each task verbatim and $NODE_RANK is set from $SLURM_NODEID on its node; "
             "the hostfile lists nodes in the same `scontrol show hostnames` order",
             "docs/recipes/apps_sft.md §1.7"),
    KnownFix("ckpt-path-per-run", ("openrlhf_sft",),
             "--ckpt_path defaults to ./ckpt/checkpoints_sft relative to the working directory, shared by runs",
             "--ckpt_path is set under output_dir",
             "docs/recipes/apps_sft.md §1.1"),
    KnownFix("resume-across-walltime", ("openrlhf_sft",),
             "--save_steps 16000 is more than the run's ~816 steps and --load_checkpoint is not passed, so a job "
             "cut by its walltime (the seed's run took ~10.3 h) starts over",
             "--save_steps is derived from the margin (a DeepSpeed checkpoint at least every margin of training "
             "time) and each job passes --load_checkpoint when the checkpoint folder has DeepSpeed's `latest` "
             "file; continuation jobs resume from it until the final HF model exists",
             "docs/recipes/apps_sft.md §1.1; OpenRLHF v0.5.3 openrlhf/cli/train_sft.py, "
             "openrlhf/trainer/sft_trainer.py"),
    KnownFix("single-max-epochs", ("openrlhf_sft",),
             "the seed command lists --max_epochs 2 twice", "it is passed once", "docs/recipes/apps_sft.md §1.1"),
)


@dataclass(frozen=True)
class OpenrlhfSftParams:
    """``openrlhf.cli.train_sft`` with the seed's flags (docs/recipes/apps_sft.md §1.1); defaults are the seed values.

    ``pretrain`` is the HF model folder, ``dataset`` the ``train_sft.jsonl`` from ``prep_apps``;
    the final HF model goes to ``output_dir/model`` and TensorBoard events to ``output_dir/runs``.
    """

    pretrain: str
    dataset: str
    output_dir: str
    num_nodes: int = 2
    gpus_per_node: int = 4
    max_len: int = 2048
    input_key: str = "question"
    output_key: str = "response"
    apply_chat_template: bool = True
    train_batch_size: int = 256
    micro_train_batch_size: int = 2
    max_epochs: int = 2
    max_samples: int = 5000000
    # None: derived from the margin (:func:`openrlhf_save_steps`); the seed's 16000 never saves.
    save_steps: int | None = None
    # Training time a job may lose when its walltime ends between two checkpoints.
    checkpoint_margin_s: int = 900
    # The seed's run on 8 A100-40GB: ~45 s per optimizer step (docs/recipes/apps_sft.md §7); a ZeRO-3 checkpoint
    # of a 6.7B model with its fp32 Adam state (~80 GB) takes about two minutes to write.
    step_s: int = 45
    save_s: int = 120
    logging_steps: int = 1
    eval_steps: int = -1
    zero_stage: int = 3
    seed: int = 42
    bf16: bool = True
    flash_attn: bool = True
    learning_rate: str = "2e-5"
    packing_samples: bool = True
    gradient_checkpointing: bool = True
    master_port: int = 29500
    image_key: str = "openrlhf"


def openrlhf_save_steps(margin_s: int, step_s: int, save_s: int) -> int:
    """Optimizer steps between DeepSpeed checkpoints so that a job cut by its walltime loses at
    most ``margin_s``: the steps since the last checkpoint plus the checkpoint being written.

    OpenRLHF 0.5.3 saves only every ``--save_steps`` (no time limit, no signal handler), so the
    interval is the only bound on what a walltime kill costs.
    """
    positive("checkpoint_margin_s", margin_s)
    positive("step_s", step_s)
    if margin_s <= save_s + step_s:
        raise RecipeError(f"checkpoint_margin_s={margin_s} must exceed one checkpoint ({save_s} s) plus one step "
                          f"({step_s} s)")
    return (margin_s - save_s) // step_s


def openrlhf_sft_job(params: OpenrlhfSftParams, profile: ClusterProfile,
                     opts: JobOptions = JobOptions()) -> RecipeJob:
    """The seed's two-node DeepSpeed SFT; writes ``output_dir/model`` (HF format) at the end.

    A job cut by its walltime is continued by resubmitting the same script: it resumes from the
    newest DeepSpeed checkpoint under ``output_dir/ckpt`` (``--load_checkpoint``, passed only when
    DeepSpeed's ``latest`` file exists, since OpenRLHF raises on an empty checkpoint folder)."""
    nodes = positive("num_nodes", params.num_nodes)
    gpn = positive("gpus_per_node", params.gpus_per_node)
    micro = positive("micro_train_batch_size", params.micro_train_batch_size)
    batch = positive("train_batch_size", params.train_batch_size)
    if batch % (micro * nodes * gpn):
        raise RecipeError(f"train_batch_size={batch} must be a multiple of micro_train_batch_size x world size "
                          f"({micro} x {nodes * gpn})")
    paths = PathMap(profile)
    model = paths.bind(abs_path("pretrain", params.pretrain), "/model")
    data_host = abs_path("dataset", params.dataset)
    data = paths.bind(parent(data_host), "/data") + "/" + basename(data_host)
    out_host = abs_path("output_dir", params.output_dir)
    out = paths.bind(out_host, "/output")
    ckpt = f"{out}/ckpt/checkpoints_sft"
    save_steps = params.save_steps if params.save_steps is not None else openrlhf_save_steps(
        params.checkpoint_margin_s, params.step_s, params.save_s)
    flags: list[str] = [
        "--pretrain", q(model), "--dataset", q(data), "--save_path", q(f"{out}/model"),
        "--ckpt_path", q(ckpt),
        "--max_len", str(positive("max_len", params.max_len)),
        "--input_key", q(params.input_key), "--output_key", q(params.output_key)]
    if params.apply_chat_template:
        flags.append("--apply_chat_template")
    flags += ["--train_batch_size", str(batch), "--micro_train_batch_size", str(micro),
              "--max_epochs", str(positive("max_epochs", params.max_epochs)),
              "--max_samples", str(positive("max_samples", params.max_samples)),
              "--save_steps", str(int(save_steps)), "--logging_steps", str(int(params.logging_steps)),
              "--eval_steps", str(int(params.eval_steps)), "--zero_stage", str(int(params.zero_stage)),
              "--seed", str(int(params.seed))]
    if params.bf16:
        flags.append("--bf16")
    if params.flash_attn:
        flags.append("--flash_attn")
    flags += ["--learning_rate", q(params.learning_rate)]
    if params.packing_samples:
        flags.append("--packing_samples")
    flags += ["--use_tensorboard", q(f"{out}/runs")]
    if params.gradient_checkpointing:
        flags.append("--gradient_checkpointing")
    pairs = []
    i = 0
    while i < len(flags):  # one flag (with its value) per line, for a readable script
        if i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            pairs.append(f"{flags[i]} {flags[i + 1]}")
            i += 2
        else:
            pairs.append(flags[i])
            i += 1
    command = (
        f"mkdir -p {q(out + '/model')} {q(out + '/runs')} || exit 1\n"
        # DeepSpeed's save_checkpoint writes `latest` (the newest tag) after the shards.
        "SKILLFLOW_RESUME=()\n"
        f"if [ -f {q(ckpt + '/latest')} ]; then\n"
        f'  echo "skillflow: resuming from $(cat {q(ckpt + "/latest")})"; SKILLFLOW_RESUME=(--load_checkpoint)\n'
        "fi\n"
        'exec deepspeed --hostfile "$SKILLFLOW_HOSTFILE" --no_ssh --node_rank "$NODE_RANK" '
        '--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --module openrlhf.cli.train_sft \\\n    '
        + " \\\n    ".join(pairs) + ' \\\n    "${SKILLFLOW_RESUME[@]}"\n'
    )
    spec = make_spec(opts, name=f"openrlhf-sft-{slug(basename(out_host))}", command=command,
                     image=profile.image(params.image_key), nodes=nodes, ntasks_per_node=1, gpus_per_node=gpn,
                     mem="0", exclusive=True, master_port=params.master_port, mounts=paths.mounts)
    return RecipeJob(spec=spec, outputs=(f"{out_host}/model/config.json",
                                         f"{out_host}/model/model.safetensors.index.json"), dirs=(out_host,),
                     inputs=(abs_path("pretrain", params.pretrain), data_host))


# Sampling requests are plain temperature + top-p, as vLLM's defaults make them. llama-cpp-python's
# server adds top-k 40, min-p 0.05 and a 1.1 repeat penalty unless told otherwise.
LLAMA_CPP_NEUTRAL_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}


@dataclass(frozen=True)
class NativeSamplingParams:
    """``skillflow apps sample`` against a server started in the job (docs/recipes/apps_sft.md §2.3, native).

    ``model`` is a cluster path (a GGUF file for llama.cpp, an HF folder for vLLM) or, for vLLM
    only, a hub name. Prompts come from ``prompts`` (``test_prompts.jsonl`` of ``apps prepare``)
    or are built from the APPS rows in ``problems``; exactly one is given. The seed's settings are
    the defaults; ``concurrency`` is the number of requests in flight.
    """

    model: str
    out: str
    prompts: str | None = None
    problems: str | None = None
    server: NativeServer = NativeServer(served_model_name="apps-model", ctx_size=16384)
    n_sample: int = 10
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 2048
    seed: int = 42
    concurrency: int = 64
    limit: int | None = None
    image_key: str = "openrlhf"


def native_apps_sampling_job(params: NativeSamplingParams, profile: ClusterProfile,
                             opts: JobOptions = JobOptions()) -> RecipeJob:
    """Sampling as one Slurm job: vLLM's OpenAI server on the GPUs of a GPU cluster (image
    ``image_key``, TP = ``server.num_gpus``), llama-cpp-python's server on the CPU of the local
    profile. Writes ``out`` and ``out.done``; a resubmission keeps every finished problem."""
    kind = params.server.resolved_kind(profile)
    if kind == "external":
        raise RecipeError("server.kind 'external' is not supported for APPS sampling; the job starts its server")
    if (params.prompts is None) == (params.problems is None):
        raise RecipeError("give exactly one of prompts (test_prompts.jsonl) or problems (APPS rows)")
    paths = PathMap(profile)
    if kind == "vllm" and not params.model.startswith("/"):
        if "\n" in params.model or not params.model.strip():
            raise RecipeError(f"model={params.model!r} is neither a cluster path nor a hub name")
        model = params.model  # a hub name; vLLM resolves it
    else:
        model = paths.bind(abs_path("model", params.model), "/model")
    src_param, src_value = ("prompts", params.prompts) if params.prompts is not None else ("problems", params.problems)
    src_host = abs_path(src_param, src_value)
    src = paths.bind(parent(src_host), "/prompts") + "/" + basename(src_host)
    out_host = abs_path("out", params.out)
    out = paths.bind(parent(out_host), "/output") + "/" + basename(out_host)
    extra = LLAMA_CPP_NEUTRAL_SAMPLING if kind == "llama_cpp" else {}
    # (flag, value) pairs; values are quoted, except the server URL, a variable of the step itself.
    flags = [(f"--{src_param}", q(src)), ("--out", q(out)), ("--server-url", '"$SKILLFLOW_SERVER_URL"'),
             ("--model", q(params.server.served_model_name)),
             ("--n-sample", str(positive("n_sample", params.n_sample))), ("--temperature", q(params.temperature)),
             ("--top-p", q(params.top_p)), ("--max-tokens", str(positive("max_tokens", params.max_tokens))),
             ("--seed", str(int(params.seed))), ("--concurrency", str(positive("concurrency", params.concurrency)))]
    if params.limit is not None:
        flags.append(("--limit", str(positive("limit", params.limit))))
    if extra:
        flags.append(("--extra-body", q(json.dumps(extra, sort_keys=True))))
    rendered = [f"{flag} {value}" for flag, value in flags]
    work = '"$SKILLFLOW_CLI" apps sample \\\n    ' + " \\\n    ".join(rendered)
    # The server and its wait as every native step starts them; sampling runs no code, so no sandbox.
    command = native_step(params.server, profile, model, [work], (parent(out),), sandbox=False)
    gpus = positive("server.num_gpus", params.server.num_gpus) if kind == "vllm" else 0
    spec = make_spec(opts, name=f"apps-sample-{slug(basename(parent(out_host)))}", command=command,
                     image=native_image(profile, kind, params.image_key),
                     gpus_per_node=gpus,
                     mounts=paths.mounts)
    inputs = ([abs_path("model", params.model)] if params.model.startswith("/") else []) + [src_host]
    return RecipeJob(spec=spec, outputs=(out_host, f"{out_host}.done"), dirs=(parent(out_host),), inputs=tuple(inputs))


@dataclass(frozen=True)
class AppsEvalParams:
    """``skillflow apps eval`` as a CPU job (docs/recipes/apps_sft.md §2.4): ``samples`` against the APPS rows in
    ``problems``; ``out_dir`` receives ``results.jsonl`` (one line per sample, resumable) and
    ``summary.json`` (pass@k per difficulty). ``cpus`` = sandbox workers (the seed: 32 cores)."""

    samples: str
    problems: str
    out_dir: str
    cpus: int | None = None
    timeout_s: float = 4.0
    budget_s: float = 11.0
    memory_mb: int = 4096
    image_key: str = "sandbox"


def apps_eval_job(params: AppsEvalParams, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    paths = PathMap(profile)
    samples_host = abs_path("samples", params.samples)
    samples = paths.bind(parent(samples_host), "/samples") + "/" + basename(samples_host)
    problems_host = abs_path("problems", params.problems)
    problems = paths.bind(parent(problems_host), "/problems") + "/" + basename(problems_host)
    out_host = abs_path("out_dir", params.out_dir)
    out = paths.bind(out_host, "/output")
    for name in ("timeout_s", "budget_s"):
        if not getattr(params, name) > 0:
            raise RecipeError(f"{name}={getattr(params, name)!r} must be positive")
    lines = [f"--samples {q(samples)}", f"--problems {q(problems)}", f"--out {q(out)}"]
    if params.cpus is not None:
        lines.append(f"--workers {positive('cpus', params.cpus)}")
    lines += [f"--timeout {q(params.timeout_s)}", f"--budget {q(params.budget_s)}",
              f"--memory-mb {positive('memory_mb', params.memory_mb)}"]
    command = '"$SKILLFLOW_CLI" apps eval \\\n    ' + " \\\n    ".join(lines) + "\n"
    spec = make_spec(opts, name=f"apps-eval-{slug(basename(parent(samples_host)))}", command=command,
                     image=profile.image(params.image_key), cpus_per_task=params.cpus, mounts=paths.mounts)
    return RecipeJob(spec=spec, outputs=(f"{out_host}/summary.json", f"{out_host}/results.jsonl"), dirs=(out_host,),
                     inputs=(samples_host, problems_host))
