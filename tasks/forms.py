"""The form of every DAG, declared once: each param's name, JSON-schema type, default, UI section,
description and constraints (enum, pattern, bounds).

The DAG files build their Airflow ``Param``s from these declarations
(:func:`operators.dag_steps.dag_params`), and the plan modules' ``*Request.from_params`` read
their defaults from them and refuse a key the form does not declare, naming it and listing the
valid ones. A default therefore exists in one place, and a misspelt param in a run's conf fails
the run instead of silently falling back to a default.

Plain Python with no imports beyond the standard library: every DAG file imports this module at
parse time.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from tasks.slurm.durations import FORM_TIME_PATTERN


class PlanError(ValueError):
    """A param (or param combination) that cannot run; the message names the param."""


@dataclass(frozen=True)
class Field:
    """One param of a DAG's form; ``schema`` holds the JSON-schema constraints besides the type."""

    name: str
    default: Any
    type: str | tuple[str, ...]
    section: str | None = None
    description: str | None = None
    schema: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def param_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of Airflow's ``Param`` besides the default."""
        kwargs: dict[str, Any] = {"type": list(self.type) if isinstance(self.type, tuple) else self.type,
                                  **copy.deepcopy(dict(self.schema))}
        if self.section is not None:
            kwargs["section"] = self.section
        if self.description is not None:
            kwargs["description"] = self.description
        return kwargs


@dataclass(frozen=True)
class Form:
    """A DAG's params in the order the UI shows them."""

    dag_id: str
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # a declaration bug, caught when the module is imported
            raise ValueError(f"form of {self.dag_id} declares {', '.join(twice)} twice")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"form of {self.dag_id} has no param {name!r}")

    def default(self, name: str) -> Any:
        """A fresh copy of one param's default (lists and dicts are never shared)."""
        return copy.deepcopy(self.field(name).default)

    def defaults(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(f.default) for f in self.fields}

    def dataclass_default(self, name: str) -> Any:
        """A request dataclass field whose default is this form's (a factory, so lists are fresh)."""
        value = self.field(name).default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))

    def check(self, params: Iterable[str], where: str = "conf") -> None:
        """Refuse any key this form does not declare, naming it and listing the valid ones."""
        unknown = sorted(set(params) - set(self.names))
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            raise PlanError(f"{self.dag_id}: the {where} names unknown param(s) {names} "
                            f"(valid: {', '.join(self.names)})")

    def request(self, cls: type, params: Mapping[str, Any], drop_none: bool = False) -> Any:
        """``cls`` (a request dataclass whose fields are params of this form) built from ``params``
        after :meth:`check`; ``drop_none`` leaves empty (None) values to the dataclass default."""
        self.check(params)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in known and not (drop_none and v is None)})


# ------------------------------------------------------------------ params every DAG shares

PROFILE_DESCRIPTION = ("Cluster profile: a built-in name or a YAML file on the Airflow workers; empty = "
                       "the deployment's ($SKILLFLOW_PROFILE of the workers, else local).")


def profile_field(section: str | None = None) -> Field:
    """The ``profile`` param. Its default is empty, not a profile name: an empty value is resolved
    on the worker that runs the step, to ``$SKILLFLOW_PROFILE`` (what a deployment such as
    docker/compose.yaml sets) or else ``local``. A default naming a profile would override the
    deployment's for every scheduled or asset-triggered run, which nobody fills in a form for."""
    return Field("profile", "", ("null", "string"), section, PROFILE_DESCRIPTION)


def time_limit_field(description: str, section: str = "Cluster") -> Field:
    return Field("time_limit", None, ("null", "string"), section, description, {"pattern": FORM_TIME_PATTERN})


def experiment_field(default: str, description: str = "MLflow experiment.", section: str | None = "Tracking") -> Field:
    return Field("experiment", default, "string", section, description, {"minLength": 1, "maxLength": 250})


def _f(name: str, default: Any, type_: str | tuple[str, ...], section: str | None = None,
       description: str | None = None, **schema: Any) -> Field:
    return Field(name, default, type_, section, description, schema)


_INT_OR_NULL = ("null", "integer")
_STR_OR_NULL = ("null", "string")

# ------------------------------------------------------------------ openmath_eval

