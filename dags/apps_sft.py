"""apps_sft: the seed's APPS experiment -- OpenRLHF SFT, sampling, APPS evaluation, base vs SFT.

Steps, each a Slurm job on the cluster of the chosen profile: prepare the data (codeparrot/apps
files, or the 10 shipped MapCoder problems), optionally train with OpenRLHF 0.5.3 using every seed
flag (2 nodes x 4 GPUs), sample the base model and, when trained, the SFT checkpoint (10 samples
per problem, T=0.6, top-p 0.95, 2048 new tokens; vLLM on GPU clusters, llama.cpp on the local
profile), evaluate each with ``skillflow apps eval``. The report puts one MLflow run per model
side by side (pass@1/5/10 by difficulty as ``total.pass_at_1``...), the per-sample results as an
artifact, the seed-format comparison table in every run, and the samples zipped in S3.

**On the local profile** ``train`` = true runs a CPU SFT of SmolLM2-135M with Hugging Face's
Trainer instead of OpenRLHF + DeepSpeed: ``convert_base`` (GGUF -> HF), ``train``
(``tasks/sft/local_train.py`` with OpenRLHF's chat format over ``question``/``response``, 512
tokens, 5 steps of 2 examples, LR 2e-5: about a minute on 2 cores), ``export_sft`` (the final
weights as the HF folder that ``upload_sft`` uploads, and as a GGUF for llama.cpp). With ``data``
= ``mapcoder-sample`` it trains on the sample's 33 training problems (one solved MapCoder program
each; the 12 whose prompts fit in 512 tokens give 10 training and 2 validation examples), none
of them a test problem. It is a plumbing check of the whole SFT path, not a result. A profile with
neither GPUs nor ``paths.train_python`` refuses ``train`` at ``plan``, naming the param.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from operators.dag_steps import PROFILE_TEMPLATE, dag_params
from operators.slurm.operator import SlurmJobOperator
from operators.slurm.training import SlurmTrainingOperator

PARAMS = dag_params("apps_sft")


@dag(
    dag_id="apps_sft",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    params=PARAMS,
    render_template_as_native_obj=True,
    tags=["skillflow", "apps", "sft", "evaluation"],
    doc_md=__doc__,
)
def apps_sft():
    @task(multiple_outputs=True)
    def plan(params=None, dag_run=None) -> dict:
        from operators.apps.sft import make_plan

        return make_plan(dict(params), dag_run)

    @task(trigger_rule="none_failed")
    def report(plan: dict, convert: dict | None, train: dict | None, export: dict | None, upload_sft: dict | None,
               sample_base: dict | None, eval_base: dict | None, sample_sft: dict | None, eval_sft: dict | None,
               params=None) -> dict:
        from operators.apps.sft import report as do_report

        return do_report(plan, dict(params), {"convert": convert, "train": train, "export": export,
                                              "upload_sft": upload_sft, "sample_base": sample_base,
                                              "eval_base": eval_base, "sample_sft": sample_sft, "eval_sft": eval_sft})

    p = plan()
    common = dict(profile=PROFILE_TEMPLATE, poll_interval=None)
    prepare = SlurmJobOperator(task_id="prepare", job=p["prepare_job"], expected_outputs=p["prepare_outputs"],
                               **common)
    # The CPU stand-in's steps around training; skipped (no job) on GPU profiles, hence none_failed after them.
    convert = SlurmJobOperator(task_id="convert_base", job=p["convert_job"], **common)
    # Training curves reach the SFT model's MLflow run while training runs (TensorBoard files).
    # OpenRLHF jobs cut by their walltime continue from their last DeepSpeed checkpoint.
    train = SlurmTrainingOperator(task_id="train", job=p["train_job"], progress=p["train_progress"],
                                  max_jobs=p["train_max_jobs"],
                                  curves=p["train_curves"], trigger_rule="none_failed", **common)
    export = SlurmJobOperator(task_id="export_sft", job=p["export_job"], **common)
    upload_sft = SlurmJobOperator(task_id="upload_sft", job=p["upload_job"], trigger_rule="none_failed", **common)
    sample_base = SlurmJobOperator(task_id="sample_base", job=p["sample_base_job"],
                                   expected_outputs=p["sample_base_outputs"], **common)
    eval_base = SlurmJobOperator(task_id="eval_base", job=p["eval_base_job"],
                                 expected_outputs=p["eval_base_outputs"], **common)
    sample_sft = SlurmJobOperator(task_id="sample_sft", job=p["sample_sft_job"],
                                  expected_outputs=p["sample_sft_outputs"], trigger_rule="none_failed", **common)
    eval_sft = SlurmJobOperator(task_id="eval_sft", job=p["eval_sft_job"],
                                expected_outputs=p["eval_sft_outputs"], **common)
    prepare >> [convert, sample_base]
    sample_base >> eval_base
    convert >> train >> export >> [sample_sft, upload_sft]
    sample_sft >> eval_sft
    report(p["plan"], convert.output, train.output, export.output, upload_sft.output, sample_base.output,
           eval_base.output, sample_sft.output, eval_sft.output)


dag = apps_sft()
