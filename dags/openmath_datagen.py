"""openmath_datagen: synthesize OpenMathInstruct-1 SFT data the way the paper did.

Steps, each GPU step a Slurm job on the cluster of the chosen profile (docs/recipes/openmath.md §8, §9):

1. **prepare_data** — `train_full` of GSM8K and/or MATH (download, a cluster mirror folder, or
   the credited 20-problem `shared-sample`), cut to `limit` problems for smoke runs.
2. **masked_labeling** — one job array per base dataset with `openmathinstruct/text_masked_base`,
   `*_generate_masked` examples and the reference solution as context (32 runs in the seed).
3. **mask** — `skillflow sft-data mask`: one masked reference solution per problem, written as the
   `gsm8k-masked` / `math-masked` datasets.
4. **labeling** — one throttled job array per configuration (gsm8k, gsm8k-masked, math,
   math-masked, and the 7 MATH subject example sets with both contexts): T=1.0, top-p 0.95, at most
   3 code executions, stop on a code error, **5 few-shot examples**. The seed document's labeling
   command forgets `num_few_shots`, which defaults to 0 on that code version, so its prompts would
   carry no examples; we pass 5 (the paper's K, v0.1.1's default; `KNOWN_FIXES` in
   `tasks/openmath/steps.py`).
5. **collect** — `skillflow sft-data collect`: correct, de-duplicated solutions with coverage per
   dataset and per configuration.
6. **sft_data** — `skillflow sft-data prepare` as the seed command (fair downsampling to
   1,024,000, any_code, trimmed solutions).
7. **publish** — the SFT data file to S3 (SHA-256 verified); emits the asset
   named `skillflow://openmath/sft-data` with the S3 URI in the event's extra, for the SFT DAG.
8. **report** — counts, coverage and the stats JSONs into one MLflow run.

Resubmission: before each array stage, the outputs are checked in one SSH round trip (graded,
`.done` marker for the native engine) and arrays are submitted only over the missing seeds. Clear
`pending_masked` or `pending_labeling` (with downstream) to resume a DAG run.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from operators.assets import SFT_DATA
from operators.dag_steps import PROFILE_TEMPLATE, dag_params
from operators.slurm.operator import SlurmJobOperator

PARAMS = dag_params("openmath_datagen")


@dag(
    dag_id="openmath_datagen",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    params=PARAMS,
    render_template_as_native_obj=True,
    tags=["skillflow", "openmath", "data"],
    doc_md=__doc__,
)
def openmath_datagen():
    @task(multiple_outputs=True)
    def plan(params=None, dag_run=None) -> dict:
        from operators.openmath.datagen import make_plan

        return make_plan(dict(params), dag_run)

    @task(trigger_rule="none_failed")
    def pending_masked(plan: dict, params=None) -> list:
        from operators.openmath.datagen import pending

        return pending(plan, dict(params), "masked")

    @task(trigger_rule="none_failed")
    def pending_labeling(plan: dict, params=None) -> list:
        from operators.openmath.datagen import pending

        return pending(plan, dict(params), "labeling")

    @task(outlets=[SFT_DATA])
    def publish(plan: dict, params=None, outlet_events=None) -> dict:
        from operators.openmath.datagen import publish as do_publish

        return do_publish(plan, dict(params), outlet_events, SFT_DATA)

    # Runs when an array stage had nothing to submit (a mapped task over zero arrays is skipped).
    @task(trigger_rule="none_failed")
    def report(plan: dict, published: dict, prepare: dict, masked: list | None, mask: dict | None,
               labeling: list | None, collect: dict, sft: dict, params=None) -> dict:
        from operators.openmath.datagen import report as do_report

        jobs = [prepare, mask, collect, sft, *list(masked or []), *list(labeling or [])]
        return do_report(plan, dict(params), published, [j for j in jobs if j])

    p = plan()
    common = dict(profile=PROFILE_TEMPLATE, poll_interval=None)
    prepare = SlurmJobOperator(task_id="prepare_data", job=p["prepare_job"], **common)
    masked_todo = pending_masked(p["plan"])
    masked = SlurmJobOperator.partial(task_id="masked_labeling", trigger_rule="none_failed",
                                      **common).expand_kwargs(masked_todo)
    # Skipped (empty job) when no configuration reads a masked dataset.
    mask = SlurmJobOperator(task_id="mask", job=p["mask_job"], trigger_rule="none_failed", **common)
    labeling_todo = pending_labeling(p["plan"])
    labeling = SlurmJobOperator.partial(task_id="labeling", trigger_rule="none_failed",
                                        **common).expand_kwargs(labeling_todo)
    collect = SlurmJobOperator(task_id="collect", job=p["collect_job"], trigger_rule="none_failed", **common)
    sft = SlurmJobOperator(task_id="sft_data", job=p["sft_job"], **common)
    published = publish(p["plan"])
    prepare >> masked_todo
    masked >> mask >> labeling_todo
    labeling >> collect >> sft >> published
    report(p["plan"], published, prepare.output, masked.output, mask.output, labeling.output, collect.output,
           sft.output)


dag = openmath_datagen()
