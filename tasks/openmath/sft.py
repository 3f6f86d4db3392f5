"""Planning an OpenMath SFT run: the form in, every Slurm job and path of the chain out.

The chain (docs/recipes/openmath.md §10, §13 step 7): [download OpenMathInstruct-1 + SFT data prep] ->
HF -> NeMo -> NeMo-Aligner SFT (continuation jobs until done) -> averaging of the saved
checkpoints -> NeMo -> HF -> upload to S3 with a manifest -> registry. On a profile without GPU
images the same chain runs the CPU stand-ins of :mod:`tasks.sft.steps` with SmolLM2.

Hyper-parameters come from the paper's per-model table (:data:`SFT_TABLE`); every value the form
leaves empty is the table's, every value it fills overrides it, and ``custom`` takes all of them
from the form.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from tasks.forms import SFT, SFT_BASE_MODELS, PlanError
from tasks.plan import spec_dict
from tasks.openmath.steps import (SFT_TABLE, AverageCheckpointsParams, HfToNemoParams, NemoSftParams,
                                  NemoToHfParams, SftRow, average_checkpoints_job, hf_to_nemo_job,
                                  nemo_sft_job, nemo_to_hf_job)
from tasks.profiles import ClusterProfile
from tasks.sft.steps import (LocalSftParams, checkpoint_upload_job, gguf_to_hf_job, hf_to_gguf_job,
                             local_average_job, local_sft_job, omi1_download_job, save_margin, trains_on_cpu)
from tasks.steps.base import JobOptions, RecipeError, RecipeJob, make_spec, slurm_time_seconds

# SmolLM2-135M on a CPU: not in the paper; small batches and sequences so a step takes seconds.
LOCAL_MODEL = "smollm2"
LOCAL_ROW = SftRow(epochs=1, lr="1e-5", gpus=0, tp=1, pp=1, hf_model_name="HuggingFaceTB/SmolLM2-135M-Instruct")
LOCAL_DEFAULTS = {"global_batch_size": 2, "micro_batch_size": 2, "max_seq_length": 256, "val_check_interval": 4,
                  "save_top_k": 2, "holdout": 8}
GPU_DEFAULTS = {"global_batch_size": 128, "micro_batch_size": 1, "max_seq_length": 4096, "val_check_interval": 4000,
                "save_top_k": 8, "holdout": 0}
BASE_MODELS = SFT_BASE_MODELS  # the rows of SFT_TABLE, LOCAL_MODEL and custom (a unit test holds them equal)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class SftRequest:
    """The planning part of the ``openmath_sft`` form (:data:`tasks.forms.SFT`, which holds the
    defaults) after Airflow's schema validation (``None`` = from the table)."""

    base_model: str = SFT.dataclass_default("base_model")
    model_path: str | None = SFT.dataclass_default("model_path")
    hf_model_name: str | None = SFT.dataclass_default("hf_model_name")
    data: str = SFT.dataclass_default("data")
    epochs: int | None = SFT.dataclass_default("epochs")
    lr: str | None = SFT.dataclass_default("lr")
    num_nodes: int | None = SFT.dataclass_default("num_nodes")
    gpus_per_node: int | None = SFT.dataclass_default("gpus_per_node")
    tp: int | None = SFT.dataclass_default("tp")
    pp: int | None = SFT.dataclass_default("pp")
    global_batch_size: int | None = SFT.dataclass_default("global_batch_size")
    micro_batch_size: int | None = SFT.dataclass_default("micro_batch_size")
    max_seq_length: int | None = SFT.dataclass_default("max_seq_length")
    val_check_interval: int | None = SFT.dataclass_default("val_check_interval")
    save_top_k: int | None = SFT.dataclass_default("save_top_k")
    max_steps: int | None = SFT.dataclass_default("max_steps")
    time_limit: str | None = SFT.dataclass_default("time_limit")
    max_sft_jobs: int = SFT.dataclass_default("max_sft_jobs")
    code_dir: str | None = SFT.dataclass_default("code_dir")
    omi1_revision: str = SFT.dataclass_default("omi1_revision")
    num_output_samples: int = SFT.dataclass_default("num_output_samples")
    registered_model: str | None = SFT.dataclass_default("registered_model")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "SftRequest":
        """The request from a run's params (an empty value keeps the default); a key the form does
        not declare is a :class:`PlanError`."""
        return SFT.request(cls, params, drop_none=True)


