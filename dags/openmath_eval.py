"""openmath_eval: evaluate a math model the way the OpenMathInstruct-1 paper did.

Greedy decoding with code execution on eight benchmarks, 50-sample majority voting on GSM8K and
MATH (in seed chunks that resume), grading with our grader, NeMo-Skills' summary table, and one
MLflow run holding the form, the metrics per benchmark and mode, the summary table and the
predictions zip (stored in S3, its SHA-256 logged). Every GPU step is a Slurm job on the cluster
of the chosen profile. Triggered from the UI or by ``openmath_nightly`` and ``openmath_sft``.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from operators.assets import SFT_CHECKPOINT
from operators.dag_steps import PROFILE_TEMPLATE, dag_params
from operators.slurm.operator import SlurmJobOperator

PARAMS = dag_params("openmath_eval")


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
