"""OpenMath / OpenMathInstruct-1 steps (NeMo-Skills main@9b7f9d57) as Slurm jobs.

Builders reproduce the seed document's commands (docs/recipes/openmath.md §3, §4, §8, §10) inside the
profile's pinned images, with the fixes of :data:`KNOWN_FIXES` applied. Generation steps
(evaluation, labeling) take ``engine="nemo_skills"`` (upstream scripts and servers) or
``engine="native"`` (``skillflow generate`` against vLLM or llama.cpp). Every builder returns a
:class:`RecipeJob`; host paths must be absolute.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from tasks.forms import BENCHMARKS, SAMPLING_BENCHMARKS  # noqa: F401 (SAMPLING_BENCHMARKS re-exported)
from tasks.profiles import ClusterProfile
from tasks.slurm.durations import nemo_duration
from tasks.steps.base import (JobOptions, PathMap, RecipeError, RecipeJob, abs_path, basename, ident, make_spec,
                                  parent, positive, q, slug, slurm_time_seconds, words)
from tasks.steps.engines import (NativeServer, NemoSkillsServer, check_engine, native_generate, native_image,
                                   native_sandbox, native_step, nemo_skills_image, nemo_skills_sandbox,
                                   nemo_skills_server, nemo_skills_step)


@dataclass(frozen=True)
class KnownFix:
    """A place where we deliberately render something other than the seed document."""

    key: str
    steps: tuple[str, ...]
    upstream: str
    fix: str
    ref: str


KNOWN_FIXES: tuple[KnownFix, ...] = (
    KnownFix("labeling-num-few-shots", ("labeling",),
             "the seed doc's labeling command does not set num_few_shots, which defaults to 0 on main, "
             "so the few-shot prompt would carry no examples",
             "labeling passes ++prompt.few_shot_examples.num_few_shots=5 (the paper's K, v0.1.1's default)",
             "docs/recipes/openmath.md §8.2, §12.6"),
    KnownFix("copy-all-tokenizer-files", ("trtllm_build",),
             "the seed doc copies only tokenizer.model into the engine folder",
             "every tokenizer file (tokenizer*, special_tokens_map.json, added_tokens.json) is copied, because "
             "the main server loads AutoTokenizer from the engine folder; the job fails if none was copied",
             "docs/recipes/openmath.md §3.1"),
    KnownFix("server-ready-wait", ("eval", "labeling"),
             "task 0 waits with `tail -n0 -f /tmp/server_logs.txt | sed '/ready/ q'`: a ready line written "
             "before tail starts is missed, and a server that dies first makes the job hang until walltime",
             "the log (one file per job id) is polled for the ready line with a time limit, and the job fails "
             "as soon as the server process is gone",
             "docs/recipes/openmath.md §1.4"),
    KnownFix("stop-servers-on-failure", ("eval", "labeling"),
             "the servers are stopped by `&& pkill ...` after the last command, so a failing command leaves "
             "every server running until walltime",
             "task 0 always stops the servers and exits with the status of its commands; the other tasks "
             "exit 0 once their server is stopped (outputs are still checked, docs/recipes/openmath.md §12.1)",
             "docs/recipes/openmath.md §1.4, §12.1"),
    KnownFix("no-secrets-in-script", ("eval", "labeling", "nemo_sft"),
             "HF_TOKEN and WANDB_API_KEY values are written into the generated sbatch script",
             "they are inherited from the job's environment and never rendered",
             "docs/recipes/openmath.md §1.1"),
    KnownFix("sampling-chunks-skip-greedy", ("eval_sampling",),
             "run_eval.py always prepends the greedy commands, so a sampling chunk re-runs greedy decoding "
             "(a no-op with skip_filled, but it appends to output-greedy.jsonl if the greedy job is still running)",
             "a sampling chunk runs only its seeds; greedy decoding is its own job",
             "docs/recipes/openmath.md §4.2"),
    KnownFix("labeling-job-array", ("labeling",),
             "one sbatch job per seed (128 or 224 submissions)",
             "one job array with a %throttle; element i labels seed starting_seed + i, outputs unchanged",
             "docs/recipes/openmath.md §8.2"),
    KnownFix("sft-walltime", ("nemo_sft",),
             "without partition timeouts the job asks for -t 10000:00:00:00 and sets no max_time_per_run",
             "walltime comes from the profile; exp_manager.max_time_per_run = walltime minus the row's start-up, "
             "validation and save budgets and the chosen margin (NeMo-Aligner's timer starts only at fit(), and "
             "its time-limit path validates before it saves); no --signal, since nothing at NeMo-Aligner b0da1ef "
             "handles SIGTERM; a resubmission resumes (resume_if_exists in sft_config_codegen)",
             "docs/recipes/openmath.md §1.2, §10.2"),
    KnownFix("sft-batch-size-keys", ("nemo_sft",),
             "++model.global_batch_size / ++model.micro_batch_size are overwritten by start_sft.py, which copies "
             "model.data.train_ds.{global,micro}_batch_size into the model config",
             "batch sizes are passed as ++model.data.train_ds.global_batch_size / micro_batch_size",
             "NeMo-Skills 9b7f9d57 nemo_skills/finetuning/start_sft.py"),
    KnownFix("nemo-to-hf-offline", ("nemo_to_hf",),
             "nemo_to_hf.py loads config and tokenizer from the hub id (gated for Mistral and Llama-2) and builds "
             "the model on one GPU",
             "--hf-model-name is the base model's local HF folder, mounted under a folder named after the hub "
             "model (the script checks for 'mistral' in that name), and --cpu-only keeps a 70B model off the GPU",
             "NeMo-Skills 9b7f9d57 nemo_skills/conversion/nemo_to_hf.py"),
    KnownFix("untar-base-nemo", ("hf_to_nemo",),
             "the .nemo file is passed as --nemo_model, but checkpoint averaging reads model_config.yaml and "
             "the tokenizer from an untarred folder",
             "hf_to_nemo also untars the .nemo beside it; SFT and averaging use the folder",
             "docs/recipes/openmath.md §3.2"),
)

# Upstream's launcher starts every step with `srun --mpi=pmix`: the TensorRT-LLM server's ranks
# are MPI processes, one Slurm task each. srun reads the same choice from this variable.
PMIX_ENV = {"SLURM_MPI_TYPE": "pmix"}

# Seed doc evaluation set, in the order it lists them (docs/recipes/openmath.md §4.1); declared with the eval form.
SEED_BENCHMARKS: tuple[str, ...] = BENCHMARKS


# ------------------------------------------------------------------------------------- generation

@dataclass(frozen=True)
class EvalParams:
    """Evaluation (``run_eval.py``): greedy over all benchmarks, or sampling chunks.

    ``model_path`` is the TensorRT-LLM engine folder (nemo_skills) or what the native server loads
    (an HF folder for vLLM, a GGUF file for llama.cpp). ``code_dir`` is the NeMo-Skills checkout
    whose ``datasets/`` were prepared (nemo_skills engine); ``data_dir`` holds
    ``<benchmark>/<split>.jsonl`` (native engine). ``batch_size`` is 16 for 34B+ models.
    """

    model_path: str
    output_dir: str
    engine: str = "nemo_skills"
    code_dir: str | None = None
    data_dir: str | None = None
    benchmarks: tuple[str, ...] = SEED_BENCHMARKS
    split_name: str = "test"
    prompt_config: str = "openmathinstruct/sft"
    num_few_shots: int = 0
    max_code_executions: int = 6
    stop_on_code_error: bool = False
    batch_size: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    # None: the seed doc's choice (greedy rewrites, sampling resumes).
    skip_filled: bool | None = None
    extra_overrides: tuple[str, ...] = ()
    nemo_server: NemoSkillsServer = field(default_factory=NemoSkillsServer)
    native_server: NativeServer = field(default_factory=NativeServer)
    # Smoke runs: only the first N problems of each benchmark (None: all).
    limit: int | None = None


@dataclass(frozen=True)
class LabelingParams:
    """Synthetic solutions (``run_labeling.py``) for one dataset and prompt configuration.

    Seed runs: ``gsm8k``/``gsm8k-masked`` x 128 and ``math``/``math-masked`` x 224 with
    ``*_text_with_code`` examples, plus 32 runs per MATH subject set (docs/recipes/openmath.md §8.2).
    ``context_type`` is ``masked_solution`` for the masked datasets.
    """

    model_path: str
    output_dir: str
    dataset: str
    examples_type: str
    engine: str = "nemo_skills"
    code_dir: str | None = None
    data_dir: str | None = None
    split_name: str = "train_full"
    prompt_config: str = "openmathinstruct/base"
    context_type: str = "empty"
    num_few_shots: int = 5
    temperature: float = 1.0
    top_p: float = 0.95
    extra_overrides: tuple[str, ...] = ()
    nemo_server: NemoSkillsServer = field(default_factory=lambda: NemoSkillsServer(num_gpus=8))
    native_server: NativeServer = field(default_factory=NativeServer)


def _check_generation(params: EvalParams | LabelingParams) -> None:
    check_engine(params.engine)
    if params.engine == "nemo_skills" and not params.code_dir:
        raise RecipeError("code_dir (the NeMo-Skills checkout) is required for engine 'nemo_skills'")
    # Both engines read the prepared files: upstream through ++data_file (generate_solutions.py at
    # 9b7f9d57 otherwise opens <checkout>/datasets/<name>/<split>.jsonl, which nothing here writes).
    if not params.data_dir:
        raise RecipeError("data_dir (prepared <benchmark>/<split>.jsonl files) is required")


def _data_files(params: EvalParams | LabelingParams, names: Sequence[str]) -> list[str]:
    """The prepared host files a generation job reads, one per dataset."""
    data = abs_path("data_dir", params.data_dir)
    return [f"{data}/{n}/{params.split_name}.jsonl" for n in names]


def _generation_inputs(params: EvalParams | LabelingParams, profile: ClusterProfile,
                       names: Sequence[str]) -> list[str]:
    """Model (unless an external server), prepared data and, for upstream, the checkout."""
    out = [] if (params.engine == "native" and params.native_server.resolved_kind(profile) == "external") \
        else [abs_path("model_path", params.model_path)]
    out += _data_files(params, names)
    if params.engine == "nemo_skills":
        out.append(abs_path("code_dir", params.code_dir))
    return out


def _generation_job(params: EvalParams | LabelingParams, profile: ClusterProfile, opts: JobOptions, name: str,
                    work_for, mkdirs: Sequence[str], outputs: Sequence[str], dirs: Sequence[str],
                    array: str | None = None, throttle: int | None = None, prelude: str = "",
                    inputs: Sequence[str] = ()) -> RecipeJob:
    """Shared shape of eval and labeling jobs; ``work_for(paths)`` gives the engine's commands."""
    paths = PathMap(profile)
    model = paths.bind(abs_path("model_path", params.model_path), "/model")
    results = paths.bind(abs_path("output_dir", params.output_dir), "/results")
    step_dirs = [results + d[len(abs_path("output_dir", params.output_dir)):] for d in mkdirs]
    if params.engine == "nemo_skills":
        server = params.nemo_server
        code = paths.bind(abs_path("code_dir", params.code_dir), "/code")
        data = paths.bind(abs_path("data_dir", params.data_dir), "/data")
        server_cmd, tasks, ready = nemo_skills_server(server, model, code, basename(params.model_path))
        command = prelude + nemo_skills_step(server_cmd, ready, code, work_for(code, model, results, data),
                                             server.startup_timeout_s, step_dirs)
        fields = dict(image=nemo_skills_image(profile, server), nodes=server.num_nodes, ntasks_per_node=tasks,
                      gpus_per_node=server.num_gpus, sidecars=(nemo_skills_sandbox(profile),), env=dict(PMIX_ENV))
    else:
        server = params.native_server
        kind = server.resolved_kind(profile)
        data = paths.bind(abs_path("data_dir", params.data_dir), "/data")
        model_in_step = None if kind == "external" else model
        command = prelude + native_step(server, profile, model_in_step, work_for(None, model, results, data),
                                        step_dirs)
        fields = dict(image=native_image(profile, kind), nodes=1, ntasks_per_node=1,
                      gpus_per_node=server.num_gpus if kind == "vllm" else 0, sidecars=(native_sandbox(profile),))
    spec = make_spec(opts, name=name, command=command, mounts=paths.mounts, array=array, array_throttle=throttle,
                     **fields)
    return RecipeJob(spec=spec, outputs=tuple(outputs), dirs=tuple(dirs), inputs=tuple(inputs))


