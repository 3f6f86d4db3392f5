"""openmath_eval: evaluate a math model the way the OpenMathInstruct-1 paper did.

Greedy decoding with code execution on eight benchmarks, 50-sample majority voting on GSM8K and
MATH (in seed chunks that resume), grading with our grader, NeMo-Skills' summary table, and one
MLflow run holding the form, the metrics per benchmark and mode, the summary table and the
predictions zip (stored in S3, its SHA-256 logged). Every GPU step is a Slurm job on the cluster
of the chosen profile. Triggered from the UI or by ``openmath_nightly`` and ``openmath_sft``.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from operators.assets import SFT_CHECKPOINT

from operators.dag_steps import PROFILE_TEMPLATE, profile_param
from operators.slurm.operator import SlurmJobOperator

DEFAULT_BENCHMARKS = ["gsm8k:50", "asdiv:0", "gsm-hard:0", "mawps:0", "svamp:0", "tabmwp:0", "algebra222:0", "math:50"]
BENCH_PATTERN = r"^(gsm8k|asdiv|gsm-hard|mawps|svamp|tabmwp|algebra222|math):[0-9]{1,4}$"

PARAMS = {
    "model": Param("smollm2", type="string", minLength=1, section="Model",
                   description="Model on the cluster: an HF folder (TensorRT-LLM / vLLM), a GGUF file "
                               "(llama.cpp), or a name from the cluster profile's `models` (e.g. smollm2)."),
    "engine": Param("native", type="string", enum=["native", "nemo_skills"], section="Model",
                    description="native: `skillflow generate` against an OpenAI-compatible server; "
                                "nemo_skills: the upstream NeMo-Skills commands in the pinned images."),
    "server": Param("auto", type="string", enum=["auto", "tensorrt_llm", "vllm", "llama_cpp"], section="Model",
                    description="auto: TensorRT-LLM for nemo_skills, vLLM on GPU clusters, llama.cpp locally."),
    "num_gpus": Param(1, type="integer", minimum=1, maximum=64, section="Model",
                      description="GPUs per server = tensor parallel size (the seed used 8)."),
    "code_dir": Param(None, type=["null", "string"], section="Model",
                      description="NeMo-Skills checkout on the cluster (nemo_skills engine only)."),
    "benchmarks": Param(DEFAULT_BENCHMARKS, type="array", minItems=1, uniqueItems=True, section="Benchmarks",
                        items={"type": "string", "pattern": BENCH_PATTERN},
                        description="NAME:SAMPLES. Greedy always runs; SAMPLES > 0 adds majority@SAMPLES."),
    "split": Param("test", type="string", enum=["test", "validation", "train", "train_full"], section="Benchmarks"),
    "data": Param("download", type="string", minLength=1, section="Benchmarks",
                  description="samples (the 20-problem samples shipped with skillflow), download, or an "
                              "absolute folder on the cluster holding the upstream files (a mirror)."),
    "limit": Param(None, type=["null", "integer"], minimum=1, section="Benchmarks",
                   description="Only the first N problems of each benchmark (smoke runs)."),
    "seed_chunk_size": Param(10, type="integer", minimum=1, maximum=50, section="Generation",
                             description="Sampling seeds per Slurm job; a resubmission skips finished chunks."),
    "batch_size": Param(None, type=["null", "integer"], minimum=1, maximum=1024, section="Generation",
                        description="Requests in flight. Empty = the seed's: 16 for models of 34B+ parameters "
                                    "(size read from the model's name), 64 otherwise."),
    "max_code_executions": Param(6, type="integer", minimum=0, maximum=20, section="Generation"),
    "stop_on_code_error": Param(False, type="boolean", section="Generation",
                                description="The seed continues after a code error (False)."),
    "time_limit": Param(None, type=["null", "string"], pattern=r"^([0-9]+-)?[0-9]{1,2}:[0-9]{2}:[0-9]{2}$",
                        section="Cluster", description="Slurm walltime per job (default: the profile's)."),
    "profile": profile_param(section="Cluster"),
    "experiment": Param("openmath-eval", type="string", minLength=1, maxLength=250, section="Tracking",
                        description="MLflow experiment."),
    "mlflow_tags": Param({}, type="object", additionalProperties={"type": "string"}, section="Tracking",
                         description="Extra tags on the MLflow run (openmath_nightly marks its runs here)."),
}


@dag(
    dag_id="openmath_eval",
    # A new checkpoint from openmath_sft starts an evaluation of it (model and params from the event).
    schedule=[SFT_CHECKPOINT],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    params=PARAMS,
    render_template_as_native_obj=True,
    tags=["skillflow", "openmath", "evaluation"],
    doc_md=__doc__,
)
def openmath_eval():
    @task(multiple_outputs=True)
    def plan(params=None, dag_run=None, dag=None, triggering_asset_events=None) -> dict:
        from operators.openmath.evaluation import make_plan, params_for_checkpoint

        return make_plan(params_for_checkpoint(dict(params), triggering_asset_events, dag), dag_run)

    @task
    def check_model(plan: dict, params=None) -> str:
        from operators.openmath.evaluation import check_model as check

        return check(plan, dict(params))

    # Runs after prepare_data even when build_engine was skipped (no TensorRT-LLM engine needed).
    @task(trigger_rule="none_failed")
    def pending_greedy(greedy: list, params=None) -> list:
        from operators.openmath.evaluation import pending_greedy as pending

        return pending(greedy, dict(params))

    @task(trigger_rule="none_failed")
    def pending_chunks(chunks: list, params=None) -> list:
        from operators.openmath.evaluation import pending_chunks as pending

        return pending(chunks, dict(params))

    @task(trigger_rule="none_failed")
    def report(plan: dict, prepare: dict, engine: dict | None, greedy: list | None, sampling: list | None,
               summary: dict, params=None) -> dict:
        from operators.openmath.evaluation import report as do_report

        jobs = [prepare, engine, summary, *list(greedy or []), *list(sampling or [])]
        return do_report(plan, dict(params), [j for j in jobs if j])

    p = plan()
    checked = check_model(p["plan"])
    common = dict(profile=PROFILE_TEMPLATE, poll_interval=None)
    prepare = SlurmJobOperator(task_id="prepare_data", job=p["prepare_job"], **common)
    engine = SlurmJobOperator(task_id="build_engine", job=p["engine_job"], **common)
    # One job per benchmark; a rerun submits only the benchmarks whose output is not done.
    greedy_todo = pending_greedy(p["greedy"])
    greedy = SlurmJobOperator.partial(task_id="greedy", trigger_rule="none_failed", **common).expand_kwargs(greedy_todo)
    todo = pending_chunks(p["chunks"])
    sampling = SlurmJobOperator.partial(task_id="sampling", trigger_rule="none_failed", **common).expand(job=todo)
    summary = SlurmJobOperator(task_id="summarize", job=p["summarize_job"], trigger_rule="none_failed", **common)
    checked >> [prepare, engine]
    [prepare, engine] >> greedy_todo
    [prepare, engine] >> todo
    [greedy, sampling] >> summary
    report(p["plan"], prepare.output, engine.output, greedy.output, sampling.output, summary.output)


dag = openmath_eval()
