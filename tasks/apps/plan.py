"""Planning an ``apps_sft`` run: the form in, Slurm job specs and output paths out; and the report's
pure parts (metric names, the comparison table).

A run is: data preparation (CPU), optionally the seed's OpenRLHF SFT (2 nodes x 4 GPUs), sampling
of the base model and, when trained, of the SFT checkpoint, then ``apps eval`` of each (CPU). Plain
Python, no Airflow: the DAG only wires these jobs, and everything here is unit-tested.

On a profile that trains on CPUs (the `local` one: ``paths.train_python``, no containers) the SFT
step is the nearest real CPU equivalent: GGUF -> HF of the base model, a few optimizer steps of
:mod:`tasks.sft.local_train` over OpenRLHF's chat format (:data:`LOCAL_SFT`), the final weights
as an HF folder (uploaded like OpenRLHF's ``--save_path``) and as a GGUF for llama.cpp.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Mapping

from tasks.forms import APPS_SAMPLE_DATA, APPS_SFT, PlanError
from tasks.plan import planned_entry, spec_dict
from tasks.apps.steps import (AppsEvalParams, NativeSamplingParams, OpenrlhfSftParams, apps_eval_job,
                              native_apps_sampling_job, openrlhf_sft_job)
from tasks.profiles import ClusterProfile
from tasks.sft.steps import (LocalSftParams, checkpoint_upload_job, gguf_to_hf_job, hf_to_gguf_job,
                             local_average_job, local_sft_job, save_margin, trains_on_cpu)
from tasks.steps.base import JobOptions, RecipeError, RecipeJob, make_spec, same_path_mounts
from tasks.steps.engines import NativeServer
from tasks.tables import table

SEED_MODEL = "deepseek-ai/deepseek-coder-6.7b-instruct"
LOCAL_MODEL = "smollm2"
SAMPLE_DATA = APPS_SAMPLE_DATA
SAMPLE_NAME = "mapcoder10"  # tasks/apps/samples/<name>/test.jsonl
KS = (1, 5, 10)
DIFFICULTY_HEADER = ("Difficulty",) + tuple(f"pass@{k}" for k in KS)
SIDES = ("base", "sft")
SIDE_TITLES = {"base": "Base model", "sft": "SFT model"}
# The seed's tables list the groups in this order; other groups (if any) follow.
GROUP_ORDER = ("total", "introductory", "interview", "competition")
# The local CPU stand-in for OpenRLHF SFT (SmolLM2-135M, 2 cores): a plumbing check of about a
# minute, not a result. The seed's LR and chat format; 512 tokens instead of 2048 (OpenRLHF's rule
# drops rows whose prompt does not fit, which at 512 leaves 12 of the 33 fixture problems); one
# epoch of 2-example steps over the 10 rows left after holding out 2 for the validation loss.
# Validated (and saved) once, at the end, like OpenRLHF's once-per-epoch evaluation: the one
# checkpoint kept is the final model, which the export step writes out.
LOCAL_SFT = {"lr": "2e-5", "epochs": 1, "max_steps": 5, "global_batch_size": 2, "micro_batch_size": 1,
             "max_seq_length": 512, "holdout": 2, "val_check_interval": 5, "save_top_k": 1}


@dataclass
class AppsSftRequest:
    """The planning part of the ``apps_sft`` form (:data:`tasks.forms.APPS_SFT`, which holds the
    defaults) after Airflow's schema validation."""

    model: str | None = APPS_SFT.dataclass_default("model")
    data: str = APPS_SFT.dataclass_default("data")
    train: bool = APPS_SFT.dataclass_default("train")
    num_nodes: int = APPS_SFT.dataclass_default("num_nodes")
    gpus_per_node: int = APPS_SFT.dataclass_default("gpus_per_node")
    sampling_gpus: int = APPS_SFT.dataclass_default("sampling_gpus")
    n_samples: int = APPS_SFT.dataclass_default("n_samples")
    limit: int | None = APPS_SFT.dataclass_default("limit")
    max_tokens: int = APPS_SFT.dataclass_default("max_tokens")
    concurrency: int = APPS_SFT.dataclass_default("concurrency")
    eval_cpus: int | None = APPS_SFT.dataclass_default("eval_cpus")
    time_limit: str | None = APPS_SFT.dataclass_default("time_limit")
    # Training jobs in the chain (each resumes from the last checkpoint of the one before).
    max_train_jobs: int = APPS_SFT.dataclass_default("max_train_jobs")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "AppsSftRequest":
        """The request from a run's params; a key the form does not declare is a :class:`PlanError`."""
        return APPS_SFT.request(cls, params)