def _hydra(key: str, value: object) -> str:
    return q(f"{key}={value}")


def _eval_work(params: EvalParams, benchmarks: Sequence[str], seeds: Sequence[int] | None):
    """Commands for greedy (``seeds`` None) or the given sampling seeds, per engine."""
    sampling = seeds is not None
    skip_filled = params.skip_filled if params.skip_filled is not None else sampling

    def nemo_skills(code: str, model: str, results: str, data: str) -> list[str]:
        extra = [_hydra("+prompt", params.prompt_config),
                 _hydra("++prompt.few_shot_examples.num_few_shots", params.num_few_shots)]
        if skip_filled:
            extra.append("++skip_filled=True")
        extra += [_hydra("++server.code_execution.max_code_executions", params.max_code_executions),
                  _hydra("++server.code_execution.stop_on_code_error", params.stop_on_code_error),
                  _hydra("++batch_size", params.batch_size)]
        if params.limit:
            extra.append(_hydra("++max_samples", positive("limit", params.limit)))
        extra += [q(o) for o in params.extra_overrides]
        runs = [(b, None) for b in benchmarks] if not sampling else [(b, s) for b in benchmarks for s in seeds]
        out = []
        for bench, seed in runs:
            name = "output-greedy.jsonl" if seed is None else f"output-rs{seed}.jsonl"
            target = f"{results}/{bench}/{name}"
            sample = [] if seed is None else [f"inference.random_seed={seed}",
                                              _hydra("inference.temperature", params.temperature)]
            if seed is not None and params.top_p != 0.95:
                sample.append(_hydra("inference.top_p", params.top_p))
            gen = " ".join(["python nemo_skills/inference/generate_solutions.py",
                            _hydra("server.server_type", params.nemo_server.server_type),
                            "prompt.context_type=empty",
                            _hydra("++data_file", f"{data}/{bench}/{params.split_name}.jsonl"),
                            _hydra("output_file", target),
                            *sample, *extra])
            out += [f"echo {q('Evaluating benchmark ' + bench)}", gen,
                    f"python nemo_skills/evaluation/evaluate_results.py {_hydra('prediction_jsonl_files', target)}"]
        return out

    def native(code: None, model: str, results: str, data: str) -> list[str]:
        opts = ["--prompt", params.prompt_config, "--num-few-shots", str(params.num_few_shots),
                "--max-code-executions", str(params.max_code_executions),
                "--stop-on-code-error" if params.stop_on_code_error else "--no-stop-on-code-error",
                "--batch-size", str(params.batch_size)]
        if params.limit:
            opts += ["--limit", str(positive("limit", params.limit))]
        if skip_filled:
            opts.append("--skip-filled")
        if sampling:
            opts += ["--seeds", f"{seeds[0]}-{seeds[-1]}", "--temperature", str(params.temperature),
                     "--top-p", str(params.top_p)]
        else:
            opts.append("--greedy")
        out = []
        for bench in benchmarks:
            bench_dir = f"{results}/{bench}"
            names = ["output-greedy.jsonl"] if not sampling else [f"output-rs{s}.jsonl" for s in seeds]
            out.append(native_generate(params.native_server.served_model_name,
                                       f"{data}/{bench}/{params.split_name}.jsonl", bench_dir, opts))
            out.append('"$SKILLFLOW_CLI" grade ' + words(*(f"{bench_dir}/{n}" for n in names)))
        return out

    return nemo_skills if params.engine == "nemo_skills" else native