# The seed document's eight benchmarks; greedy on all, 50 samples on GSM8K and MATH.
BENCHMARKS: tuple[str, ...] = ("gsm8k", "asdiv", "gsm-hard", "mawps", "svamp", "tabmwp", "algebra222", "math")
SAMPLING_BENCHMARKS: tuple[str, ...] = ("gsm8k", "math")
DEFAULT_BENCHMARKS = [f"{b}:{50 if b in SAMPLING_BENCHMARKS else 0}" for b in BENCHMARKS]
BENCH_PATTERN = r"^(" + "|".join(BENCHMARKS) + r"):[0-9]{1,4}$"

def _model_section(model: str, num_gpus: str, code_dir: str) -> tuple[Field, ...]:
    """The ``Model`` section of the two DAGs that serve a model (eval and datagen)."""
    return (
        _f("model", "smollm2", "string", "Model", model, minLength=1),
        _f("engine", "native", "string", "Model",
           "native: `skillflow generate` against an OpenAI-compatible server; "
           "nemo_skills: the upstream NeMo-Skills commands in the pinned images.", enum=["native", "nemo_skills"]),
        _f("server", "auto", "string", "Model",
           "auto: TensorRT-LLM for nemo_skills, vLLM on GPU clusters, llama.cpp locally.",
           enum=["auto", "tensorrt_llm", "vllm", "llama_cpp"]),
        _f("num_gpus", 1, "integer", "Model", num_gpus, minimum=1, maximum=64),
        _f("code_dir", None, _STR_OR_NULL, "Model", code_dir),
    )


EVAL = Form("openmath_eval", (
    *_model_section("Model on the cluster: an HF folder (TensorRT-LLM / vLLM), a GGUF file "
                    "(llama.cpp), or a name from the cluster profile's `models` (e.g. smollm2).",
                    "GPUs per server = tensor parallel size (the seed used 8).",
                    "NeMo-Skills checkout on the cluster (nemo_skills engine only)."),
    _f("benchmarks", DEFAULT_BENCHMARKS, "array", "Benchmarks",
       "NAME:SAMPLES. Greedy always runs; SAMPLES > 0 adds majority@SAMPLES.",
       minItems=1, uniqueItems=True, items={"type": "string", "pattern": BENCH_PATTERN}),
    _f("split", "test", "string", "Benchmarks", enum=["test", "validation", "train", "train_full"]),
    _f("data", "download", "string", "Benchmarks",
       "samples (the 20-problem samples shipped with skillflow), download, or an "
       "absolute folder on the cluster holding the upstream files (a mirror).", minLength=1),
    _f("limit", None, _INT_OR_NULL, "Benchmarks", "Only the first N problems of each benchmark (smoke runs).",
       minimum=1),
    _f("seed_chunk_size", 10, "integer", "Generation",
       "Sampling seeds per Slurm job; a resubmission skips finished chunks.", minimum=1, maximum=50),
    _f("batch_size", None, _INT_OR_NULL, "Generation",
       "Requests in flight. Empty = the seed's: 16 for models of 34B+ parameters "
       "(size read from the model's name), 64 otherwise.", minimum=1, maximum=1024),
    _f("max_code_executions", 6, "integer", "Generation", minimum=0, maximum=20),
    _f("stop_on_code_error", False, "boolean", "Generation", "The seed continues after a code error (False)."),
    time_limit_field("Slurm walltime per job (default: the profile's)."),
    profile_field("Cluster"),
    experiment_field("openmath-eval"),
    _f("mlflow_tags", {}, "object", "Tracking",
       "Extra tags on the MLflow run (openmath_nightly marks its runs here).",
       additionalProperties={"type": "string"}),
))

# ------------------------------------------------------------------ openmath_datagen

DATAGEN_BASES = ("gsm8k", "math")
MATH_SUBJECTS = ("algebra", "probability", "prealgebra", "number_theory", "geometry", "precalculus",
                 "intermediate_algebra")
# The seed document's labeling configurations (each base with and without a masked solution as
# context, then the MATH subject example sets with each context).
DATAGEN_CONFIGURATIONS = ([c for b in DATAGEN_BASES for c in (b, f"{b}-masked")]
                          + [f"math-{s}" for s in MATH_SUBJECTS] + [f"math-masked-{s}" for s in MATH_SUBJECTS])
