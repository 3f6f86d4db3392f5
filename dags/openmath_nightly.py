"""openmath_nightly: re-evaluate every registered model that carries an alias (default
``nightly``), and fail with a readable report when a metric regressed against the model's previous
nightly run or its published numbers: a drop that is significant (paired per problem, Holm-corrected
at ``alpha``; against published numbers, outside the run's own interval) and larger than
``min_effect`` points. See ``tasks/openmath/regressions.py``.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

# Not the standard provider's operator: its module imports Airflow's ORM, 0.25 s of parse time.
from operators.dag_steps import dag_params
from operators.trigger_dagrun import TriggerDagRunOperator


@dag(
    dag_id="openmath_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["skillflow", "openmath", "nightly"],
    params=dag_params("openmath_nightly"),
    doc_md=__doc__,
)
def openmath_nightly():
    @task
    def find_models(params=None) -> list:
        from operators.dag_steps import form_profile
        from operators.openmath.nightly import models_with_alias

        return models_with_alias(params["alias"], form_profile("openmath_nightly", dict(params)).mlflow_conn_id)

    @task
    def confs(models: list, params=None) -> list:
        from operators.openmath.nightly import eval_confs

        overrides = dict(params["eval_params"], profile=params["profile"])
        return eval_confs(models, overrides, params["experiment"])

    # Runs even when an evaluation failed, so the report covers every model.
    @task(trigger_rule="all_done")
    def compare(models: list, params=None, run_id=None) -> dict:
        from operators.dag_steps import profile_of
        from operators.openmath.nightly import compare as do_compare, eval_run_id

        profile = profile_of(params)
        run_ids = [eval_run_id(run_id, i) for i in range(len(models))]
        return do_compare(models, run_ids, params["experiment"], alpha=float(params["alpha"]),
                          min_effect=float(params["min_effect"]), mlflow_conn_id=profile.mlflow_conn_id,
                          aws_conn_id=profile.aws_conn_id)

    models = find_models()
    evaluate = TriggerDagRunOperator.partial(
        task_id="evaluate", trigger_dag_id="openmath_eval", wait_for_completion=True, deferrable=True,
        trigger_run_id="nightly__{{ run_id }}__m{{ ti.map_index }}",
        poke_interval=30, allowed_states=["success"], failed_states=["failed"],
    ).expand(conf=confs(models))
    evaluate >> compare(models)


dag = openmath_nightly()
