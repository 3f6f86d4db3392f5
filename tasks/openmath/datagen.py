"""Planning OpenMathInstruct-1 data generation: params in, Slurm job specs and output paths out.

Plain Python (no Airflow) so the DAG stays a wiring file and the planning is unit-tested. A run
(docs/recipes/openmath.md §8, §9) is:

1. data preparation: ``train_full`` of gsm8k and/or math into ``data_dir`` (one CPU job);
2. masked solutions: one labeling array per base dataset with ``openmathinstruct/text_masked_base``,
   ``*_generate_masked`` examples and the ``reference_solution`` context (32 runs in the seed);
3. ``skillflow sft-data mask``: one masked reference solution per problem, written as the
   ``gsm8k-masked`` / ``math-masked`` datasets (one CPU job);
4. labeling: one throttled job array per configuration (:data:`CONFIGURATIONS`);
5. ``skillflow sft-data collect``: correct, de-duplicated solutions plus coverage stats;
6. ``skillflow sft-data prepare``: v0.1.1 SFT data with fair downsampling.

Resubmission: the outputs of every labeling unit are checked first (:func:`completion_command`,
one SSH round trip for all of them) and arrays are submitted only over the seeds that are not
complete (:func:`pending_jobs`); a configuration whose seeds are all complete submits nothing.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any, Iterable

from tasks.forms import DATAGEN, DATAGEN_BASES, MATH_SUBJECTS, PlanError
from tasks.plan import engine_inputs, planned_entry, servers, spec_dict
from tasks.profiles import ClusterProfile
from tasks.steps.base import JobOptions, RecipeError, same_path_mounts
from tasks.openmath.steps import LabelingParams, labeling_array_job

SUBJECTS = MATH_SUBJECTS
BASES = DATAGEN_BASES
GENERATION_TYPES = {"empty": "without_reference_solution", "masked_solution": "masked_reference_solution"}
SPLIT = "train_full"


@dataclass(frozen=True)
class Configuration:
    """One labeling configuration of the seed document (docs/recipes/openmath.md §8.2).

    ``dataset`` is the data folder read (``gsm8k-masked`` is written by the mask step), ``base``
    the dataset the solutions belong to (the ``dataset`` field of collected solutions).
    """

    name: str
    base: str
    examples_type: str
    context_type: str
    seed_runs: int

    @property
    def dataset(self) -> str:
        return f"{self.base}-masked" if self.masked else self.base

    @property
    def masked(self) -> bool:
        return self.context_type == "masked_solution"

    @property
    def generation_type(self) -> str:
        return GENERATION_TYPES[self.context_type]


def _configurations() -> dict[str, Configuration]:
    out = [Configuration("gsm8k", "gsm8k", "gsm8k_text_with_code", "empty", 128),
           Configuration("gsm8k-masked", "gsm8k", "gsm8k_text_with_code", "masked_solution", 128),
           Configuration("math", "math", "math_text_with_code", "empty", 224),
           Configuration("math-masked", "math", "math_text_with_code", "masked_solution", 224)]
    # The paper counts 7 x 32 subject runs with each context (docs/recipes/openmath.md §8.2), over all MATH problems.
    for subject in SUBJECTS:
        out.append(Configuration(f"math-{subject}", "math", f"math_{subject}", "empty", 32))
    for subject in SUBJECTS:
        out.append(Configuration(f"math-masked-{subject}", "math", f"math_{subject}", "masked_solution", 32))
    return {c.name: c for c in out}


CONFIGURATIONS: dict[str, Configuration] = _configurations()


@dataclass
class DatagenRequest:
    """The planning part of the ``openmath_datagen`` form (:data:`tasks.forms.DATAGEN`, which holds
    the defaults) after Airflow's schema validation."""

    model: str = DATAGEN.dataclass_default("model")
    engine: str = DATAGEN.dataclass_default("engine")
    server: str = DATAGEN.dataclass_default("server")
    num_gpus: int = DATAGEN.dataclass_default("num_gpus")
    code_dir: str | None = DATAGEN.dataclass_default("code_dir")
    configurations: list[str] = DATAGEN.dataclass_default("configurations")
    # None: the seed's count per configuration (128 / 224 / 32).
    num_runs: int | None = DATAGEN.dataclass_default("num_runs")
    runs_scale: float = DATAGEN.dataclass_default("runs_scale")
    masked_runs: int = DATAGEN.dataclass_default("masked_runs")
    throttle: int | None = DATAGEN.dataclass_default("throttle")
    limit: int | None = DATAGEN.dataclass_default("limit")
    data: str = DATAGEN.dataclass_default("data")
    num_output_samples: int = DATAGEN.dataclass_default("num_output_samples")
    time_limit: str | None = DATAGEN.dataclass_default("time_limit")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "DatagenRequest":
        """The request from a run's params; a key the form does not declare is a :class:`PlanError`."""
        return DATAGEN.request(cls, params)


