"""Planning an OpenMath evaluation run: params in, Slurm job specs and output paths out.

Plain Python so that the DAG stays a thin wiring file and the plan can be unit-tested. A run
is: data preparation, optionally a TensorRT-LLM engine build, one greedy job per benchmark
(resumable: ``skip_filled``; a rerun skips benchmarks whose ``.done`` marker exists), sampling
jobs in seed chunks (likewise), and a summary job that writes ``results.json`` and the
predictions zip. Every job, with what it reads and writes, is also listed under ``planned`` for
:mod:`tasks.plan`.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from tasks.forms import BENCHMARKS, EVAL, PlanError
from tasks.plan import servers, spec_dict
from tasks.profiles import ClusterProfile
from tasks.steps.base import JobOptions, RecipeError, same_path_mounts
from tasks.openmath.steps import (EvalParams, TrtllmBuildParams, eval_greedy_job, eval_sampling_chunk_job,
                                    trtllm_build_job)

_BENCH_ITEM = re.compile(r"^(?P<name>[a-z0-9-]+):(?P<k>\d{1,4})$")


def parse_benchmarks(items: list[str]) -> dict[str, int]:
    """``["gsm8k:50", "math:0"]`` → ``{"gsm8k": 50, "math": 0}``; names and counts are checked."""
    out: dict[str, int] = {}
    for item in items:
        m = _BENCH_ITEM.match(str(item).strip())
        if not m:
            raise PlanError(f"param 'benchmarks': {item!r} is not NAME:SAMPLES (e.g. gsm8k:50)")
        name, k = m["name"], int(m["k"])
        if name not in BENCHMARKS:
            raise PlanError(f"param 'benchmarks': unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
        if name in out:
            raise PlanError(f"param 'benchmarks': {name} is listed twice")
        out[name] = k
    if not out:
        raise PlanError("param 'benchmarks' is empty")
    return out


def seed_chunks(samples: int, chunk_size: int, start: int = 0) -> list[list[int]]:
    if chunk_size < 1:
        raise PlanError("param 'seed_chunk_size' must be at least 1")
    seeds = list(range(start, start + samples))
    return [seeds[i:i + chunk_size] for i in range(0, len(seeds), chunk_size)]


@dataclass
class EvalRequest:
    """The planning part of the ``openmath_eval`` form (:data:`tasks.forms.EVAL`, which holds the
    defaults) after Airflow's schema validation."""

    model: str = EVAL.dataclass_default("model")
    engine: str = EVAL.dataclass_default("engine")
    server: str = EVAL.dataclass_default("server")
    num_gpus: int = EVAL.dataclass_default("num_gpus")
    benchmarks: list[str] = EVAL.dataclass_default("benchmarks")
    seed_chunk_size: int = EVAL.dataclass_default("seed_chunk_size")
    # None: the seed's choice, 16 for models of 34B parameters or more and 64 below.
    batch_size: int | None = EVAL.dataclass_default("batch_size")
    max_code_executions: int = EVAL.dataclass_default("max_code_executions")
    stop_on_code_error: bool = EVAL.dataclass_default("stop_on_code_error")
    split: str = EVAL.dataclass_default("split")
    limit: int | None = EVAL.dataclass_default("limit")
    data: str = EVAL.dataclass_default("data")
    code_dir: str | None = EVAL.dataclass_default("code_dir")
    time_limit: str | None = EVAL.dataclass_default("time_limit")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "EvalRequest":
        """The request from a run's params; a key the form does not declare is a :class:`PlanError`."""
        return EVAL.request(cls, params)


_SIZE = re.compile(r"(?:(\d+)x)?(\d+(?:\.\d+)?)b(?![a-z])", re.IGNORECASE)
BIG_MODEL_B = 34
BIG_MODEL_BATCH, DEFAULT_BATCH = 16, 64


def model_size_b(name: str) -> float | None:
    """Parameters in billions from a model's name (``CodeLlama-34b``, ``Mixtral-8x7B``), or None."""
    sizes = [float(m[2]) * (int(m[1]) if m[1] else 1) for m in _SIZE.finditer(name.rsplit("/", 1)[-1])]
    return max(sizes) if sizes else None


def default_batch_size(model: str) -> int:
    """The seed evaluated 34B+ models with batch size 16 (docs/recipes/openmath.md §4.1) and the rest with 64."""
    size = model_size_b(model)
    return BIG_MODEL_BATCH if size is not None and size >= BIG_MODEL_B else DEFAULT_BATCH