SEED_MASKED_RUNS = 32
SEED_NUM_OUTPUT_SAMPLES = 1_024_000

DATAGEN = Form("openmath_datagen", (
    *_model_section("Generator on the cluster (the paper: Mixtral-8x7B base, as a TensorRT-LLM engine "
                    "for nemo_skills or an HF folder for vLLM), a GGUF file (llama.cpp), or a name "
                    "from the cluster profile's `models` (e.g. smollm2).",
                    "GPUs per array element = tensor parallel size (the seed used 8).",
                    "NeMo-Skills checkout on the cluster (nemo_skills engine only); its datasets/ "
                    "folder receives the prepared and masked datasets."),
    _f("configurations", DATAGEN_CONFIGURATIONS, "array", "Labeling",
       "Labeling configurations; masked ones also run the masked-solution step.",
       minItems=1, uniqueItems=True, items={"type": "string", "enum": DATAGEN_CONFIGURATIONS}),
    _f("num_runs", None, _INT_OR_NULL, "Labeling",
       "Runs (seeds) for every configuration. Empty: the seed's counts "
       "(gsm8k 128, math 224, subject sets 32) times runs_scale.", minimum=1, maximum=1000),
    _f("runs_scale", 1.0, "number", "Labeling",
       "Scales the seed's run counts (rounded up) when num_runs is empty.", exclusiveMinimum=0, maximum=1),
    _f("masked_runs", SEED_MASKED_RUNS, "integer", "Labeling",
       "Masked-solution runs per base dataset (the seed used 32).", minimum=1, maximum=1000),
    _f("throttle", 16, _INT_OR_NULL, "Labeling",
       "Array elements running at once per configuration (--array=...%N).", minimum=1, maximum=1000),
    _f("num_output_samples", SEED_NUM_OUTPUT_SAMPLES, "integer", "Labeling",
       "Fair downsampling target of the SFT data (the seed: 1,024,000).", minimum=1),
    _f("data", "download", "string", "Data",
       "download, shared-sample (the credited 20-problem train samples shipped with "
       "skillflow), or an absolute folder on the cluster laid out like the shared data "
       "(gsm8k/train.jsonl, math/MATH_train.tar.gz).", minLength=1),
    _f("limit", None, _INT_OR_NULL, "Data", "Only the first N problems of each train_full (smoke runs).", minimum=1),
    time_limit_field("Slurm walltime per job (default: 1 h CPU steps, the profile's default for arrays)."),
    profile_field("Cluster"),
    experiment_field("openmath-datagen"),
))

# ------------------------------------------------------------------ openmath_sft

# Rows of the paper's per-model table (tasks.openmath.steps.SFT_TABLE), the local CPU stand-in, custom.
SFT_BASE_MODELS = ["Mistral-7B", "CodeLlama-7B", "CodeLlama-13B", "CodeLlama-34B", "Llama2-70B", "CodeLlama-70B",
                   "smollm2", "custom"]
_SFT_TABLE_TEXT = ("Mistral-7B: 4 epochs, LR 1e-6, 8x8 GPUs, TP 4 | CodeLlama-7B/13B: 4, 2e-5, 8x8, TP 4 | "
                   "CodeLlama-34B: 4, 1e-5, 16x8, TP 8 | Llama2-70B: 2, 1e-5, 32x8, TP 8 PP 2 | "
                   "CodeLlama-70B: 3, 1e-5, 32x8, TP 8 PP 2")
_FROM_TABLE = "Empty = the per-model table (" + _SFT_TABLE_TEXT + ")."