def runs_openrlhf(profile: ClusterProfile) -> bool:
    """OpenRLHF runs from its container image on GPU nodes; a profile of CPU stand-ins (the local
    one, whose GPUs are emulated) trains with the CPU stand-in, if it can."""
    return not profile.cpu_stand_ins


def resolve_model(req: AppsSftRequest, profile: ClusterProfile) -> tuple[str, str]:
    """(what the form said, or the default for the profile; the path or hub name it stands for)."""
    ref = req.model or (SEED_MODEL if runs_openrlhf(profile) else LOCAL_MODEL)
    return ref, profile.model_path(ref)


def _in_sequence(name: str, *jobs: RecipeJob) -> RecipeJob:
    """Steps of one image as one Slurm job, each after the previous one succeeded."""
    images = {job.spec.image for job in jobs}
    if len(images) != 1:
        raise ValueError(f"{name}: steps in sequence must share an image, not {sorted(map(str, images))}")
    command = " && \\\n".join(job.spec.command.rstrip("\n") for job in jobs) + "\n"
    made: set[str] = set()
    inputs: list[str] = []
    for job in jobs:  # what an earlier step of the sequence writes is not an input of the whole
        inputs += [i for i in job.inputs if i not in inputs
                   and not any(m == i or m.startswith(i.rstrip("/") + "/") for m in made)]
        made.update(job.outputs)
    mounts = tuple(dict.fromkeys(m for job in jobs for m in job.spec.mounts))
    return RecipeJob(spec=make_spec(JobOptions(), name=name, command=command, image=images.pop(), mounts=mounts),
                     outputs=tuple(o for job in jobs for o in job.outputs),
                     dirs=tuple(dict.fromkeys(d for job in jobs for d in job.dirs)), inputs=tuple(inputs))


def local_train_params(hf_model: str, train_data: str, train_dir: str, walltime: str | None,
                       nodes: int) -> LocalSftParams:
    """The stand-in's training run (:data:`LOCAL_SFT` on OpenRLHF's chat format) over ``nodes`` nodes."""
    hp = LOCAL_SFT
    return LocalSftParams(
        hf_model=hf_model, train_data=train_data, validation_data=None, holdout=hp["holdout"], output_dir=train_dir,
        lr=hp["lr"], epochs=hp["epochs"], max_steps=hp["max_steps"], global_batch_size=hp["global_batch_size"],
        micro_batch_size=hp["micro_batch_size"], max_seq_length=hp["max_seq_length"],
        val_check_interval=hp["val_check_interval"], save_top_k=hp["save_top_k"],
        checkpoint_margin_s=save_margin(walltime, 900),
        input_key="question", output_key="response", apply_chat_template=True, nodes=nodes)


def local_sft_jobs(model_gguf: str, train_data: str, out_dir: str, profile: ClusterProfile,
                   time_limit: str | None, nodes: int = 1) -> dict[str, Any]:
    """The CPU stand-in for OpenRLHF SFT: ``convert`` (GGUF -> HF), ``train`` (OpenRLHF's chat
    format, :data:`LOCAL_SFT`), ``export`` (the final weights as the HF folder ``train/model``,
    which is uploaded, and as a GGUF for llama.cpp), with the paths the DAG needs."""
    hf_base = f"{out_dir}/base-hf"
    train_dir = f"{out_dir}/train"
    walltime = time_limit or profile.max_time or profile.default_time
    hp = LOCAL_SFT
    train = local_sft_job(local_train_params(hf_base, train_data, train_dir, walltime, nodes), profile,
                          JobOptions(time=walltime))
    gguf = hf_to_gguf_job(f"{train_dir}/model", model_gguf, f"{train_dir}/model-f16.gguf", profile)
    export = _in_sequence("apps-sft-export", local_average_job(train_dir, f"{train_dir}/model", profile), gguf)
    return {"convert": gguf_to_hf_job(model_gguf, hf_base, profile), "train": train, "export": export,
            "model": gguf.outputs[0], "progress": {"kind": "local", "status": train.outputs[0]},
            "tensorboard": f"{train_dir}/tensorboard",
            "hyperparameters": {**hp, "train_time_limit": walltime, "train_nodes": nodes}}