def runs_for(conf: Configuration, req: DatagenRequest) -> int:
    """Runs of one configuration: the explicit ``num_runs``, else the seed's count times ``runs_scale``."""
    if req.num_runs is not None:
        if req.num_runs < 1:
            raise PlanError("param 'num_runs' must be at least 1")
        return req.num_runs
    if not 0 < req.runs_scale <= 1:
        raise PlanError(f"param 'runs_scale' must be in (0, 1]; got {req.runs_scale}")
    return max(1, math.ceil(conf.seed_runs * req.runs_scale))


# Generation settings of the paper (docs/recipes/openmath.md §8.2): at most 3 code blocks, stop on a code error.
# `skillflow generate` defaults to exactly these; the upstream command gets them explicitly.
NEMO_SKILLS_CODE_OVERRIDES = ("++server.code_execution.max_code_executions=3",
                              "++server.code_execution.stop_on_code_error=True")


@dataclass(frozen=True)
class Unit:
    """One labeling array: a configuration (or a masked-solution run) and its seeds 0..runs-1."""

    name: str
    stage: str  # "masked" or "labeling"
    output_dir: str
    runs: int
    params: LabelingParams
    data_file: str

    def outputs(self, seeds: Iterable[int] | None = None) -> list[str]:
        return [f"{self.output_dir}/output-rs{s}.jsonl" for s in (range(self.runs) if seeds is None else seeds)]


def _units(req: DatagenRequest, profile: ClusterProfile, out_dir: str, data_dir: str) -> list[Unit]:
    if req.engine not in ("native", "nemo_skills"):
        raise PlanError(f"param 'engine': {req.engine!r} must be native or nemo_skills")
    confs = _selected(req)
    nemo_server, native_server = servers(req.engine, req.server, req.num_gpus)
    model = profile.model_path(req.model)
    common = dict(model_path=model, engine=req.engine, code_dir=req.code_dir, data_dir=data_dir, split_name=SPLIT,
                  nemo_server=nemo_server, native_server=native_server,
                  extra_overrides=NEMO_SKILLS_CODE_OVERRIDES if req.engine == "nemo_skills" else ())
    units = []
    if req.masked_runs < 1:
        raise PlanError("param 'masked_runs' must be at least 1")
    for base in masked_bases(confs):
        params = LabelingParams(output_dir=f"{out_dir}/masked-solutions/{base}", dataset=base,
                                examples_type=f"{base}_generate_masked",
                                prompt_config="openmathinstruct/text_masked_base",
                                context_type="reference_solution", **common)
        units.append(Unit(f"masked-{base}", "masked", params.output_dir, req.masked_runs, params,
                          f"{data_dir}/{base}/{SPLIT}.jsonl"))
    for conf in confs:
        params = LabelingParams(output_dir=f"{out_dir}/synthetic-solutions/{conf.name}", dataset=conf.dataset,
                                examples_type=conf.examples_type, context_type=conf.context_type, **common)
        units.append(Unit(conf.name, "labeling", params.output_dir, runs_for(conf, req), params,
                          f"{data_dir}/{conf.dataset}/{SPLIT}.jsonl"))
    return units


def _selected(req: DatagenRequest) -> list[Configuration]:
    if not req.configurations:
        raise PlanError("param 'configurations' is empty")
    unknown = [c for c in req.configurations if c not in CONFIGURATIONS]
    if unknown:
        raise PlanError(f"param 'configurations': unknown {', '.join(unknown)} (known: {', '.join(CONFIGURATIONS)})")
    if len(set(req.configurations)) != len(req.configurations):
        raise PlanError("param 'configurations' lists a configuration twice")
    return [CONFIGURATIONS[c] for c in req.configurations]


def masked_bases(confs: Iterable[Configuration]) -> list[str]:
    """Base datasets whose masked version some configuration reads, in :data:`BASES` order."""
    wanted = {c.base for c in confs if c.masked}
    return [b for b in BASES if b in wanted]