def _benchmarks(params: EvalParams) -> tuple[str, ...]:
    if not params.benchmarks:
        raise RecipeError("benchmarks must name at least one benchmark")
    return tuple(ident("benchmarks", b) for b in params.benchmarks)


def eval_greedy_job(params: EvalParams, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    """Greedy decoding of every benchmark in one job (seed doc step 3, ``--num_jobs 1``).

    Writes ``<output_dir>/<benchmark>/output-greedy.jsonl``, graded in place (``is_correct``).
    """
    _check_generation(params)
    benchmarks = _benchmarks(params)
    out = abs_path("output_dir", params.output_dir)
    return _generation_job(
        params, profile, opts,
        f"eval-{slug(basename(params.model_path))}" + (f"-{benchmarks[0]}" if len(benchmarks) == 1 else ""),
        _eval_work(params, benchmarks, None),
        mkdirs=[f"{out}/{b}" for b in benchmarks], outputs=[f"{out}/{b}/output-greedy.jsonl" for b in benchmarks],
        dirs=[out], inputs=_generation_inputs(params, profile, benchmarks))


def eval_sampling_chunk_job(seeds: Sequence[int], params: EvalParams, profile: ClusterProfile,
                            opts: JobOptions = JobOptions()) -> RecipeJob:
    """One chunk of the majority@50 sampling run: consecutive ``seeds`` for each benchmark.

    The seed doc splits 50 samples into chunks (``gsm8k:10 math:10``, then ``--starting_seed 10``
    ...) because long runs die with an MPI error; resubmitting a chunk resumes (skip_filled).
    Writes ``<output_dir>/<benchmark>/output-rs<seed>.jsonl``. ``params.benchmarks`` defaults to
    all eight; pass ``SAMPLING_BENCHMARKS`` for the seed's gsm8k + math.
    """
    _check_generation(params)
    seeds = list(seeds)
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise RecipeError(f"seeds={seeds!r} must be a non-empty list of non-negative integers")
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise RecipeError(f"seeds={seeds!r} must be consecutive (a chunk such as range(10, 20))")
    benchmarks = _benchmarks(params)
    out = abs_path("output_dir", params.output_dir)
    return _generation_job(
        params, profile, opts, f"eval-{slug(basename(params.model_path))}-rs{seeds[0]}-{seeds[-1]}",
        _eval_work(params, benchmarks, seeds), mkdirs=[f"{out}/{b}" for b in benchmarks],
        outputs=[f"{out}/{b}/output-rs{s}.jsonl" for b in benchmarks for s in seeds], dirs=[out],
        inputs=_generation_inputs(params, profile, benchmarks))


def _seeded(prefix: str, suffix: str) -> str:
    """A shell word ``prefix<seed>suffix`` whose seed part expands from ``$SKILLFLOW_SEED``."""
    return q(prefix) + '"${SKILLFLOW_SEED}"' + (q(suffix) if suffix else "")


def labeling_array_job(num_runs: int, throttle: int | None, params: LabelingParams, profile: ClusterProfile,
                       starting_seed: int = 0, opts: JobOptions = JobOptions(),
                       only_seeds: Sequence[int] | None = None) -> RecipeJob:
    """All labeling seeds of one configuration as ONE Slurm job array (``--array=0-N%throttle``).

    Element ``i`` samples seed ``starting_seed + i`` into ``<output_dir>/output-rs<seed>.jsonl``
    (T=1.0, top_p=0.95, no top-k) and grades it; rerunning an element resumes (skip_filled).
    ``only_seeds`` (a subset of the run's seeds, e.g. the ones a resubmission found unfinished)
    keeps the element-to-seed mapping and submits only those elements (``--array=3,7-9%throttle``).
    """
    _check_generation(params)
    positive("num_runs", num_runs)
    positive("starting_seed", starting_seed, minimum=0)
    if throttle is not None:
        positive("throttle", throttle)
    seeds = list(range(starting_seed, starting_seed + num_runs))
    array = f"0-{num_runs - 1}"
    if only_seeds is not None:
        wanted = sorted(set(only_seeds))
        outside = [s for s in wanted if not isinstance(s, int) or not starting_seed <= s < starting_seed + num_runs]
        if not wanted or outside:
            raise RecipeError(f"only_seeds={list(only_seeds)!r} must be a non-empty subset of seeds "
                              f"{starting_seed}..{starting_seed + num_runs - 1}")
        seeds, array = wanted, index_list([s - starting_seed for s in wanted])
        if array.isdigit():
            # "5-5", not "5": a bare number in a templated job dict renders as an int under
            # render_template_as_native_obj, and --array must stay a string.
            array = f"{array}-{array}"
    dataset = ident("dataset", params.dataset)
    split = ident("split_name", params.split_name)
    out = abs_path("output_dir", params.output_dir)
    prelude = f"export SKILLFLOW_SEED=$((SLURM_ARRAY_TASK_ID + {starting_seed}))\n"

    def nemo_skills(code: str, model: str, results: str, data: str) -> list[str]:
        target_parts = (f"output_file={results}/output-rs", ".jsonl")
        extra = [_hydra("+prompt", params.prompt_config),
                 _hydra("++prompt.few_shot_examples.examples_type", params.examples_type),
                 _hydra("++prompt.few_shot_examples.num_few_shots", params.num_few_shots)]
        if params.context_type != "empty":
            extra.append(_hydra("++prompt.context_type", params.context_type))
        extra += [_hydra("++data_file", f"{data}/{dataset}/{split}.jsonl"), *(q(o) for o in params.extra_overrides)]
        gen = " ".join(["python nemo_skills/inference/generate_solutions.py",
                        _hydra("server.server_type", params.nemo_server.server_type), "skip_filled=True",
                        'inference.random_seed="${SKILLFLOW_SEED}"',
                        _hydra("inference.temperature", params.temperature), "inference.top_k=0",
                        _hydra("inference.top_p", params.top_p), _seeded(*target_parts), *extra])
        return [gen, "python nemo_skills/evaluation/evaluate_results.py "
                + _seeded(f"prediction_jsonl_files={results}/output-rs", ".jsonl")]

    def native(code: None, model: str, results: str, data: str) -> list[str]:
        options = ["--prompt", params.prompt_config, "--num-few-shots", str(params.num_few_shots),
                   "--examples-type", params.examples_type, "--context-type", params.context_type,
                   "--temperature", str(params.temperature), "--top-p", str(params.top_p), "--skip-filled"]
        gen = native_generate(params.native_server.served_model_name, f"{data}/{dataset}/{split}.jsonl", results,
                              options, shell_tail='--seeds "${SKILLFLOW_SEED}"')
        return [gen, '"$SKILLFLOW_CLI" grade ' + _seeded(f"{results}/output-rs", ".jsonl")]

    return _generation_job(
        params, profile, opts, f"labelling-{slug(basename(params.model_path))}",
        nemo_skills if params.engine == "nemo_skills" else native, mkdirs=[out],
        outputs=[f"{out}/output-rs{s}.jsonl" for s in seeds], dirs=[out],
        array=array, throttle=throttle, prelude=prelude, inputs=_generation_inputs(params, profile, [dataset]))


def index_list(indices: Sequence[int]) -> str:
    """Sorted non-negative indices as a Slurm ``--array`` list: ``[0, 1, 2, 5, 7, 8]`` -> ``0-2,5,7-8``."""
    values = sorted(set(indices))
    if not values or values[0] < 0:
        raise RecipeError(f"array indices {list(indices)!r} must be a non-empty list of non-negative integers")
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(parts)


# ------------------------------------------------------------------------------------- conversion

@dataclass(frozen=True)
class TrtllmBuildParams:
    """HF -> TensorRT-LLM engine (docs/recipes/openmath.md §3.1). ``tp_size`` must equal the eval ``--num_gpus``.

    ``paged_kv_cache`` None leaves trtllm-build's default (the conversion doc enables it on A100+,
    ``disable`` on V100). ``num_gpus`` is what the job asks for; building needs one.
    """

    hf_model_path: str
    engine_dir: str
    code_dir: str
    tp_size: int = 8
    pp_size: int = 1
    dtype: str = "bfloat16"
    gpt_attention_plugin: str = "bfloat16"
    gemm_plugin: str = "bfloat16"
    context_fmha: str = "enable"
    paged_kv_cache: str | None = None
    max_input_len: int = 4096
    max_output_len: int = 512
    max_batch_size: int = 64
    num_gpus: int = 1
    extra_build_args: tuple[str, ...] = ()


def trtllm_build_job(params: TrtllmBuildParams, profile: ClusterProfile,
                     opts: JobOptions = JobOptions()) -> RecipeJob:
    """``hf_to_trtllm.py`` + ``trtllm-build`` + tokenizer copy, in the trtllm image.

    The intermediate checkpoint lives in the node's temporary folder and is removed afterwards.
    Writes ``config.json``, ``rank<i>.engine`` and the tokenizer files into ``engine_dir``.
    """
    tp, pp = positive("tp_size", params.tp_size), positive("pp_size", params.pp_size)
    paths = PathMap(profile)
    code = paths.bind(abs_path("code_dir", params.code_dir), "/code")
    model = paths.bind(abs_path("hf_model_path", params.hf_model_path), "/model")
    engine_host = abs_path("engine_dir", params.engine_dir)
    engine = paths.bind(engine_host, "/engine")
    convert = ["python nemo_skills/conversion/hf_to_trtllm.py", "--model_dir", q(model),
               '--output_dir "$SKILLFLOW_CKPT"', "--dtype", q(params.dtype), "--tp_size", str(tp)]
    if pp != 1:
        convert += ["--pp_size", str(pp)]
    build = ['trtllm-build --checkpoint_dir "$SKILLFLOW_CKPT"', "--output_dir", q(engine),
             "--gpt_attention_plugin", q(params.gpt_attention_plugin), "--gemm_plugin", q(params.gemm_plugin),
             "--context_fmha", q(params.context_fmha)]
    if params.paged_kv_cache is not None:
        build += ["--paged_kv_cache", q(params.paged_kv_cache)]
    build += ["--max_input_len", str(positive("max_input_len", params.max_input_len)),
              "--max_output_len", str(positive("max_output_len", params.max_output_len)),
              "--max_batch_size", str(positive("max_batch_size", params.max_batch_size)),
              *(q(a) for a in params.extra_build_args)]
    command = (
        f'export PYTHONPATH={q(code)} && cd {q(code)} || exit 1\n'
        f"mkdir -p {q(engine)} || exit 1\n"
        'SKILLFLOW_CKPT="${TMPDIR:-/tmp}/skillflow-trtllm-${SLURM_JOB_ID}"\n'
        "trap 'rm -rf \"$SKILLFLOW_CKPT\"' EXIT\n"
        + " ".join(convert) + " && \\\n" + " ".join(build) + " || exit 1\n"
        f"for f in {q(model)}/tokenizer* {q(model)}/special_tokens_map.json {q(model)}/added_tokens.json; do\n"
        f'  if [ -f "$f" ]; then cp "$f" {q(engine)}/ || exit 1; fi\n'
        "done\n"
        f"if ! ls {q(engine)}/tokenizer* >/dev/null 2>&1; then\n"
        f'  echo "skillflow: no tokenizer file found in "{q(model)} >&2; exit 1\n'
        "fi\n"
    )
    # Upstream starts every step with `srun --mpi=pmix` (pipeline/launcher.py); TensorRT-LLM's
    # conversion and build use MPI too, so this step gets the same (srun reads SLURM_MPI_TYPE).
    spec = make_spec(opts, name=f"trtllm-build-{slug(basename(engine_host))}", command=command,
                     image=profile.image("trtllm"), gpus_per_node=positive("num_gpus", params.num_gpus),
                     mounts=paths.mounts, env=dict(PMIX_ENV))
    outputs = [f"{engine_host}/config.json", *(f"{engine_host}/rank{i}.engine" for i in range(tp * pp)),
               f"{engine_host}/tokenizer_config.json"]
    return RecipeJob(spec=spec, outputs=tuple(outputs), dirs=(engine_host,),
                     inputs=(abs_path("hf_model_path", params.hf_model_path), abs_path("code_dir", params.code_dir)))


@dataclass(frozen=True)
class HfToNemoParams:
    """HF -> ``.nemo`` (Llama family; docs/recipes/openmath.md §3.2). ``out_nemo`` ends in ``.nemo``."""

    hf_model_path: str
    out_nemo: str
    hf_model_name: str
    code_dir: str
    precision: str = "bf16"
    num_gpus: int = 1


def hf_to_nemo_job(params: HfToNemoParams, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    """Convert, then untar beside it: ``<out>.nemo`` and the folder ``<out>/`` (used by SFT and averaging)."""
    out_host = abs_path("out_nemo", params.out_nemo)
    if not out_host.endswith(".nemo"):
        raise RecipeError(f"out_nemo={params.out_nemo!r} must end in .nemo")
    paths = PathMap(profile)
    code = paths.bind(abs_path("code_dir", params.code_dir), "/code")
    model = paths.bind(abs_path("hf_model_path", params.hf_model_path), "/model")
    outdir = paths.bind(parent(out_host), "/output")
    nemo_file = f"{outdir}/{basename(out_host)}"
    untarred = nemo_file[: -len(".nemo")]
    command = (
        f'export PYTHONPATH={q(code)} && cd {q(code)} || exit 1\n'
        f"python nemo_skills/conversion/hf_to_nemo.py --in-path {q(model)} --out-path {q(nemo_file)} "
        f"--hf-model-name {q(params.hf_model_name)} --precision {q(params.precision)} && \\\n"
        f"mkdir -p {q(untarred)} && \\\n"
        f"tar -xf {q(nemo_file)} -C {q(untarred)}\n"
    )
    spec = make_spec(opts, name=f"hf-to-nemo-{slug(basename(out_host))}", command=command,
                     image=profile.image("nemo"), gpus_per_node=positive("num_gpus", params.num_gpus),
                     mounts=paths.mounts)
    untarred_host = out_host[: -len(".nemo")]
    return RecipeJob(spec=spec, outputs=(out_host, f"{untarred_host}/model_config.yaml"), dirs=(parent(out_host),),
                     inputs=(abs_path("hf_model_path", params.hf_model_path), abs_path("code_dir", params.code_dir)))


# ------------------------------------------------------------------------------------------ SFT

@dataclass(frozen=True)
class SftRow:
    """One row of the seed doc's fine-tuning table (≡ paper Table 12)."""

    epochs: int
    lr: str
    gpus: int
    tp: int
    pp: int
    hf_model_name: str


SFT_TABLE: dict[str, SftRow] = {
    "Mistral-7B": SftRow(4, "1e-6", 64, 4, 1, "mistralai/Mistral-7B-v0.1"),
    "CodeLlama-7B": SftRow(4, "2e-5", 64, 4, 1, "codellama/CodeLlama-7b-Python-hf"),
    "CodeLlama-13B": SftRow(4, "2e-5", 64, 4, 1, "codellama/CodeLlama-13b-Python-hf"),
    "CodeLlama-34B": SftRow(4, "1e-5", 128, 8, 1, "codellama/CodeLlama-34b-Python-hf"),
    "Llama2-70B": SftRow(2, "1e-5", 256, 8, 2, "meta-llama/Llama-2-70b-hf"),
    "CodeLlama-70B": SftRow(3, "1e-5", 256, 8, 2, "codellama/CodeLlama-70b-Python-hf"),
}


@dataclass(frozen=True)
class NemoSftParams:
    """NeMo-Aligner SFT with ``sft_config_codegen`` (``run_pipeline.py --stages sft``; docs/recipes/openmath.md §10).

    ``model`` picks the :data:`SFT_TABLE` row (epochs, LR, GPUs, TP, PP). ``nemo_model`` is the
    untarred base model folder; ``output_dir`` is the experiment's ``training/`` folder
    (checkpoints land in ``output_dir/checkpoints``); ``sft_data`` is the prepared jsonl. Nodes
    default to the row's GPUs / ``gpus_per_node`` (8 per node, as the paper's A100 nodes).
    """

    model: str
    nemo_model: str
    output_dir: str
    sft_data: str
    code_dir: str
    expname: str
    # The SFT-ready validation file (``validation-sft.jsonl`` of ``skillflow data prepare gsm8k
    # --split validation``); an earlier job of the plan writes it.
    validation_file: str = ""
    gpus_per_node: int = 8
    num_nodes: int | None = None
    val_check_interval: int = 4000
    config_name: str = "sft_config_codegen"
    wandb_project: str | None = None
    global_batch_size: int | None = None
    micro_batch_size: int | None = None
    # Idle GPU time at the end of each job we accept: see :func:`sft_time_limit`.
    checkpoint_margin_s: int = 600
    # None: the row's :data:`SFT_TIME_BUDGETS`.
    budget: "SftTimeBudget | None" = None
    extra_overrides: tuple[str, ...] = ()
    # A row of the form (overrides, or a model outside the table); None = the table's row of ``model``.
    row: SftRow | None = None


@dataclass(frozen=True)
class SftTimeBudget:
    """Seconds a NeMo-Aligner SFT job spends outside the timed training loop.

    At b0da1ef the trainer starts its ``max_time_per_run`` clock in ``fit()``, after the model and
    data are loaded (``startup_s``), and when the clock runs out it trains the current step, then
    validates (``validation_s``: the code-generation accuracy on the validation file) and saves
    (``save_s``: the distributed checkpoint and its ``-last`` copy) before it returns. Nothing
    handles SIGTERM, so all of that must fit inside the walltime.
    """

    startup_s: int
    validation_s: int
    save_s: int
    step_s: int


# Budgets per model size on the paper's A100 nodes, deliberately generous (loading a TP8/PP2 .nemo
# from Lustre, generating answers for 1000 validation problems, writing weights plus fp32 optimizer
# state). A site that measured its own passes ``budget``; the margin bounds the waste, not the loss.
SFT_TIME_BUDGETS: dict[str, SftTimeBudget] = {
    "7B": SftTimeBudget(startup_s=600, validation_s=600, save_s=300, step_s=30),
    "13B": SftTimeBudget(startup_s=900, validation_s=900, save_s=450, step_s=45),
    "34B": SftTimeBudget(startup_s=1200, validation_s=1200, save_s=600, step_s=60),
    "70B": SftTimeBudget(startup_s=1800, validation_s=1800, save_s=900, step_s=90),
}


def sft_budget_for(model: str) -> SftTimeBudget:
    """The row's budget by the size in its name; unknown models get the largest (safest) one."""
    for size in ("70B", "34B", "13B", "7B"):
        if model.upper().endswith(size) or f"-{size}" in model.upper():
            return SFT_TIME_BUDGETS[size]
    return SFT_TIME_BUDGETS["70B"]


def sft_time_limit(walltime_s: int, budget: SftTimeBudget, margin_s: int) -> int:
    """``max_time_per_run`` in seconds so that a job saves and exits ``margin_s`` before walltime.

    Job timeline: start-up, the timed loop (``max_time_per_run``), the step in flight when the
    clock runs out, validation, save. Solving start + loop + step + validation + save + margin =
    walltime gives the loop's length; the margin is the most GPU time a job leaves unused, and
    no trained step is lost because the save happens inside the walltime.
    """
    overhead = budget.startup_s + budget.step_s + budget.validation_s + budget.save_s + margin_s
    loop = walltime_s - overhead
    if loop < budget.step_s * 10:
        raise RecipeError(
            f"time={walltime_s}s leaves {max(loop, 0)}s of training after start-up ({budget.startup_s}s), "
            f"validation ({budget.validation_s}s), save ({budget.save_s}s), one step ({budget.step_s}s) and the "
            f"margin ({margin_s}s); ask for a longer walltime")
    return loop


def nemo_sft_job(params: NemoSftParams, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    """``start_sft.py`` on every GPU (tasks per node = GPUs per node), with the sandbox sidecar
    the validation metric needs. Resubmitting the same job resumes from the last checkpoint."""
    if params.row is None and params.model not in SFT_TABLE:
        raise RecipeError(f"model={params.model!r} is not in SFT_TABLE (known: {', '.join(SFT_TABLE)})")
    row = params.row or SFT_TABLE[params.model]
    gpn = positive("gpus_per_node", params.gpus_per_node)
    if params.num_nodes is None and row.gpus % gpn:
        raise RecipeError(f"gpus_per_node={gpn} does not divide the {row.gpus} GPUs of {params.model}; "
                          "set num_nodes")
    nodes = positive("num_nodes", params.num_nodes if params.num_nodes is not None else row.gpus // gpn)
    paths = PathMap(profile)
    code = paths.bind(abs_path("code_dir", params.code_dir), "/code")
    results = paths.bind(abs_path("output_dir", params.output_dir), "/results")
    data_host = abs_path("sft_data", params.sft_data)
    data = paths.bind(parent(data_host), "/data") + "/" + basename(data_host)
    nemo_model = paths.bind(abs_path("nemo_model", params.nemo_model), "/nemo_model")
    validation_host = abs_path("validation_file", params.validation_file)
    validation = paths.bind(parent(validation_host), "/validation") + "/" + basename(validation_host)
    time = opts.time or profile.default_time or profile.max_time
    overrides = [
        f"--config-name={q(params.config_name)}", q(f"--config-path={code}/nemo_skills/finetuning/"),
        f"trainer.devices={gpn}", f"trainer.num_nodes={nodes}",
        _hydra("model.restore_from_path", nemo_model),
        _hydra("model.data.validation_ds.file_path", validation),
    ]
    if params.wandb_project:
        overrides += ["exp_manager.create_wandb_logger=True", _hydra("exp_manager.wandb_logger_kwargs.name", params.expname),
                      _hydra("exp_manager.wandb_logger_kwargs.project", params.wandb_project),
                      _hydra("+exp_manager.wandb_logger_kwargs.id", params.expname),
                      "+exp_manager.wandb_logger_kwargs.resume=True"]
    else:
        overrides += ["exp_manager.create_wandb_logger=False", "+exp_manager.create_tensorboard_logger=True"]
    overrides += [_hydra("exp_manager.name", params.expname), _hydra("exp_manager.explicit_log_dir", results),
                  _hydra("exp_manager.exp_dir", results)]
    if time:
        budget = params.budget or sft_budget_for(params.model)
        loop = sft_time_limit(slurm_time_seconds(time), budget, positive("checkpoint_margin_s",
                                                                         params.checkpoint_margin_s, 0))
        overrides.append(f"++exp_manager.max_time_per_run={nemo_duration(loop)}")
    # start_sft.py copies these two into the model config; ++model.global_batch_size would be overwritten.
    for key in ("global_batch_size", "micro_batch_size"):
        value = getattr(params, key)
        if value is not None:
            overrides.append(f"++model.data.train_ds.{key}={positive(key, value)}")
    overrides += [  # the seed doc's own overrides, in its order
        _hydra("++model.data.train_ds.file_path", data), f"++trainer.sft.max_epochs={row.epochs}",
        f"++trainer.sft.val_check_interval={positive('val_check_interval', params.val_check_interval)}",
        f"++model.tensor_model_parallel_size={row.tp}", f"++model.pipeline_model_parallel_size={row.pp}",
        f"++model.optim.lr={row.lr}", *(q(o) for o in params.extra_overrides)]
    wandb_check = ': "${WANDB_API_KEY:?set WANDB_API_KEY in the job environment or drop wandb_project}"\n' \
        if params.wandb_project else ""
    command = (
        wandb_check
        + "export HYDRA_FULL_ERROR=1\n"
        + f'export PYTHONPATH="${{PYTHONPATH:-}}:"{q(code)}\n'
        + 'echo "Starting training"\n'
        + f"NVTE_APPLY_QK_LAYER_SCALING=1 python {q(code + '/nemo_skills/finetuning/start_sft.py')} \\\n    "
        + " \\\n    ".join(overrides) + "\n"
    )
    spec = make_spec(opts, name=f"sft-{slug(params.expname)}", command=command, image=profile.image("nemo"),
                     nodes=nodes, ntasks_per_node=gpn, gpus_per_node=gpn, mounts=paths.mounts,
                     sidecars=(nemo_skills_sandbox(profile),), env=dict(PMIX_ENV))
    out = abs_path("output_dir", params.output_dir)
    return RecipeJob(spec=spec, outputs=(f"{out}/checkpoints",), dirs=(out,),
                     inputs=(abs_path("nemo_model", params.nemo_model), data_host, validation_host,
                             abs_path("code_dir", params.code_dir)))


@dataclass(frozen=True)
class AverageCheckpointsParams:
    """``prepare_eval.py``: average the SFT checkpoints into one ``.nemo`` (docs/recipes/openmath.md §10.3).

    ``checkpoint_dir`` holds the checkpoint folders (``training/checkpoints``); every one not
    ending in ``-last`` is averaged unless ``average_steps`` names steps. ``nemo_model`` is the
    untarred base folder (config and tokenizer come from it).
    """

    checkpoint_dir: str
    nemo_model: str
    out_nemo: str
    code_dir: str
    average_steps: tuple[int, ...] = ()
    num_gpus: int = 1


def average_checkpoints_job(params: AverageCheckpointsParams, profile: ClusterProfile,
                            opts: JobOptions = JobOptions()) -> RecipeJob:
    out_host = abs_path("out_nemo", params.out_nemo)
    if not out_host.endswith(".nemo"):
        raise RecipeError(f"out_nemo={params.out_nemo!r} must end in .nemo")
    paths = PathMap(profile)
    code = paths.bind(abs_path("code_dir", params.code_dir), "/code")
    training = paths.bind(abs_path("checkpoint_dir", params.checkpoint_dir), "/training_folder")
    inference = paths.bind(parent(out_host), "/inference_folder")
    nemo_model = paths.bind(abs_path("nemo_model", params.nemo_model), "/nemo_model")
    steps = ""
    if params.average_steps:
        steps = " --steps " + " ".join(str(positive("average_steps", s, 0)) for s in params.average_steps)
    command = (
        f"python {q(code + '/nemo_skills/finetuning/average_checkpoints.py')} --untarred_nemo_folder {q(nemo_model)} "
        f"--name_prefix=model {q('--checkpoint_dir=' + training)}{steps} && \\\n"
        f"mv {q(training + '/model-averaged.nemo')} {q(inference + '/' + basename(out_host))}\n"
    )
    spec = make_spec(opts, name=f"prepare-for-eval-{slug(basename(out_host))}", command=command,
                     image=profile.image("nemo"), gpus_per_node=positive("num_gpus", params.num_gpus),
                     mounts=paths.mounts)
    return RecipeJob(spec=spec, outputs=(out_host,), dirs=(parent(out_host),),
                     inputs=(abs_path("checkpoint_dir", params.checkpoint_dir), abs_path("nemo_model", params.nemo_model),
                             abs_path("code_dir", params.code_dir)))


@dataclass(frozen=True)
class NemoToHfParams:
    """``.nemo`` (file or untarred folder) -> HF folder; then :func:`trtllm_build_job` for eval.

    ``hf_base`` is the base model's HF folder on the cluster: config and tokenizer come from it,
    never from the hub. ``hf_model_name`` (the hub id) only names the folder it is mounted as.
    """

    nemo_path: str
    out_dir: str
    hf_model_name: str
    code_dir: str
    hf_base: str = ""
    precision: str = "bf16"
    max_shard_size: str = "10GB"
    num_gpus: int = 0


def nemo_to_hf_job(params: NemoToHfParams, profile: ClusterProfile, opts: JobOptions = JobOptions()) -> RecipeJob:
    paths = PathMap(profile)
    code = paths.bind(abs_path("code_dir", params.code_dir), "/code")
    src_host = abs_path("nemo_path", params.nemo_path)
    src = paths.bind(src_host, "/nemo_model.nemo" if src_host.endswith(".nemo") else "/nemo_model")
    out_host = abs_path("out_dir", params.out_dir)
    out = paths.bind(out_host, "/output")
    base_host = abs_path("hf_base", params.hf_base)
    # nemo_to_hf.py applies its Mistral settings when 'mistral' is in --hf-model-name, so the
    # folder keeps the hub model's name; without containers the host folder's own name is used.
    base = paths.bind(base_host, "/hf_base/" + slug(basename(params.hf_model_name or base_host)))
    command = (
        f'export PYTHONPATH={q(code)} HF_HUB_OFFLINE=1 && cd {q(code)} || exit 1\n'
        f"python nemo_skills/conversion/nemo_to_hf.py --in-path {q(src)} --out-path {q(out)} "
        f"--hf-model-name {q(base)} --precision {q(params.precision)} "
        f"--max-shard-size {q(params.max_shard_size)} --cpu-only\n"
    )
    spec = make_spec(opts, name=f"nemo-to-hf-{slug(basename(out_host))}", command=command,
                     image=profile.image("nemo"), gpus_per_node=positive("num_gpus", params.num_gpus, 0),
                     mounts=paths.mounts)
    return RecipeJob(spec=spec, outputs=(f"{out_host}/config.json",), dirs=(out_host,),
                     inputs=(src_host, base_host, abs_path("code_dir", params.code_dir)))