SFT = Form("openmath_sft", (
    _f("base_model", "smollm2", "string", "Model",
       "A row of the paper's table, `smollm2` (the local profile's CPU stand-in), or "
       "`custom` (then give model_path, hf_model_name, epochs, lr, num_nodes, "
       "gpus_per_node, tp and pp).", enum=SFT_BASE_MODELS),
    _f("model_path", None, _STR_OR_NULL, "Model",
       "The base model's HF folder on the cluster (GGUF file on the local profile; "
       "empty = the profile's `smollm2`)."),
    _f("hf_model_name", None, _STR_OR_NULL, "Model",
       "Hub id of the architecture for NeMo conversion; empty = the table's."),
    _f("code_dir", None, _STR_OR_NULL, "Model",
       "The NeMo-Skills checkout (main@9b7f9d57) on the cluster; required on GPU profiles."),
    _f("data", "asset", "string", "Data",
       "`asset` (newest openmath_datagen SFT data), an s3:// URI or an absolute cluster path "
       "of a prepared SFT jsonl, or `download` (OpenMathInstruct-1 correct_solutions).", minLength=1),
    _f("omi1_revision", "main", "string", "Data",
       "Hub revision of nvidia/OpenMathInstruct-1 for `download` (pin a commit).", minLength=1),
    _f("num_output_samples", SEED_NUM_OUTPUT_SAMPLES, "integer", "Data",
       "Fair downsampling target of the SFT data prep (`download`).", minimum=1),
    _f("epochs", None, _INT_OR_NULL, "Training", _FROM_TABLE, minimum=1, maximum=100),
    _f("lr", None, _STR_OR_NULL, "Training", _FROM_TABLE, pattern=r"^[0-9.]+(e-?[0-9]+)?$"),
    _f("num_nodes", None, _INT_OR_NULL, "Training", _FROM_TABLE, minimum=1, maximum=512),
    _f("gpus_per_node", None, _INT_OR_NULL, "Training", "Empty = the profile's (8 on the paper's nodes).",
       minimum=1, maximum=16),
    _f("tp", None, _INT_OR_NULL, "Training", _FROM_TABLE, minimum=1, maximum=64),
    _f("pp", None, _INT_OR_NULL, "Training", _FROM_TABLE, minimum=1, maximum=64),
    _f("global_batch_size", None, _INT_OR_NULL, "Training",
       "Empty = 128 (sft_config_codegen); 2 on the local profile.", minimum=1),
    _f("micro_batch_size", None, _INT_OR_NULL, "Training", "Empty = 1 (2 on the local profile).", minimum=1),
    _f("max_seq_length", None, _INT_OR_NULL, "Training", "Empty = 4096; 256 on the local profile.", minimum=16),
    _f("val_check_interval", None, _INT_OR_NULL, "Training",
       "Validate and save every N steps. Empty = 4000 (2 per epoch of 1.024M "
       "examples); 4 on the local profile.", minimum=1),
    _f("save_top_k", None, _INT_OR_NULL, "Training",
       "Checkpoints kept by the validation metric, all averaged. Empty = 8; 2 locally.", minimum=1),
    _f("max_steps", None, _INT_OR_NULL, "Training", "Stop after N steps (smoke runs); empty = the epochs.",
       minimum=1),
    time_limit_field("Walltime of each training job; empty = the profile's maximum. Training longer "
                     "than this continues in further jobs."),
    _f("max_sft_jobs", 20, "integer", "Cluster", "At most this many chained training jobs.", minimum=1, maximum=500),
    _f("curves_interval_s", 300, "integer", "Tracking",
       "How often training curves are copied to MLflow while a job runs.", minimum=10, maximum=86400),
    _f("registered_model", None, _STR_OR_NULL, "Tracking",
       "MLflow registered model name; empty = openmath-sft-<base_model>."),
    _f("registry_alias", None, _STR_OR_NULL, "Tracking",
       "Set this alias on the new version (openmath_nightly re-evaluates versions with its alias).",
       pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"),
    _f("eval", {}, "object", "Evaluation",
       "openmath_eval params for the evaluation the new checkpoint starts (e.g. "
       '{"benchmarks": ["gsm8k:0"], "limit": 50}); empty = its defaults.'),
    profile_field("Cluster"),
    experiment_field("openmath-sft", "MLflow experiment of the training run."),
))

# ------------------------------------------------------------------ apps_sft

APPS_SAMPLE_DATA = "mapcoder-sample"

APPS_SFT = Form("apps_sft", (
    _f("model", None, _STR_OR_NULL, "Model",
       "Base model: empty = the seed's deepseek-ai/deepseek-coder-6.7b-instruct on GPU "
       "profiles and `smollm2` on the local profile. A cluster path (HF folder for vLLM "
       "and training, GGUF file for llama.cpp), a profile alias, or (sampling only) a hub "
       "name.", minLength=1),
    _f("data", APPS_SAMPLE_DATA, "string", "Data",
       "`mapcoder-sample` (10 APPS test problems shipped with skillflow, plus 33 other "
       "problems with a solved MapCoder program each that the local profile's CPU SFT trains "
       "on), or an absolute cluster folder holding codeparrot/apps train.jsonl and "
       "test.jsonl.", minLength=1),
    _f("limit", None, _INT_OR_NULL, "Data", "Only the first N test problems (smoke runs); empty = all.", minimum=1),
    _f("train", False, "boolean", "Training",
       "Run the seed's OpenRLHF SFT and compare the SFT model with the base model. On "
       "the local profile: a CPU SFT of SmolLM2 with Hugging Face's Trainer (5 steps, 512 "
       "tokens, about a minute) instead of OpenRLHF + DeepSpeed, a plumbing check, not a "
       "result."),
    _f("num_nodes", 2, "integer", "Training", "Training nodes (the seed: 2).", minimum=1, maximum=64),
    _f("gpus_per_node", 4, "integer", "Training", "GPUs per training node (the seed: 4).", minimum=1, maximum=16),
    _f("sampling_gpus", 4, "integer", "Sampling", "GPUs of the vLLM server = tensor parallel size (the seed: 4).",
       minimum=1, maximum=16),
    _f("n_samples", 10, "integer", "Sampling",
       "Samples per problem (the seed: 10). Below 10, pass@10 is reported as "
       "unavailable, not estimated.", minimum=1, maximum=200),
    _f("max_tokens", 2048, "integer", "Sampling", "New tokens per sample (the seed: 2048).", minimum=1, maximum=16384),
    _f("concurrency", 64, "integer", "Sampling", "Requests in flight to the model server.", minimum=1, maximum=1024),
    _f("eval_cpus", None, _INT_OR_NULL, "Evaluation",
       "CPUs of each evaluation job = sandbox workers; empty = 32 (the seed) on GPU "
       "profiles, all cores of the node locally.", minimum=1, maximum=512),
    time_limit_field("Slurm walltime per job (default: the profile's; training defaults to the profile's maximum)."),
    _f("max_train_jobs", 6, "integer", "Cluster",
       "OpenRLHF training jobs in the chain: a job cut by its walltime is followed "
       "by one that resumes from the last DeepSpeed checkpoint (the seed's run "
       "took ~10.3 h on 8 A100s).", minimum=1, maximum=100),
    profile_field("Cluster"),
    experiment_field("apps-sft", "MLflow experiment; each model gets its own run in it."),
))

# ------------------------------------------------------------------ the DAGs without a plan

NIGHTLY = Form("openmath_nightly", (
    _f("alias", "nightly", "string", None, "MLflow registry alias to evaluate.", minLength=1),
    _f("alpha", 0.05, "number", None, "Significance level of the regression tests, Holm-corrected per model.",
       exclusiveMinimum=0, maximum=0.5),
    _f("min_effect", 1.0, "number", None, "A significant drop counts only when larger than this, in points.",
       minimum=0, maximum=100),
    _f("eval_params", {"engine": "native", "benchmarks": ["gsm8k:0", "math:0"]}, "object", None,
       "Params passed to openmath_eval for every model."),
    experiment_field("openmath-nightly", "MLflow experiment of the comparison run.", section=None),
    profile_field(),
))

CLUSTER_CHECK = Form("cluster_check", (
    profile_field(),
    experiment_field("cluster-check", "MLflow experiment the table is logged to.", section=None),
))

DEMO = Form("skillflow_demo", (
    _f("n", 1_000_000, "integer", None, "Terms of the series the Slurm job sums.", minimum=1, maximum=100_000_000),
    experiment_field("skillflow-demo", "MLflow experiment the run is logged to.", section=None),
    profile_field(),
))

FORMS: dict[str, Form] = {f.dag_id: f for f in (EVAL, DATAGEN, SFT, APPS_SFT, NIGHTLY, CLUSTER_CHECK, DEMO)}


def form_of(dag_id: str) -> Form:
    if dag_id not in FORMS:
        raise KeyError(f"no declared form for DAG {dag_id!r} (forms: {', '.join(FORMS)})")
    return FORMS[dag_id]