def data_dir_for(req: DatagenRequest, out_dir: str) -> str:
    """Where the datasets go: the run's own folder, for both engines. Upstream generate_solutions
    is pointed at each file with ``++data_file`` (at 9b7f9d57 it would otherwise read
    ``<checkout>/datasets/<name>/<split>.jsonl``), so nothing is written into the shared checkout."""
    if req.engine == "nemo_skills" and not req.code_dir:
        raise PlanError("param 'code_dir' (the NeMo-Skills checkout on the cluster) is required for the "
                        "nemo_skills engine")
    return f"{out_dir}/data"


def build_plan(req: DatagenRequest, profile: ClusterProfile, out_dir: str) -> dict[str, Any]:
    """Every fixed job of the run as plain data; labeling arrays come later from :func:`pending_jobs`."""
    data_dir = data_dir_for(req, out_dir)
    confs = _selected(req)
    try:
        units = _units(req, profile, out_dir, data_dir)
        for unit in units:  # fail on a bad param now, not in the middle of the run
            build_unit_job(unit, list(range(unit.runs)), req.throttle, req.time_limit, profile)
    except RecipeError as exc:
        raise PlanError(str(exc)) from None
    bases = [b for b in BASES if any(c.base == b for c in confs)]
    masked = masked_bases(confs)
    collect_out = f"{out_dir}/correct_solutions.jsonl"
    sft_out = f"{out_dir}/sft-data.jsonl"
    prepare, mask = prepare_data_job(req, bases, data_dir, profile), mask_job(req, masked, data_dir, out_dir, profile)
    collect, sft = collect_job(req, confs, out_dir, collect_out, profile), sft_job(req, collect_out, sft_out, profile)
    planned = [planned_entry("prepare_data", prepare, inputs=[req.data] if req.data.startswith("/") else [],
                             outputs=[f"{data_dir}/{b}/{SPLIT}.jsonl" for b in bases])]
    labeling_outputs = []
    for stage, task_id in (("masked", "masked_labeling"), ("labeling", "labeling")):
        for unit in (u for u in units if u.stage == stage):
            built = labeling_array_job(unit.runs, req.throttle, unit.params, profile,
                                       opts=JobOptions(time=req.time_limit) if req.time_limit else JobOptions())
            planned.append({"task_id": task_id, "key": unit.name, "job": spec_dict(built.spec),
                            "inputs": list(built.inputs), "outputs": list(built.outputs), "dirs": list(built.dirs)})
            if stage == "labeling":
                labeling_outputs += list(built.outputs)
        if stage == "masked" and masked:
            planned.append(planned_entry(
                "mask", mask,
                inputs=[p for b in masked for p in [f"{data_dir}/{b}/{SPLIT}.jsonl",
                                                    *masked_run_files(out_dir, b, req.masked_runs)]],
                outputs=[f"{data_dir}/{b}-masked/{SPLIT}.jsonl" for b in masked]))
    planned += [planned_entry("collect", collect, inputs=labeling_outputs,
                              outputs=[collect_out, _stats_path(collect_out)]),
                planned_entry("sft_data", sft, inputs=[collect_out], outputs=[sft_out, _stats_path(sft_out)])]
    return {
        "planned": planned,
        "declared_inputs": engine_inputs(profile.model_path(req.model), req),
        "output_dir": out_dir,
        "data_dir": data_dir,
        "model": profile.model_path(req.model),
        "bases": bases,
        "masked_bases": masked,
        "runs": {u.name: u.runs for u in units},
        "units": [unit_summary(u) for u in units],
        "prepare": spec_dict(prepare),
        "mask": spec_dict(mask) if masked else {},
        "collect": spec_dict(collect),
        "sft": spec_dict(sft),
        "stats": {
            **{f"mask.{b}": f"{data_dir}/{b}-masked/{SPLIT}.stats.json" for b in masked},
            "collect": _stats_path(collect_out),
            "sft": _stats_path(sft_out),
        },
        "collect_output": collect_out,
        "sft_output": sft_out,
    }


def _stats_path(output: str) -> str:
    return output[: -len(".jsonl")] + ".stats.json"


def unit_summary(unit: Unit) -> dict[str, Any]:
    return {"name": unit.name, "stage": unit.stage, "output_dir": unit.output_dir, "runs": unit.runs,
            "data_file": unit.data_file, "dataset": unit.params.dataset, "examples_type": unit.params.examples_type,
            "context_type": unit.params.context_type}


