"""Steps of the SFT chain that are not NeMo's: the CPU stand-ins of the `local` profile, the
OpenMathInstruct-1 download and the checkpoint upload (docs/recipes/openmath.md §3.2, §10).

On a profile of CPU stand-ins (``slurm.accelerator: cpu``, ``paths.train_python`` set) the chain is:
GGUF -> HF (stands in for HF -> NeMo), :mod:`tasks.sft.local_train` (for NeMo-Aligner SFT),
averaging of the kept checkpoints (for ``prepare_eval``), HF -> GGUF for llama.cpp (for NeMo -> HF
-> TensorRT-LLM). Each is a Slurm job like its GPU counterpart, with the same outputs contract,
run in the profile's ``trainer`` image when it has a container runtime.
"""
from __future__ import annotations

from dataclasses import dataclass

from tasks.profiles import ClusterProfile
from tasks.steps.base import (JobOptions, RecipeError, RecipeJob, abs_path, basename, make_spec, parent,
                              positive, q, same_path_mounts, slug, slurm_time_seconds)

# OpenMathInstruct-1 on the Hugging Face hub: the filtered correct solutions the paper trains on.
OMI1_REPO = "nvidia/OpenMathInstruct-1"
OMI1_FILES = ("correct_solutions/train.jsonl", "correct_solutions/validation.jsonl")


def trains_on_cpu(profile: ClusterProfile) -> bool:
    """Whether training on ``profile`` runs the CPU stand-ins of this module: its GPUs are emulated
    (``slurm.accelerator: cpu``) and it names the training environment's python
    (``paths.train_python``: the host's venv, or the ``trainer`` image's)."""
    return profile.train_python is not None and profile.cpu_stand_ins


def _trainer(profile: ClusterProfile, *folders: str) -> dict:
    """Where a CPU stand-in step runs: the ``trainer`` image with ``folders`` visible at their own
    paths (the commands name host paths), or the node itself without a container runtime."""
    return dict(image=profile.image("trainer"), mounts=same_path_mounts(profile, *folders))


