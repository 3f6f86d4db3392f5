"""openmath_sft: fine-tune a base model on OpenMath SFT data the way the paper did, hand the result
to evaluation.

Steps, each a Slurm job on the cluster of the chosen profile: [download OpenMathInstruct-1
``correct_solutions`` and prepare the SFT data (fair downsampling to 1,024,000)] -> HF -> NeMo ->
NeMo-Aligner SFT with ``sft_config_codegen`` and the paper's per-model table (continuation jobs
resume from the last checkpoint until training is done; a signal before walltime makes each job
save) -> average of all saved checkpoints -> NeMo -> HF -> upload to S3 from the cluster with a
checksum manifest -> registration in MLflow's model registry with the lineage (data, base model,
hyper-parameters, Slurm job ids, GPU-hours) -> the Asset ``skillflow://openmath/sft-checkpoint``,
which starts ``openmath_eval`` on the new model. Loss, learning rate and the validation metric
reach MLflow while training runs.

**Data**: ``asset`` trains on the newest (or the triggering) ``skillflow://openmath/sft-data``
event of ``openmath_datagen``; an ``s3://`` URI or an absolute cluster path names a prepared SFT
jsonl; ``download`` fetches OpenMathInstruct-1 from the hub and prepares it.

**Scheduling**: the DAG is scheduled on the SFT-data Asset but created *paused*: training is
expensive, so it starts on new data only once someone unpauses it (with the form's defaults).

**The local profile** trains SmolLM2-135M on the CPU with Hugging Face transformers (a few real
optimisation steps; the training environment is ``.venv-train``): GGUF -> HF stands in for HF ->
NeMo, averaging of the kept HF checkpoints for NeMo's averaging, and HF -> GGUF for llama.cpp for
NeMo -> HF -> TensorRT-LLM.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from operators.assets import SFT_CHECKPOINT, SFT_DATA
from operators.dag_steps import PROFILE_TEMPLATE, dag_params
from operators.slurm.operator import SlurmJobOperator
from operators.slurm.training import SlurmTrainingOperator

PARAMS = dag_params("openmath_sft")


@dag(
    dag_id="openmath_sft",
    schedule=[SFT_DATA],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    is_paused_upon_creation=True,
    params=PARAMS,
    render_template_as_native_obj=True,
    tags=["skillflow", "openmath", "sft"],
    doc_md=__doc__,
)
def openmath_sft():
    @task(multiple_outputs=True, inlets=[SFT_DATA])
    def plan(params=None, dag_run=None, triggering_asset_events=None, inlet_events=None) -> dict:
        from operators.openmath.sft import make_plan

        return make_plan(dict(params), dag_run, triggering_asset_events, inlet_events)

    @task
    def stage_data(plan: dict, params=None) -> dict:
        from operators.openmath.sft import stage_data as stage

        return stage(plan, dict(params))

    # The data steps are skipped when data is given; that must not skip the publication.
    @task(outlets=[SFT_CHECKPOINT], trigger_rule="none_failed")
    def publish(plan: dict, train: dict, download: dict | None, prepare: dict | None, convert: dict,
                average: dict, export: dict, upload: dict, params=None, outlet_events=None) -> dict:
        from operators.openmath.sft import publish as do_publish

        results = {"download": download, "prepare": prepare, "convert": convert, "average": average,
                   "export": export, "upload": upload}
        return do_publish(plan, dict(params), train, results, outlet_events, SFT_CHECKPOINT)

    p = plan()
    staged = stage_data(p["plan"])
    common = dict(profile=PROFILE_TEMPLATE, poll_interval=None)
    download = SlurmJobOperator(task_id="download_data", job=p["download_job"], create_dirs=p["download_dirs"],
                                **common)
    # Also runs when the data is given (no download): on GPU profiles it writes the validation file.
    prepare = SlurmJobOperator(task_id="prepare_sft_data", job=p["prepare_job"], create_dirs=p["prepare_dirs"],
                               trigger_rule="none_failed", **common)
    # Runs after the data steps whether they ran (download) or were skipped (data given).
    convert = SlurmJobOperator(task_id="convert", job=p["convert_job"], create_dirs=p["convert_dirs"],
                               trigger_rule="none_failed", **common)
    train = SlurmTrainingOperator(task_id="train", job=p["train_job"], create_dirs=p["train_dirs"],
                                  progress=p["progress"], max_jobs=p["max_sft_jobs"], curves=p["curves"],
                                  curves_every_s="{{ params.curves_interval_s }}", **common)
    average = SlurmJobOperator(task_id="average_checkpoints", job=p["average_job"], create_dirs=p["average_dirs"],
                               **common)
    export = SlurmJobOperator(task_id="export", job=p["export_job"], create_dirs=p["export_dirs"], **common)
    upload = SlurmJobOperator(task_id="upload_checkpoint", job=p["upload_job"], create_dirs=p["upload_dirs"],
                              **common)
    staged >> download >> prepare >> convert >> train >> average >> export >> upload
    published = publish(p["plan"], train.output, download.output, prepare.output, convert.output, average.output,
                        export.output, upload.output)
    upload >> published


dag = openmath_sft()