def _job(name: str, command: str, req: DatagenRequest, profile: ClusterProfile):
    """A CPU step of the ``skillflow`` CLI, in the image that carries it (``nemo_skills``) on a
    profile with containers: on a pyxis cluster ``skillflow`` exists only inside the images."""
    from tasks.slurm.spec import JobSpec

    return JobSpec(name=name, command=command, time=req.time_limit or "01:00:00",
                   image=profile.image("nemo_skills"),
                   mounts=same_path_mounts(profile, profile.workdir, req.data if req.data.startswith("/") else None),
                   ).validate()


def prepare_data_job(req: DatagenRequest, bases: list[str], data_dir: str, profile: ClusterProfile):
    """``train_full`` of each base dataset into ``data_dir/<name>/train_full.jsonl``.

    ``data``: ``download`` fetches the upstream files, an absolute cluster folder laid out like
    the shared data (a mirror) is read with ``--source``, ``shared-sample`` copies the credited
    20-problem train samples shipped with skillflow. ``limit`` keeps the first N problems, in the
    file itself, so every later step (masking aligns runs with it by line) sees the same problems.
    """
    q = shlex.quote
    if req.data == "shared-sample":
        cmds = [f'"$SKILLFLOW_CLI" data samples --split {SPLIT} --out {q(data_dir)} ' + " ".join(q(b) for b in bases)]
    elif req.data == "download" or req.data.startswith("/"):
        source = "" if req.data == "download" else f" --source {q(req.data)}"
        cmds = [f'"$SKILLFLOW_CLI" data prepare {q(b)} --split {SPLIT} --out {q(data_dir)}{source}' for b in bases]
    else:
        raise PlanError(f"param 'data': {req.data!r} must be 'download', 'shared-sample' or an absolute folder on "
                        "the cluster")
    if req.limit:
        if req.limit < 1:
            raise PlanError("param 'limit' must be at least 1")
        for b in bases:
            path = q(f"{data_dir}/{b}/{SPLIT}.jsonl")
            tmp = q(f"{data_dir}/{b}/{SPLIT}.jsonl.tmp")
            cmds.append(f"head -n {int(req.limit)} {path} > {tmp} && mv -f {tmp} {path}")
    return _job("openmath-datagen-data", " && \\\n".join(cmds), req, profile)


def masked_run_files(out_dir: str, base: str, runs: int) -> list[str]:
    return [f"{out_dir}/masked-solutions/{base}/output-rs{s}.jsonl" for s in range(runs)]


def mask_job(req: DatagenRequest, bases: list[str], data_dir: str, out_dir: str, profile: ClusterProfile):
    """``sft-data mask`` per base dataset: ``<base>-masked/train_full.jsonl`` (+ ``.stats.json``)."""
    q = shlex.quote
    cmds = []
    for b in bases:
        runs = " ".join(q(p) for p in masked_run_files(out_dir, b, req.masked_runs))
        cmds.append(f'"$SKILLFLOW_CLI" sft-data mask --dataset-file {q(f"{data_dir}/{b}/{SPLIT}.jsonl")} '
                    f'--runs {runs} --output {q(f"{data_dir}/{b}-masked/{SPLIT}.jsonl")}')
    return _job("openmath-datagen-mask", " && \\\n".join(cmds) or "true", req, profile)


def collect_job(req: DatagenRequest, confs: list[Configuration], out_dir: str, output: str,
                profile: ClusterProfile):
    """``sft-data collect`` with one source per configuration (named after it, for per-configuration stats)."""
    q = shlex.quote
    sources = " ".join(f"--source {q(c.base)} {q(c.generation_type)} "
                       f"{q(f'{out_dir}/synthetic-solutions/{c.name}/output-rs*.jsonl')} {q(c.name)}"
                       for c in confs)
    return _job("openmath-datagen-collect", f'"$SKILLFLOW_CLI" sft-data collect {sources} --output {q(output)}', req,
                profile)


def sft_prepare_command(solutions: str, output: str, num_output_samples: int) -> str:
    """``sft-data prepare`` as the seed command: fair downsampling, any_code, trimmed solutions."""
    q = shlex.quote
    if num_output_samples < 1:
        raise PlanError("param 'num_output_samples' must be at least 1")
    return (f'"$SKILLFLOW_CLI" sft-data prepare --input {q(solutions)} --output {q(output)} '
            f"--downsampling-method fair --num-output-samples {int(num_output_samples)} "
            "--text-filter-type any_code --trim-solutions")


def sft_job(req: DatagenRequest, collected: str, output: str, profile: ClusterProfile):
    return _job("openmath-datagen-sft", sft_prepare_command(collected, output, req.num_output_samples), req, profile)