def save_margin(time: str | None, upstream_s: int) -> int:
    """NeMo-Skills' save margins (15 min, signal 10 min before walltime), scaled down for short
    walltimes so a one-minute local job still gets a few seconds to save."""
    if not time:
        return upstream_s
    walltime = slurm_time_seconds(time)
    return min(upstream_s, max(walltime // 4, 5))


def _train_python(profile: ClusterProfile) -> str:
    if not profile.train_python:
        raise RecipeError(f"profile {profile.name!r} has no paths.train_python: CPU training needs the training "
                          "environment (torch + transformers); GPU profiles use the NeMo image instead")
    return profile.train_python


def gguf_to_hf_job(gguf_path: str, out_dir: str, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    """Dequantize a llama-architecture GGUF into an HF folder (the base model of CPU training)."""
    src = abs_path("gguf_path", gguf_path)
    out = abs_path("out_dir", out_dir)
    command = f"{q(_train_python(profile))} -m tasks.sft.cli gguf-to-hf {q(src)} {q(out)}\n"
    spec = make_spec(opts, name=f"gguf-to-hf-{slug(basename(out))}", command=command,
                     **_trainer(profile, parent(src), parent(out)))
    return RecipeJob(spec=spec, outputs=(f"{out}/config.json",), dirs=(parent(out),), inputs=(src,))


@dataclass(frozen=True)
class LocalSftParams:
    """:mod:`tasks.sft.local_train` with the settings of ``sft_config_codegen`` that fit a CPU.

    ``output_dir`` is the experiment folder (``checkpoints/``, ``tensorboard/``, ``status.json``);
    rerunning the same job resumes from its newest complete checkpoint.
    """

    hf_model: str
    train_data: str
    validation_data: str | None
    output_dir: str
    lr: str
    # Without a validation file, the last ``holdout`` examples of the training file validate.
    holdout: int = 0
    epochs: int = 1
    max_steps: int = 0
    global_batch_size: int = 128
    micro_batch_size: int = 1
    max_seq_length: int = 4096
    val_check_interval: int = 4000
    save_top_k: int = 8
    # The trainer saves and stops this long before walltime (NeMo's max_time_per_run margin); its
    # clock starts with the process, so the margin covers the step in flight and the save.
    checkpoint_margin_s: int = 900
    # Seconds before walltime for a Slurm signal; 0 (the default) sends none: continuation relies
    # on the time limit alone, as it must for NeMo-Aligner, which handles no signal.
    signal_lead_s: int = 0
    threads: int = 0
    # OpenRLHF's chat format (apps): message lists under these keys, rendered with the chat template.
    input_key: str = "input"
    output_key: str = "output"
    apply_chat_template: bool = False
    # Data-parallel over this many nodes, one process each (torch.distributed over gloo); the global
    # batch stays ``global_batch_size`` on any number of nodes.
    nodes: int = 1
    master_port: int = 29500


def local_sft_job(params: LocalSftParams, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    out = abs_path("output_dir", params.output_dir)
    args = ["--model", abs_path("hf_model", params.hf_model), "--train-data", abs_path("train_data", params.train_data),
            "--out", out,
            "--lr", params.lr, "--epochs", positive("epochs", params.epochs),
            "--max-steps", positive("max_steps", params.max_steps, 0),
            "--global-batch-size", positive("global_batch_size", params.global_batch_size),
            "--micro-batch-size", positive("micro_batch_size", params.micro_batch_size),
            "--max-seq-length", positive("max_seq_length", params.max_seq_length),
            "--val-check-interval", positive("val_check_interval", params.val_check_interval),
            "--save-top-k", positive("save_top_k", params.save_top_k)]
    try:
        float(params.lr)
    except ValueError:
        raise RecipeError(f"lr={params.lr!r} is not a number") from None
    if params.validation_data:
        args += ["--validation-data", abs_path("validation_data", params.validation_data)]
    elif params.holdout > 0:
        args += ["--holdout", params.holdout]
    else:
        raise RecipeError("validation_data or holdout is required (the validation metric picks the checkpoints)")
    if params.threads:
        args += ["--threads", positive("threads", params.threads)]
    for flag, value, default in (("--input-key", params.input_key, "input"),
                                 ("--output-key", params.output_key, "output")):
        if value != default:
            args += [flag, value]
    if params.apply_chat_template:
        args.append("--apply-chat-template")
    time = opts.time or profile.default_time or profile.max_time
    signal = None
    deadline = ""
    if time:
        walltime = slurm_time_seconds(time)
        if walltime > params.checkpoint_margin_s > 0:
            # From the job's own start (imports and model loading included): the trainer stops at
            # the end of the last step that fits before it, then saves inside the margin.
            deadline = f' --deadline-epoch "$(( $(date +%s) + {walltime - params.checkpoint_margin_s} ))"'
        if 0 < params.signal_lead_s < walltime:
            signal = f"TERM@{int(params.signal_lead_s)}"
    nodes = positive("nodes", params.nodes)
    if params.global_batch_size % (params.micro_batch_size * nodes):
        raise RecipeError(f"global_batch_size={params.global_batch_size} must be a multiple of micro_batch_size x "
                          f"nodes ({params.micro_batch_size} x {nodes})")
    command = (f"exec {q(_train_python(profile))} {_launcher(nodes)}-m tasks.sft.local_train "
               + " ".join(q(a) for a in args) + deadline + "\n")
    inputs = [abs_path("hf_model", params.hf_model), abs_path("train_data", params.train_data)]
    if params.validation_data:
        inputs.append(abs_path("validation_data", params.validation_data))
    spec = make_spec(opts, name=f"sft-{slug(basename(out))}", command=command, signal=signal, nodes=nodes,
                     ntasks_per_node=1, master_port=params.master_port,
                     **_trainer(profile, out, *(parent(i) for i in inputs)))
    return RecipeJob(spec=spec, outputs=(f"{out}/status.json", f"{out}/checkpoints"), dirs=(out,),
                     inputs=tuple(inputs))


def _launcher(nodes: int) -> str:
    """torchrun's arguments for a run over ``nodes`` nodes (empty for one: a plain process).

    Launched as the GPU job launches DeepSpeed: one launcher per node (one Slurm task each), told
    the node count, its own node rank and the first node's address and port, all of which the
    job script exports from the allocation (tasks/slurm/render.py). The flags are defined in
    torch/distributed/run.py (torch 2.13); torchrun has no hostfile flag, so the count comes from
    ``$NNODES``. DeepSpeed's launcher is not in the CPU training environment.
    """
    if nodes == 1:
        return ""
    return ('-m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node 1 '
            '--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" ')


def local_average_job(experiment_dir: str, out_dir: str, profile: ClusterProfile,
                      opts: JobOptions = JobOptions()) -> RecipeJob:
    """Average the checkpoints the run kept by its validation metric (``checkpoints/topk.json``)."""
    exp = abs_path("experiment_dir", experiment_dir)
    out = abs_path("out_dir", out_dir)
    command = f"{q(_train_python(profile))} -m tasks.sft.average_topk {q(exp + '/checkpoints')} {q(out)}\n"
    spec = make_spec(opts, name=f"average-{slug(basename(out))}", command=command,
                     **_trainer(profile, exp, parent(out)))
    return RecipeJob(spec=spec, outputs=(f"{out}/config.json",), dirs=(parent(out),), inputs=(f"{exp}/checkpoints",))


def hf_to_gguf_job(hf_dir: str, template_gguf: str, out_file: str, profile: ClusterProfile,
                   opts: JobOptions = JobOptions()) -> RecipeJob:
    """Write the trained weights as a GGUF for llama.cpp, metadata and tokenizer from the base GGUF."""
    src = abs_path("hf_dir", hf_dir)
    out = abs_path("out_file", out_file)
    if not out.endswith(".gguf"):
        raise RecipeError(f"out_file={out_file!r} must end in .gguf")
    command = (f"{q(_train_python(profile))} -m tasks.sft.cli hf-to-gguf {q(src)} "
               f"{q(abs_path('template_gguf', template_gguf))} {q(out)}\n")
    spec = make_spec(opts, name=f"hf-to-gguf-{slug(basename(out))}", command=command,
                     **_trainer(profile, src, parent(template_gguf), parent(out)))
    return RecipeJob(spec=spec, outputs=(out,), dirs=(parent(out),),
                     inputs=(src, abs_path("template_gguf", template_gguf)))


def checkpoint_upload_job(folder: str, dest: str, result_file: str, profile: ClusterProfile,
                          opts: JobOptions = JobOptions()) -> RecipeJob:
    """``skillflow checkpoint upload`` from the cluster: multipart, manifest last, re-read to verify.

    Runs in the image that has the skillflow CLI, with only the profile's ``storage.cluster_env``
    (credential file names, never keys) in its environment.
    """
    src = abs_path("folder", folder)
    if not dest.startswith("s3://"):
        raise RecipeError(f"dest={dest!r} must be an s3:// URI")
    result = abs_path("result_file", result_file)
    command = f'"$SKILLFLOW_CLI" checkpoint upload {q(src)} {q(dest)} --result {q(result)}\n'
    spec = make_spec(opts, name=f"upload-{slug(basename(src))}", command=command, image=profile.image("nemo_skills"),
                     env=dict(profile.storage_env), mounts=same_path_mounts(profile, src, parent(result)))
    return RecipeJob(spec=spec, outputs=(result,), dirs=(parent(result),), inputs=(src,))


def omi1_download_job(out_dir: str, revision: str, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    """OpenMathInstruct-1 ``correct_solutions`` train and validation from the hub at a pinned revision.

    The hub checks each LFS file against its SHA-256 while downloading; the job then writes the
    SHA-256 of what it got to ``checksums.sha256`` (``sha256sum -c`` format) and, when that file
    already exists from an earlier download, checks against it, so a re-download that changed
    underneath fails instead of silently training on other data.
    """
    out = abs_path("out_dir", out_dir)
    if not revision or any(c in revision for c in " \n\0"):
        raise RecipeError(f"revision={revision!r} must be a hub branch, tag or commit")
    files = " ".join(q(f) for f in OMI1_FILES)
    command = (
        f"cd {q(out)} || exit 1\n"
        f'"$SKILLFLOW_PYTHON" -c \'import sys; from huggingface_hub import hf_hub_download as d; '
        f'[d(sys.argv[1], f, repo_type="dataset", revision=sys.argv[2], local_dir=".") for f in sys.argv[3:]]\' '
        f"{q(OMI1_REPO)} {q(revision)} {files} || exit 1\n"
        f"if [ -f checksums.sha256 ]; then sha256sum -c checksums.sha256 || exit 1; "
        f"else sha256sum {files} > checksums.sha256.tmp && mv checksums.sha256.tmp checksums.sha256; fi\n"
    )
    spec = make_spec(opts, name="download-openmathinstruct-1", command=command, image=profile.image("nemo_skills"),
                     mounts=same_path_mounts(profile, out))
    return RecipeJob(spec=spec, outputs=tuple(f"{out}/{f}" for f in OMI1_FILES) + (f"{out}/checksums.sha256",),
                     dirs=(out,))