def resolve_row(req: SftRequest) -> SftRow:
    """The table row with the form's overrides applied; ``custom`` must give every value."""
    if req.base_model not in BASE_MODELS:
        raise PlanError(f"param 'base_model': {req.base_model!r} is not one of {', '.join(BASE_MODELS)}")
    if req.base_model == "custom":
        missing = [k for k in ("model_path", "hf_model_name", "epochs", "lr", "num_nodes", "gpus_per_node", "tp", "pp")
                   if getattr(req, k) in (None, "")]
        if missing:
            raise PlanError("base_model 'custom' needs explicit values for param(s) " + ", ".join(missing))
        base = SftRow(epochs=0, lr="0", gpus=0, tp=1, pp=1, hf_model_name="")
    else:
        base = LOCAL_ROW if req.base_model == LOCAL_MODEL else SFT_TABLE[req.base_model]
    lr = req.lr if req.lr is not None else base.lr
    try:
        if float(lr) <= 0:
            raise ValueError
    except ValueError:
        raise PlanError(f"param 'lr': {lr!r} must be a positive number (e.g. 1e-6)") from None
    gpn = req.gpus_per_node or 8
    gpus = (req.num_nodes * gpn) if req.num_nodes else base.gpus
    return SftRow(epochs=req.epochs or base.epochs, lr=str(lr), gpus=gpus, tp=req.tp or base.tp, pp=req.pp or base.pp,
                  hf_model_name=req.hf_model_name or base.hf_model_name)


def _setting(req: SftRequest, key: str, local: bool) -> int:
    value = getattr(req, key, None)
    return value if value is not None else (LOCAL_DEFAULTS if local else GPU_DEFAULTS)[key]