# ------------------------------------------------------------------------------ resubmission

def completion_command(units: list[dict[str, Any]], engine: str) -> str:
    """One shell command that prints ``DONE <unit> <seed>`` for every complete labeling output.

    Complete means graded: the last line carries ``is_correct`` (grading rewrites a file whole,
    so the last line has it only when every line has). For the native engine the ``.done``
    marker of ``skillflow generate`` must also exist; upstream NeMo-Skills writes no marker, so
    for it the output must have as many lines as the dataset file (docs/recipes/openmath.md §12.1: decide by the
    outputs, never by exit codes).
    """
    q = shlex.quote
    graded = "tail -n 1 \"$f\" | grep -q '\"is_correct\": '"
    parts = []
    for unit in units:
        name, out, runs = unit["name"], unit["output_dir"], int(unit["runs"])
        if engine == "native":
            check = f'[ -e "$f.done" ] && {graded}'
            head = ""
        else:
            check = f'[ -s "$f" ] && [ "$(grep -c \'\' "$f")" = "$n" ] && {graded}'
            head = f"n=$(grep -c '' {q(unit['data_file'])} 2>/dev/null || echo x); "
        parts.append(f"{head}for s in $(seq 0 {runs - 1}); do f={q(out)}/output-rs$s.jsonl; "
                     f"if {check}; then echo DONE {q(name)} $s; fi; done")
    return "; ".join(parts) if parts else "true"


def parse_completion(stdout: str) -> dict[str, set[int]]:
    done: dict[str, set[int]] = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "DONE" and words[2].isdigit():
            done.setdefault(words[1], set()).add(int(words[2]))
    return done


def build_unit_job(unit: Unit, seeds: list[int], throttle: int | None, time_limit: str | None,
                   profile: ClusterProfile) -> dict[str, Any]:
    """The array over ``seeds`` of one unit: ``--array=0-N`` when all run, else the explicit indices."""
    opts = JobOptions(time=time_limit) if time_limit else JobOptions()
    only = None if seeds == list(range(unit.runs)) else seeds
    job = labeling_array_job(unit.runs, throttle, unit.params, profile, opts=opts, only_seeds=only)
    return {"job": spec_dict(job.spec), "outputs": list(job.outputs), "dirs": list(job.dirs)}


def pending_jobs(req: DatagenRequest, profile: ClusterProfile, out_dir: str, stage: str,
                 done: dict[str, set[int]]) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Arrays to submit for ``stage`` (``masked`` or ``labeling``) given the complete seeds.

    Returns the SlurmJobOperator kwargs per array (``job``, ``expected_outputs``, ``create_dirs``)
    and the missing seeds per unit. Only the nemo_skills engine passes ``expected_outputs`` (its
    jobs end with an MPI error even when the work is done, docs/recipes/openmath.md §12.1); native
    exit codes are trusted. The array's output folder is created before ``sbatch``: a container
    runtime refuses to mount a folder that does not exist yet.
    """
    todo, missing = [], {}
    for unit in _units(req, profile, out_dir, data_dir_for(req, out_dir)):
        if unit.stage != stage:
            continue
        seeds = [s for s in range(unit.runs) if s not in done.get(unit.name, set())]
        missing[unit.name] = seeds
        if not seeds:
            continue
        built = build_unit_job(unit, seeds, req.throttle, req.time_limit, profile)
        todo.append({"job": built["job"], "create_dirs": built["dirs"],
                     "expected_outputs": built["outputs"] if req.engine == "nemo_skills" else []})
    return todo, missing


# ---------------------------------------------------------------------------------- report

def coverage_metrics(collect_stats: dict[str, Any]) -> dict[str, float]:
    """``coverage.dataset.<name>``, ``coverage.config.<name>`` and solution counts from the collect stats."""
    metrics: dict[str, float] = {"solutions.total": float(collect_stats.get("solutions", 0))}
    for name, block in (collect_stats.get("per_dataset") or {}).items():
        metrics[f"coverage.dataset.{name}"] = float(block["coverage"])
        metrics[f"solutions.dataset.{name}"] = float(block["solutions"])
        metrics[f"questions.dataset.{name}"] = float(block["questions"])
    for name, block in (collect_stats.get("per_source") or {}).items():
        metrics[f"coverage.config.{name}"] = float(block["coverage"])
        metrics[f"solutions.config.{name}"] = float(block["solutions"])
    return metrics
