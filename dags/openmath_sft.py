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
from airflow.sdk import Param, dag, task

from operators.assets import SFT_CHECKPOINT, SFT_DATA
from operators.dag_steps import PROFILE_TEMPLATE, profile_param
from operators.slurm.operator import SlurmJobOperator
from operators.slurm.training import SlurmTrainingOperator

TABLE = ("Mistral-7B: 4 epochs, LR 1e-6, 8x8 GPUs, TP 4 | CodeLlama-7B/13B: 4, 2e-5, 8x8, TP 4 | "
         "CodeLlama-34B: 4, 1e-5, 16x8, TP 8 | Llama2-70B: 2, 1e-5, 32x8, TP 8 PP 2 | "
         "CodeLlama-70B: 3, 1e-5, 32x8, TP 8 PP 2")
FROM_TABLE = "Empty = the per-model table (" + TABLE + ")."

PARAMS = {
    "base_model": Param("smollm2", type="string",
                        enum=["Mistral-7B", "CodeLlama-7B", "CodeLlama-13B", "CodeLlama-34B", "Llama2-70B",
                              "CodeLlama-70B", "smollm2", "custom"], section="Model",
                        description="A row of the paper's table, `smollm2` (the local profile's CPU stand-in), or "
                                    "`custom` (then give model_path, hf_model_name, epochs, lr, num_nodes, "
                                    "gpus_per_node, tp and pp)."),
    "model_path": Param(None, type=["null", "string"], section="Model",
                        description="The base model's HF folder on the cluster (GGUF file on the local profile; "
                                    "empty = the profile's `smollm2`)."),
    "hf_model_name": Param(None, type=["null", "string"], section="Model",
                           description="Hub id of the architecture for NeMo conversion; empty = the table's."),
    "code_dir": Param(None, type=["null", "string"], section="Model",
                      description="The NeMo-Skills checkout (main@9b7f9d57) on the cluster; required on GPU "
                                  "profiles."),
    "data": Param("asset", type="string", minLength=1, section="Data",
                  description="`asset` (newest openmath_datagen SFT data), an s3:// URI or an absolute cluster path "
                              "of a prepared SFT jsonl, or `download` (OpenMathInstruct-1 correct_solutions)."),
    "omi1_revision": Param("main", type="string", minLength=1, section="Data",
                           description="Hub revision of nvidia/OpenMathInstruct-1 for `download` (pin a commit)."),
    "num_output_samples": Param(1024000, type="integer", minimum=1, section="Data",
                                description="Fair downsampling target of the SFT data prep (`download`)."),
    "epochs": Param(None, type=["null", "integer"], minimum=1, maximum=100, section="Training", description=FROM_TABLE),
    "lr": Param(None, type=["null", "string"], pattern=r"^[0-9.]+(e-?[0-9]+)?$", section="Training",
                description=FROM_TABLE),
    "num_nodes": Param(None, type=["null", "integer"], minimum=1, maximum=512, section="Training",
                       description=FROM_TABLE),
    "gpus_per_node": Param(None, type=["null", "integer"], minimum=1, maximum=16, section="Training",
                           description="Empty = the profile's (8 on the paper's nodes)."),
    "tp": Param(None, type=["null", "integer"], minimum=1, maximum=64, section="Training", description=FROM_TABLE),
    "pp": Param(None, type=["null", "integer"], minimum=1, maximum=64, section="Training", description=FROM_TABLE),
    "global_batch_size": Param(None, type=["null", "integer"], minimum=1, section="Training",
                               description="Empty = 128 (sft_config_codegen); 2 on the local profile."),
    "micro_batch_size": Param(None, type=["null", "integer"], minimum=1, section="Training",
                              description="Empty = 1 (2 on the local profile)."),
    "max_seq_length": Param(None, type=["null", "integer"], minimum=16, section="Training",
                            description="Empty = 4096; 256 on the local profile."),
    "val_check_interval": Param(None, type=["null", "integer"], minimum=1, section="Training",
                                description="Validate and save every N steps. Empty = 4000 (2 per epoch of 1.024M "
                                            "examples); 4 on the local profile."),
    "save_top_k": Param(None, type=["null", "integer"], minimum=1, section="Training",
                        description="Checkpoints kept by the validation metric, all averaged. Empty = 8; 2 locally."),
    "max_steps": Param(None, type=["null", "integer"], minimum=1, section="Training",
                       description="Stop after N steps (smoke runs); empty = the epochs."),
    "time_limit": Param(None, type=["null", "string"], pattern=r"^([0-9]+-)?[0-9]{1,2}:[0-9]{2}:[0-9]{2}$",
                        section="Cluster",
                        description="Walltime of each training job; empty = the profile's maximum. Training longer "
                                    "than this continues in further jobs."),
    "max_sft_jobs": Param(20, type="integer", minimum=1, maximum=500, section="Cluster",
                          description="At most this many chained training jobs."),
    "curves_interval_s": Param(300, type="integer", minimum=10, maximum=86400, section="Tracking",
                               description="How often training curves are copied to MLflow while a job runs."),
    "registered_model": Param(None, type=["null", "string"], section="Tracking",
                              description="MLflow registered model name; empty = openmath-sft-<base_model>."),
    "registry_alias": Param(None, type=["null", "string"], pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
                            section="Tracking",
                            description="Set this alias on the new version (openmath_nightly re-evaluates versions "
                                        "with its alias)."),
    "eval": Param({}, type="object", section="Evaluation",
                  description="openmath_eval params for the evaluation the new checkpoint starts (e.g. "
                              '{"benchmarks": ["gsm8k:0"], "limit": 50}); empty = its defaults.'),
    "profile": profile_param(section="Cluster"),
    "experiment": Param("openmath-sft", type="string", minLength=1, maxLength=250, section="Tracking",
                        description="MLflow experiment of the training run."),
}


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
