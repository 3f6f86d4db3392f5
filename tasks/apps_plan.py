"""Planning an ``apps_sft`` run: the form in, Slurm job specs and output paths out; and the report's
pure parts (metric names, the comparison table).

A run is: data preparation (CPU), optionally the seed's OpenRLHF SFT (2 nodes x 4 GPUs), sampling
of the base model and, when trained, of the SFT checkpoint, then ``apps eval`` of each (CPU). Plain
Python, no Airflow: the DAG only wires these jobs, and everything here is unit-tested.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from tasks.profiles import ClusterProfile
from tasks.recipes.apps import (AppsEvalParams, NativeSamplingParams, OpenrlhfSftParams, apps_eval_job,
                                native_apps_sampling_job, openrlhf_sft_job)
from tasks.recipes.common import JobOptions, RecipeError
from tasks.recipes.engines import NativeServer
from tasks.recipes.sft import checkpoint_upload_job

SEED_MODEL = "deepseek-ai/deepseek-coder-6.7b-instruct"
LOCAL_MODEL = "smollm2"
SAMPLE_DATA = "mapcoder-sample"
SAMPLE_NAME = "mapcoder10"  # tasks/apps/samples/<name>/test.jsonl
KS = (1, 5, 10)
SIDES = ("base", "sft")
SIDE_TITLES = {"base": "Base model", "sft": "SFT model"}
# The seed's tables list the groups in this order; other groups (if any) follow.
GROUP_ORDER = ("total", "introductory", "interview", "competition")


class PlanError(ValueError):
    """A param combination that cannot run; the message names the param."""


@dataclass
class AppsSftRequest:
    """The ``apps_sft`` form after Airflow's schema validation."""

    model: str | None = None
    data: str = SAMPLE_DATA
    train: bool = False
    num_nodes: int = 2
    gpus_per_node: int = 4
    sampling_gpus: int = 4
    n_samples: int = 10
    limit: int | None = None
    max_tokens: int = 2048
    concurrency: int = 64
    eval_cpus: int | None = None
    time_limit: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "AppsSftRequest":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in params.items() if k in known})


def output_dir(profile: ClusterProfile, dag_id: str, run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    return f"{profile.workdir.rstrip('/')}/{dag_id}/{safe}"


def spec_dict(spec) -> dict[str, Any]:
    """A JobSpec as the JSON-able dict ``SlurmJobOperator`` takes; empty optional fields left out."""
    data = asdict(spec)
    return {k: v for k, v in data.items() if v not in (None, (), [], {}) or k in ("command", "name")}


def can_train(profile: ClusterProfile) -> bool:
    """OpenRLHF runs from its container image on GPU nodes; a profile without a container runtime
    (the local one: CPU only, no OpenRLHF installed) cannot train."""
    return profile.runtime != "none"


def resolve_model(req: AppsSftRequest, profile: ClusterProfile) -> tuple[str, str]:
    """(what the form said, or the default for the profile; the path or hub name it stands for)."""
    ref = req.model or (SEED_MODEL if can_train(profile) else LOCAL_MODEL)
    return ref, profile.model_path(ref)


def build_plan(req: AppsSftRequest, profile: ClusterProfile, out_dir: str, s3_prefix: str | None = None) -> dict[str, Any]:
    """Every job of the run as plain data (JSON-serialisable for XCom); raises :class:`PlanError`.

    ``s3_prefix`` (``s3://bucket/...``): where the trained model is uploaded; None plans no upload.
    """
    local = not can_train(profile)
    if req.train and local:
        raise PlanError(f"param 'train': profile '{profile.name}' has no GPUs with OpenRLHF (no container "
                        "runtime), so it cannot run the SFT job; set train to false to sample and evaluate the "
                        "base model only, or choose a GPU cluster profile")
    ref, model = resolve_model(req, profile)
    if local and not model.startswith("/"):
        raise PlanError(f"param 'model': {ref!r} is not a file on the cluster; the local profile serves GGUF files "
                        f"with llama.cpp: use {LOCAL_MODEL!r} or an absolute .gguf path")
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
        if req.train:
            raise PlanError(f"param 'train': the {SAMPLE_DATA} problems have no reference solutions to train on; "
                            "set param 'data' to a cluster folder holding codeparrot/apps train.jsonl and test.jsonl")
        problems = f"{data_dir}/test.jsonl"
        prep_cmd = f'"$SKILLFLOW_CLI" apps samples {SAMPLE_NAME} --out {q(problems)}'
        prep_outputs = [problems]
        source = {"problems": problems}
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

    prepare = JobSpec(name="apps-prepare", command=prep_cmd, time=req.time_limit or "01:00:00").validate()

    kind = "llama_cpp" if local else "vllm"
    server = NativeServer(kind=kind, served_model_name="apps-model",
                          num_gpus=1 if local else req.sampling_gpus,
                          # the seed model's context (deepseek-coder: 16k); SmolLM2's is 8k
                          ctx_size=8192 if local else 16384)
    eval_cpus = req.eval_cpus if req.eval_cpus is not None else (None if local else 32)
    try:
        train_job = upload_job = None
        dirs = [data_dir]
        models = {"base": model}
        if req.train:
            train_job = openrlhf_sft_job(OpenrlhfSftParams(
                pretrain=model, dataset=f"{data_dir}/train_sft.jsonl", output_dir=f"{out_dir}/train",
                num_nodes=req.num_nodes, gpus_per_node=req.gpus_per_node),
                profile, JobOptions(time=req.time_limit or profile.max_time))
            models["sft"] = f"{out_dir}/train/model"
            dirs += train_job.dirs
            if s3_prefix:
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
                           "samples": f"{side_dir}/samples.jsonl", "eval_dir": f"{side_dir}/eval"}
    except RecipeError as exc:
        raise PlanError(str(exc)) from None
    return {
        "output_dir": out_dir,
        "data_dir": data_dir,
        "model_ref": ref,
        "model": model,
        "server": kind,
        "problems": problems,
        "prepare": spec_dict(prepare),
        "prepare_outputs": prep_outputs,
        "train": spec_dict(train_job.spec) if train_job else None,
        "train_outputs": list(train_job.outputs) if train_job else [],
        "train_tensorboard": f"{out_dir}/train/runs" if train_job else None,
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
    rows = [["Difficulty"] + [f"pass@{k}" for k in KS]]
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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


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
            rows.append(f"| {group} | " + " | ".join(cells) + " |")
        out += ["## SFT minus base", "", "| Difficulty | " + " | ".join(f"pass@{k}" for k in KS) + " |",
                "| --- | " + " | ".join("---" for _ in KS) + " |", *rows, ""]
    return "\n".join(out)