def build_plan(req: EvalRequest, profile: ClusterProfile, out_dir: str) -> dict[str, Any]:
    """Every job of the run as plain data (JSON-serialisable for XCom)."""
    benches = parse_benchmarks(req.benchmarks)
    if req.engine not in ("nemo_skills", "native"):
        raise PlanError(f"param 'engine': {req.engine!r} must be nemo_skills or native")
    if req.engine == "nemo_skills" and not req.code_dir:
        raise PlanError("param 'code_dir' (the NeMo-Skills checkout on the cluster) is required for the "
                        "nemo_skills engine")
    model_source = profile.model_path(req.model)
    model = staged_model_path(model_source, profile)
    nemo_server, native_server = servers(req.engine, req.server, req.num_gpus)
    engine_job = None
    if req.engine == "nemo_skills" and nemo_server.server_type == "tensorrt_llm":
        # The form names an HF checkpoint; evaluation reads the engine built from it (TP = GPUs).
        engine_dir = f"{out_dir}/trtllm-engine-tp{req.num_gpus}"
        try:
            engine_job = trtllm_build_job(TrtllmBuildParams(hf_model_path=model, engine_dir=engine_dir,
                                                            code_dir=req.code_dir, tp_size=req.num_gpus), profile)
        except RecipeError as exc:
            raise PlanError(str(exc)) from None
        hf_model, model = model, engine_dir
    data_dir = f"{out_dir}/data"
    opts = JobOptions(time=req.time_limit) if req.time_limit else JobOptions()
    batch_size = req.batch_size if req.batch_size is not None else default_batch_size(model_source)
    base = dict(model_path=model, output_dir=out_dir, engine=req.engine, code_dir=req.code_dir, data_dir=data_dir,
                split_name=req.split, max_code_executions=req.max_code_executions,
                stop_on_code_error=req.stop_on_code_error, batch_size=batch_size, nemo_server=nemo_server,
                native_server=native_server, limit=req.limit)
    try:
        # One greedy job per benchmark: a 34B+ model at batch 16 may not finish all eight in one
        # walltime, and a rerun resumes each file where it stopped (skip_filled) or skips it (.done).
        greedy = []
        for name in benches:
            job = eval_greedy_job(EvalParams(benchmarks=(name,), skip_filled=True, **base), profile, opts)
            greedy.append({"benchmark": name, "job": spec_dict(job.spec), "outputs": list(job.outputs),
                           "dirs": list(job.dirs), "inputs": list(job.inputs)})
        chunks = []
        by_k: dict[int, list[str]] = {}
        for name, k in benches.items():
            if k > 0:
                by_k.setdefault(k, []).append(name)
        for k, names in sorted(by_k.items()):
            for seeds in seed_chunks(k, req.seed_chunk_size):
                job = eval_sampling_chunk_job(seeds, EvalParams(benchmarks=tuple(names), skip_filled=True, **base),
                                              profile, opts)
                chunks.append({"seeds": seeds, "benchmarks": names, "job": spec_dict(job.spec),
                               "outputs": list(job.outputs), "dirs": list(job.dirs), "inputs": list(job.inputs)})
    except RecipeError as exc:
        raise PlanError(str(exc)) from None
    prepare = prepare_data_job(req, profile, benches, data_dir)
    summarize = summarize_job(profile, out_dir, list(benches))
    planned = [{"task_id": "prepare_data", "job": spec_dict(prepare),
                "inputs": [req.data] if req.data.startswith("/") else [],
                "outputs": [f"{data_dir}/{b}/{req.split}.jsonl" for b in benches], "dirs": []}]
    if engine_job:
        planned.append({"task_id": "build_engine", "job": spec_dict(engine_job.spec), "inputs": list(engine_job.inputs),
                        "outputs": list(engine_job.outputs), "dirs": list(engine_job.dirs)})
    planned += [{"task_id": "greedy", "key": g["benchmark"], **{k: g[k] for k in ("job", "inputs", "outputs", "dirs")}}
                for g in greedy]
    planned += [{"task_id": "sampling", "key": f"rs{c['seeds'][0]}-{c['seeds'][-1]}",
                 **{k: c[k] for k in ("job", "inputs", "outputs", "dirs")}} for c in chunks]
    planned.append({"task_id": "summarize", "job": spec_dict(summarize),
                    "inputs": [o for g in greedy for o in g["outputs"]] + [o for c in chunks for o in c["outputs"]],
                    "outputs": [f"{out_dir}/results.json", f"{out_dir}/summary.txt", f"{out_dir}/predictions.zip"],
                    "dirs": []})
    declared = {"model": model_source if not model_source.startswith("s3://") else (hf_model if engine_job else model)}
    if req.engine == "nemo_skills":
        declared["code_dir"] = req.code_dir
    if req.data.startswith("/"):
        declared["data"] = req.data
    return {
        "planned": planned,
        "declared_inputs": declared,
        "batch_size": batch_size,
        "output_dir": out_dir,
        "data_dir": data_dir,
        "model": model,
        "checked_model": hf_model if engine_job else model,
        "model_source": model_source,
        "engine_build": spec_dict(engine_job.spec) if engine_job else None,
        "benchmarks": benches,
        "prepare": spec_dict(prepare),
        "greedy": greedy,
        "chunks": chunks,
        "summarize": spec_dict(summarize),
    }