def build_plan(req: AppsSftRequest, profile: ClusterProfile, out_dir: str, s3_prefix: str | None = None) -> dict[str, Any]:
    """Every job of the run as plain data (JSON-serialisable for XCom); raises :class:`PlanError`.

    ``s3_prefix`` (``s3://bucket/...``): where the trained model is uploaded; None plans no upload.
    """
    local = not runs_openrlhf(profile)
    cpu_sft = req.train and local
    if cpu_sft and not trains_on_cpu(profile):
        raise PlanError(f"param 'train': profile '{profile.name}' has no GPUs with OpenRLHF (slurm.accelerator "
                        "is cpu) and no CPU training environment (paths.train_python), so it cannot run the SFT "
                        "job; set train to false to sample and evaluate the base model only, or choose a GPU "
                        "cluster profile")
    ref, model = resolve_model(req, profile)
    if local and not model.startswith("/"):
        raise PlanError(f"param 'model': {ref!r} is not a file on the cluster; the local profile serves GGUF files "
                        f"with llama.cpp: use {LOCAL_MODEL!r} or an absolute .gguf path")
    if cpu_sft and not model.endswith(".gguf"):
        raise PlanError(f"param 'model': CPU training on profile '{profile.name}' starts from a GGUF file "
                        f"(converted to HF); {model!r} is not one")
    if req.train and not model.startswith("/"):
        raise PlanError(f"param 'model': training reads the model folder on the cluster (OpenRLHF --pretrain); "
                        f"{ref!r} is not an absolute path: download it to the cluster and give that folder")
    for name in ("n_samples", "max_tokens", "concurrency", "num_nodes", "gpus_per_node", "sampling_gpus"):
        value = getattr(req, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PlanError(f"param '{name}' must be a positive integer, got {value!r}")
    if req.limit is not None and req.limit < 1:
        raise PlanError(f"param 'limit' must be at least 1 (or empty for all problems), got {req.limit!r}")

    q = shlex.quote
    data_dir = f"{out_dir}/data"
    time_opts = JobOptions(time=req.time_limit) if req.time_limit else JobOptions()
    if req.data == SAMPLE_DATA:
        if req.train and not cpu_sft:
            raise PlanError(f"param 'train': the {SAMPLE_DATA} training problems (tasks/apps/samples/{SAMPLE_NAME}/"
                            "train.jsonl) are sized for the local CPU stand-in, not for OpenRLHF's global batch of "
                            "256; set param 'data' to a cluster folder holding codeparrot/apps train.jsonl and "
                            "test.jsonl")
        problems = f"{data_dir}/test.jsonl"
        prep_cmd = f'"$SKILLFLOW_CLI" apps samples {SAMPLE_NAME} --out {q(problems)}'
        prep_outputs = [problems]
        source = {"problems": problems}
        if req.train:
            # The sample's training problems in codeparrot/apps layout, prepared as any APPS train file.
            raw = f"{data_dir}/apps/train.jsonl"
            prep_cmd += (f' \\\n    && "$SKILLFLOW_CLI" apps samples {SAMPLE_NAME} --split train --out {q(raw)}'
                         f' \\\n    && "$SKILLFLOW_CLI" apps prepare --source {q(raw)} --split train --out {q(data_dir)}')
            prep_outputs.append(f"{data_dir}/train_sft.jsonl")
    elif req.data.startswith("/") and "\n" not in req.data:
        folder = req.data.rstrip("/") or "/"
        problems = f"{folder}/test.jsonl"
        split = "" if req.train else " --split test"
        prep_cmd = f'"$SKILLFLOW_CLI" apps prepare --source {q(folder)} --out {q(data_dir)}{split}'
        prep_outputs = [f"{data_dir}/test_prompts.jsonl"] + ([f"{data_dir}/train_sft.jsonl"] if req.train else [])
        source = {"prompts": f"{data_dir}/test_prompts.jsonl"}
    else:
        raise PlanError(f"param 'data': {req.data!r} must be {SAMPLE_DATA!r} or an absolute folder on the cluster "
                        "holding codeparrot/apps train.jsonl and test.jsonl")
    from tasks.slurm.spec import JobSpec

    # On a profile with containers the CLI exists only inside the images; the sandbox image carries it.
    prepare = JobSpec(name="apps-prepare", command=prep_cmd, time=req.time_limit or "01:00:00",
                      image=profile.image("sandbox"),
                      mounts=same_path_mounts(profile, profile.workdir,
                                              req.data if req.data.startswith("/") else None)).validate()

    kind = "llama_cpp" if local else "vllm"
    server = NativeServer(kind=kind, served_model_name="apps-model",
                          num_gpus=1 if local else req.sampling_gpus,
                          # the seed model's context (deepseek-coder: 16k); SmolLM2's is 8k
                          ctx_size=8192 if local else 16384)
    eval_cpus = req.eval_cpus if req.eval_cpus is not None else (None if local else 32)
    try:
        train_job = upload_job = convert_job = export_job = None
        dirs = [data_dir]
        models = {"base": model}
        progress: dict[str, Any] | None = None
        tensorboard = hyperparameters = None
        if cpu_sft:
            # The stand-in trains data-parallel over num_nodes nodes as OpenRLHF would (one process per
            # node: a CPU has no GPUs to count), with the same global batch on any number of nodes.
            cpu = local_sft_jobs(model, f"{data_dir}/train_sft.jsonl", out_dir, profile, req.time_limit,
                                 nodes=req.num_nodes)
            convert_job, train_job, export_job = cpu["convert"], cpu["train"], cpu["export"]
            progress, tensorboard, hyperparameters = cpu["progress"], cpu["tensorboard"], cpu["hyperparameters"]
            models["sft"] = cpu["model"]
            dirs += [*convert_job.dirs, *train_job.dirs, *export_job.dirs]
        elif req.train:
            train_job = openrlhf_sft_job(OpenrlhfSftParams(
                pretrain=model, dataset=f"{data_dir}/train_sft.jsonl", output_dir=f"{out_dir}/train",
                num_nodes=req.num_nodes, gpus_per_node=req.gpus_per_node),
                profile, JobOptions(time=req.time_limit or profile.max_time))
            models["sft"] = f"{out_dir}/train/model"
            dirs += train_job.dirs
            # OpenRLHF writes the HF model only at the end: that file is what "done" means.
            progress = {"kind": "files", "files": list(train_job.outputs)}
            tensorboard = f"{out_dir}/train/runs"
        if req.train and s3_prefix:
            # The final HF model to S3 from the cluster, manifest last, re-read to verify.
            upload_job = checkpoint_upload_job(f"{out_dir}/train/model", f"{s3_prefix.rstrip('/')}/sft-model",
                                               f"{out_dir}/train/upload.json", profile)
        sides: dict[str, Any] = {}
        for side, side_model in models.items():
            side_dir = f"{out_dir}/{side}"
            sample = native_apps_sampling_job(NativeSamplingParams(
                model=side_model, out=f"{side_dir}/samples.jsonl", server=server, n_sample=req.n_samples,
                max_tokens=req.max_tokens, concurrency=req.concurrency, limit=req.limit, **source),
                profile, time_opts)
            evaluation = apps_eval_job(AppsEvalParams(
                samples=f"{side_dir}/samples.jsonl", problems=problems, out_dir=f"{side_dir}/eval", cpus=eval_cpus),
                profile, time_opts)
            dirs += [*sample.dirs, *evaluation.dirs]
            sides[side] = {"model": side_model, "dir": side_dir,
                           "sample_job": spec_dict(sample.spec), "sample_outputs": list(sample.outputs),
                           "eval_job": spec_dict(evaluation.spec), "eval_outputs": list(evaluation.outputs),
                           "samples": f"{side_dir}/samples.jsonl", "eval_dir": f"{side_dir}/eval",
                           "_sample": sample, "_sample_inputs": list(sample.inputs),
                           "_eval": evaluation, "_eval_inputs": list(evaluation.inputs)}
    except RecipeError as exc:
        raise PlanError(str(exc)) from None
    prep_inputs = [f"{req.data.rstrip('/')}/test.jsonl"] + ([f"{req.data.rstrip('/')}/train.jsonl"] if req.train else []) \
        if req.data != SAMPLE_DATA else []
    planned = [planned_entry("prepare", prepare, prep_inputs, prep_outputs)]
    for task_id, job in (("convert_base", convert_job), ("train", train_job), ("export_sft", export_job)):
        if job is not None:
            planned.append(planned_entry(task_id, job.spec, list(job.inputs), list(job.outputs)))
    if upload_job is not None:
        planned.append(planned_entry("upload_sft", upload_job.spec, list(upload_job.inputs), list(upload_job.outputs)))
    for side, info in sides.items():
        planned.append(planned_entry(f"sample_{side}", info.pop("_sample").spec, info.pop("_sample_inputs"),
                                info["sample_outputs"]))
        planned.append(planned_entry(f"eval_{side}", info.pop("_eval").spec, info.pop("_eval_inputs"),
                                info["eval_outputs"]))
    declared = {"model": model} if model.startswith("/") else {}
    if req.data != SAMPLE_DATA:
        declared["data"] = req.data.rstrip("/")
    return {
        "planned": planned,
        "declared_inputs": declared,
        "output_dir": out_dir,
        "data_dir": data_dir,
        "model_ref": ref,
        "model": model,
        "server": kind,
        "problems": problems,
        "prepare": spec_dict(prepare),
        "prepare_outputs": prep_outputs,
        "convert": spec_dict(convert_job.spec) if convert_job else None,
        "train": spec_dict(train_job.spec) if train_job else None,
        "train_outputs": list(train_job.outputs) if train_job else [],
        "train_progress": progress,
        "train_max_jobs": req.max_train_jobs if train_job is not None and not cpu_sft else 1,
        "train_tensorboard": tensorboard,
        # Only the CPU stand-in has these: the seed's flags are in the OpenRLHF job itself.
        "train_hyperparameters": hyperparameters,
        "export": spec_dict(export_job.spec) if export_job else None,
        "upload": spec_dict(upload_job.spec) if upload_job else None,
        "upload_result": f"{out_dir}/train/upload.json" if upload_job else None,
        "sides": sides,
        "n_samples": req.n_samples,
        # Created before any submission: container runtimes refuse to mount a missing folder.
        "dirs": list(dict.fromkeys(dirs)),
    }


# ------------------------------------------------------------------------------------- reporting

def metric_names(pass_at_k: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``summary.json``'s ``pass_at_k`` as MLflow metrics: ``total.pass_at_1``,
    ``introductory.pass_at_5``... (MLflow forbids '@'), plus each group's problem, sample and
    correct counts. A pass@k that is unavailable (some problem has fewer than k samples) is left
    out rather than logged as a number."""
    metrics: dict[str, float] = {}
    for group, entry in pass_at_k.items():
        for key in ("problems", "samples", "correct"):
            if key in entry:
                metrics[f"{group}.{key}"] = float(entry[key])
        for k in KS:
            value = entry.get(f"pass@{k}")
            if value is not None:
                metrics[f"{group}.pass_at_{k}"] = float(value)
    return metrics


def _groups(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen = [g for s in summaries.values() for g in s]
    return [g for g in GROUP_ORDER if g in seen] + [g for g in dict.fromkeys(seen) if g not in GROUP_ORDER]


def seed_table(pass_at_k: Mapping[str, Mapping[str, Any]], groups: list[str] | None = None) -> str:
    """One model's pass@k by difficulty as the seed document prints it (full-precision floats)."""
    rows = []
    for group in groups or _groups({"x": pass_at_k}):
        entry = pass_at_k.get(group)
        if entry is None:
            rows.append([group] + ["-"] * len(KS))
            continue
        cells = []
        for k in KS:
            value = entry.get(f"pass@{k}")
            cells.append(repr(float(value)) if value is not None else f"n/a (n<{k})")
        rows.append([group] + cells)
    return table(DIFFICULTY_HEADER, rows)


def comparison_table(sides: Mapping[str, Mapping[str, Any]], trained: bool) -> str:
    """The markdown comparison artifact: a seed-format table per model, then SFT minus base.

    ``sides`` maps ``base``/``sft`` to ``{"model", "pass_at_k", "problems", "samples"}``.
    """
    summaries = {s: sides[s]["pass_at_k"] for s in SIDES if s in sides}
    groups = _groups(summaries)
    out = ["# APPS pass@k: base vs SFT", ""]
    if not trained:
        out += ["Note: this run did not train (`train` = false), so there is no SFT model; the table shows the "
                "base model only.", ""]
    for side in SIDES:
        if side not in sides:
            continue
        info = sides[side]
        out += [f"## {SIDE_TITLES[side]}: `{info['model']}`", "",
                f"{info.get('problems', '?')} problems, {info.get('samples', '?')} samples.", "",
                seed_table(info["pass_at_k"], groups), ""]
    if "base" in summaries and "sft" in summaries:
        rows = []
        for group in groups:
            cells = []
            for k in KS:
                a = (summaries["base"].get(group) or {}).get(f"pass@{k}")
                b = (summaries["sft"].get(group) or {}).get(f"pass@{k}")
                cells.append(f"{b - a:+.4f}" if a is not None and b is not None else "n/a")
            rows.append([group] + cells)
        out += ["## SFT minus base", "", table(DIFFICULTY_HEADER, rows), ""]
    return "\n".join(out)