def build_plan(req: SftRequest, profile: ClusterProfile, exp_dir: str, data_path: str | None,
               s3_prefix: str) -> dict[str, Any]:
    """Every job and path of the run as plain data (JSON-serialisable for XCom).

    ``data_path`` is the prepared SFT jsonl on the cluster (from the Asset, a staged S3 object or
    the form), or ``None`` to download OpenMathInstruct-1 and prepare it here.
    """
    row = resolve_row(req)
    local = trains_on_cpu(profile)
    if local and req.base_model not in (LOCAL_MODEL, "custom"):
        raise PlanError(f"param 'base_model': {req.base_model} needs a GPU cluster with the NeMo image; profile "
                        f"{profile.name!r} trains on CPUs ({LOCAL_MODEL} or a custom GGUF)")
    if not local and req.base_model == LOCAL_MODEL:
        raise PlanError(f"param 'base_model': {LOCAL_MODEL} is the CPU stand-in of the local profile")
    if not local and not req.code_dir:
        raise PlanError("param 'code_dir' (the NeMo-Skills checkout on the cluster) is required on GPU profiles")
    model_ref = req.model_path or (LOCAL_MODEL if req.base_model == LOCAL_MODEL else None)
    if not model_ref:
        raise PlanError(f"param 'model_path': the HF checkpoint of {req.base_model} on the cluster is required")
    base_model = profile.model_path(model_ref)
    if not base_model.startswith("/"):
        raise PlanError(f"param 'model_path': {base_model!r} must be an absolute cluster path")
    if local and not base_model.endswith(".gguf"):
        raise PlanError(f"param 'model_path': {base_model!r} must be a GGUF file on profile {profile.name!r}")
    train_time = req.time_limit or profile.max_time or profile.default_time
    if req.time_limit:
        slurm_time_seconds(req.time_limit)
    if req.max_sft_jobs < 1:
        raise PlanError("param 'max_sft_jobs' must be at least 1")
    gbs, mbs = _setting(req, "global_batch_size", local), _setting(req, "micro_batch_size", local)
    if gbs % mbs:
        raise PlanError(f"param 'global_batch_size' ({gbs}) must be a multiple of 'micro_batch_size' ({mbs})")

    exp = exp_dir.rstrip("/")
    paths = {"exp": exp, "data_dir": f"{exp}/data", "training": f"{exp}/training", "final": f"{exp}/final",
             "upload_result": f"{exp}/upload.json", "s3_dest": f"{s3_prefix.rstrip('/')}/final",
             "validation": f"{exp}/data/gsm8k/validation-sft.jsonl"}
    jobs: dict[str, Any] = {}
    train_data = data_path
    try:
        raw = f"{paths['data_dir']}/omi1"
        if data_path is None:
            jobs["download"] = _job(omi1_download_job(raw, req.omi1_revision, profile))
            train_data = f"{paths['data_dir']}/sft-data.jsonl"
        if data_path is None or not local:
            # The GPU trainer validates on gsm8k's validation split in SFT form (the file upstream's
            # datasets/gsm8k/prepare.py writes); nothing else writes it, so this job does.
            jobs["prepare"] = _job(_prepare_job(
                req, profile, f"{raw}/correct_solutions/train.jsonl" if data_path is None else None,
                train_data if data_path is None else None, None if local else paths["data_dir"]))
        opts = JobOptions(time=train_time)
        if local:
            hf_base = f"{exp}/base-hf"
            jobs["convert"] = _job(gguf_to_hf_job(base_model, hf_base, profile))
            train = local_sft_job(LocalSftParams(
                hf_model=hf_base, train_data=train_data, validation_data=None,
                holdout=_setting(req, "holdout", local), output_dir=paths["training"],
                lr=row.lr, epochs=row.epochs, max_steps=req.max_steps or 0, global_batch_size=gbs,
                micro_batch_size=mbs, max_seq_length=_setting(req, "max_seq_length", local),
                val_check_interval=_setting(req, "val_check_interval", local),
                save_top_k=_setting(req, "save_top_k", local),
                # The same rule as the GPU path: a time limit that saves before walltime, no signal.
                checkpoint_margin_s=save_margin(train_time, 900)), profile, opts)
            averaged = f"{paths['final']}/hf"
            jobs["average"] = _job(local_average_job(paths["training"], averaged, profile))
            eval_model = f"{paths['final']}/model-f16.gguf"
            jobs["export"] = _job(hf_to_gguf_job(averaged, base_model, eval_model, profile))
            progress = {"kind": "local", "status": f"{paths['training']}/status.json"}
            tensorboard = f"{paths['training']}/tensorboard"
        else:
            nemo_base = f"{exp}/base.nemo"
            jobs["convert"] = _job(hf_to_nemo_job(HfToNemoParams(
                hf_model_path=base_model, out_nemo=nemo_base, hf_model_name=row.hf_model_name, code_dir=req.code_dir),
                profile))
            gpn = req.gpus_per_node or profile.gpus_per_node or 8
            nodes = req.num_nodes or max(1, row.gpus // gpn)
            overrides = [f"++model.data.train_ds.max_seq_length={_setting(req, 'max_seq_length', local)}",
                         f"++exp_manager.checkpoint_callback_params.save_top_k={_setting(req, 'save_top_k', local)}"]
            if req.max_steps:
                overrides.append(f"++trainer.sft.max_steps={int(req.max_steps)}")
            train = nemo_sft_job(NemoSftParams(
                model=req.base_model, row=row, nemo_model=nemo_base[: -len(".nemo")], output_dir=paths["training"],
                sft_data=train_data, validation_file=paths["validation"], code_dir=req.code_dir,
                expname=_expname(exp), gpus_per_node=gpn, num_nodes=nodes,
                val_check_interval=_setting(req, "val_check_interval", local), global_batch_size=gbs,
                micro_batch_size=mbs, extra_overrides=tuple(overrides)), profile, opts)
            averaged = f"{paths['final']}/model.nemo"
            jobs["average"] = _job(average_checkpoints_job(AverageCheckpointsParams(
                checkpoint_dir=f"{paths['training']}/checkpoints", nemo_model=nemo_base[: -len(".nemo")],
                out_nemo=averaged, code_dir=req.code_dir), profile))
            eval_model = f"{paths['final']}/hf"
            jobs["export"] = _job(nemo_to_hf_job(NemoToHfParams(
                nemo_path=averaged, out_dir=eval_model, hf_model_name=row.hf_model_name, code_dir=req.code_dir,
                hf_base=base_model), profile))
            progress = {"kind": "nemo", "checkpoints": f"{paths['training']}/checkpoints"}
            tensorboard = paths["training"]
        jobs["train"] = _job(train)
        jobs["upload"] = _job(checkpoint_upload_job(paths["final"], paths["s3_dest"], paths["upload_result"], profile))
    except RecipeError as exc:
        raise PlanError(str(exc)) from None
    progress.update({"train_data": train_data, "epochs": row.epochs, "global_batch_size": gbs,
                     "max_steps": req.max_steps or 0, "holdout": _setting(req, "holdout", local)})
    name = req.registered_model or f"openmath-sft-{req.base_model.lower()}"
    if not _NAME.match(name):
        raise PlanError(f"param 'registered_model': {name!r} must be letters, digits and . _ - (at most 100)")
    order = [("download", "download_data"), ("prepare", "prepare_sft_data"), ("convert", "convert"),
             ("train", "train"), ("average", "average_checkpoints"), ("export", "export"),
             ("upload", "upload_checkpoint")]
    planned = [{"task_id": task_id, **jobs[key]} for key, task_id in order if key in jobs]
    declared = {"model_path": base_model}
    if req.code_dir and not local:
        declared["code_dir"] = req.code_dir
    if data_path is not None:
        declared["data"] = data_path
    return {"planned": planned, "declared_inputs": declared,
            "local": local, "row": asdict(row), "base_model_path": base_model, "train_data": train_data,
            "paths": paths, "jobs": jobs, "progress": progress, "tensorboard": tensorboard, "eval_model": eval_model,
            "max_sft_jobs": req.max_sft_jobs, "registered_model": name,
            "hyperparameters": {"epochs": row.epochs, "lr": row.lr, "gpus": row.gpus, "tp": row.tp, "pp": row.pp,
                                "global_batch_size": gbs, "micro_batch_size": mbs,
                                "max_seq_length": _setting(req, "max_seq_length", local),
                                "val_check_interval": _setting(req, "val_check_interval", local),
                                "save_top_k": _setting(req, "save_top_k", local),
                                "max_steps": req.max_steps or 0, "train_time_limit": train_time}}


def planned_data_path(data: str, data_dir: str) -> str | None:
    """Where the form's ``data`` will be on the cluster once the DAG staged it (None: downloaded
    and prepared by the run itself). ``operators.openmath.sft.resolve_data`` stages to these paths;
    an ``asset`` not yet resolved is planned as a staged ``sft-data.jsonl``."""
    if data == "download":
        return None
    if data.startswith("/"):
        return data
    if data.startswith("s3://"):
        return f"{data_dir}/{data.rstrip('/').rsplit('/', 1)[-1]}"
    if data == "asset":
        return f"{data_dir}/sft-data.jsonl"
    raise PlanError(f"param 'data': {data!r} must be 'asset', 'download', an s3:// URI or an absolute cluster path")


def _expname(exp: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", exp.rstrip("/").rsplit("/", 1)[-1]).strip("-.")[:100] or "sft"


def _job(job) -> dict[str, Any]:
    return {"job": spec_dict(job.spec), "outputs": list(job.outputs), "dirs": list(job.dirs),
            "inputs": list(job.inputs)}


def _prepare_job(req: SftRequest, profile: ClusterProfile, solutions: str | None, output: str | None,
                 validation_dir: str | None) -> RecipeJob:
    """The seed's ``prepare_sft_data`` over the downloaded correct solutions (fair downsampling),
    and/or gsm8k's validation split as ``<validation_dir>/gsm8k/validation-sft.jsonl``."""
    from tasks.openmath.datagen import sft_prepare_command
    from tasks.steps.base import q, same_path_mounts

    cmds, inputs, outputs = [], [], []
    if solutions and output:
        cmds.append(sft_prepare_command(solutions, output, req.num_output_samples))
        inputs.append(solutions)
        outputs.append(output)
    if validation_dir:
        cmds.append(f'"$SKILLFLOW_CLI" data prepare gsm8k --split validation --out {q(validation_dir)}')
        outputs.append(f"{validation_dir}/gsm8k/validation-sft.jsonl")
    return RecipeJob(spec=make_spec(JobOptions(), name="openmath-sft-data", command=" && \\\n".join(cmds) + "\n",
                                    image=profile.image("nemo_skills"),
                                    mounts=same_path_mounts(profile, profile.workdir)),
                     outputs=tuple(outputs), inputs=tuple(inputs))