MODEL_FILE_SUFFIXES = (".gguf", ".bin", ".safetensors", ".nemo", ".pt")


def staged_model_path(source: str, profile: ClusterProfile) -> str:
    """Where a model given as an S3 URI lives on the cluster once staged; other paths unchanged.

    A URI ending in a model file suffix is one object (kept under its own name); anything else is
    a prefix whose objects keep their relative layout (an HF checkpoint folder).
    """
    if not source.startswith("s3://"):
        return source
    import hashlib

    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = f"{profile.workdir.rstrip('/')}/models/{digest}"
    name = source.rstrip("/").rsplit("/", 1)[-1]
    return f"{folder}/{name}" if name.endswith(MODEL_FILE_SUFFIXES) else folder


def prepare_data_job(req: EvalRequest, profile: ClusterProfile, benches: dict[str, int], data_dir: str):
    """Benchmarks into ``data_dir/<name>/<split>.jsonl`` on the cluster, as one CPU job; both
    engines read them from there (upstream through ``++data_file``).

    ``data``: ``samples`` copies the credited 20-problem samples shipped with skillflow (offline
    smoke runs), ``download`` fetches the upstream files, and a cluster folder laid out like the
    upstream repositories (a mirror) is read with ``--source``.
    """
    from tasks.slurm.spec import JobSpec

    names = list(benches)
    q = shlex.quote
    if req.data == "samples":
        if req.split != "test":
            raise PlanError("param 'data': the shipped samples hold the test split only")
        cmd = f'"$SKILLFLOW_CLI" data samples --out {q(data_dir)} ' + " ".join(q(n) for n in names)
    else:
        source = "" if req.data == "download" else f" --source {q(req.data)}"
        if req.data not in ("download",) and not req.data.startswith("/"):
            raise PlanError(f"param 'data': {req.data!r} must be 'samples', 'download' or an absolute folder "
                            "on the cluster")
        cmd = " && ".join(f'"$SKILLFLOW_CLI" data prepare {q(n)} --split {q(req.split)} --out {q(data_dir)}{source}'
                          for n in names)
    # On a profile with containers the CLI exists only inside the images (nemo_skills carries it).
    return JobSpec(name="openmath-data", command=cmd, time=req.time_limit or "01:00:00",
                   image=profile.image("nemo_skills"),
                   mounts=same_path_mounts(profile, profile.workdir, req.data if req.data.startswith("/") else None),
                   ).validate()


def summarize_job(profile: ClusterProfile, out_dir: str, benchmarks: list[str]):
    """results.json and the printed table (``skillflow summarize``), then every output file zipped."""
    from tasks.slurm.spec import JobSpec

    q = shlex.quote
    cmd = (f'"$SKILLFLOW_CLI" summarize {q(out_dir)} --benchmarks ' + " ".join(q(b) for b in benchmarks)
           + f" | tee {q(out_dir + '/summary.txt')} && "
           f'cd {q(out_dir)} && "$SKILLFLOW_PYTHON" -m zipfile -c predictions.zip.tmp '
           + " ".join(q(b) for b in benchmarks) + " && mv -f predictions.zip.tmp predictions.zip")
    return JobSpec(name="openmath-summary", command=cmd, time="01:00:00", image=profile.image("nemo_skills"),
                   mounts=same_path_mounts(profile, profile.workdir)).validate()


def done_markers(chunk: dict[str, Any]) -> list[str]:
    """The ``.done`` files ``skillflow generate`` writes beside each finished output."""
    return [f"{path}.done" for path in chunk["outputs"]]
