"""The Airflow-side steps of ``openmath_eval`` that are not Slurm jobs.

Each function takes what a ``@task`` receives and returns XCom-able data; the DAG file only
wires them. Heavy imports (mlflow, boto3) stay inside the functions.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from operators.dag_steps import gpu_hours, profile_of as _profile, read_job_json, slurm_hook as _hook
from tasks.openmath.evaluation import done_markers

DAG_ID = "openmath_eval"


def make_plan(params: dict[str, Any], dag_run) -> dict[str, Any]:
    """Check the form beyond its schema, plan every job, open the MLflow run and log the form."""
    from operators.dag_steps import form_profile, open_tracked_run, plan_or_fail

    profile = form_profile(DAG_ID, params)
    plan = plan_or_fail(DAG_ID, params, profile, dag_run)
    mlc, run_id = open_tracked_run(
        profile, params, dag_run, run_name=f"{Path(params['model']).name} {dag_run.run_id}",
        tags={"skillflow.model": params["model"], "skillflow.engine": params["engine"],
              **{str(k): str(v) for k, v in (params.get("mlflow_tags") or {}).items()}})
    plan["mlflow_run_id"] = run_id
    plan["profile"] = profile.name if profile.source.startswith("profile ") else profile.source
    return {
        "plan": plan,
        "prepare_job": plan["prepare"],
        "engine_job": plan["engine_build"] or {},
        "greedy": plan["greedy"],
        "summarize_job": plan["summarize"],
        "chunks": plan["chunks"],
        "mlflow_run_id": run_id,
    }


def params_for_checkpoint(params: dict[str, Any], triggering_asset_events, dag) -> dict[str, Any]:
    """The form of a run started by a new SFT checkpoint: the DAG's defaults, the checkpoint as
    ``model``, and the ``eval`` params openmath_sft was given for it, each checked against this
    DAG's own schema so a bad value fails here, naming the param, not deep inside a job."""
    from airflow.sdk.exceptions import AirflowFailException

    from operators.assets import SFT_CHECKPOINT
    from operators.dag_steps import asset_events
    from tasks.forms import PlanError, form_of

    events = asset_events(SFT_CHECKPOINT, triggering_asset_events)
    if not events:
        return params
    extra = dict(events[-1].extra or {})
    overrides = dict(extra.get("eval") or {})
    try:
        form_of(DAG_ID).check(overrides, where="checkpoint event's eval params")
    except PlanError as exc:
        raise AirflowFailException(str(exc)) from None
    overrides["model"] = extra["model_path"]
    if extra.get("profile"):
        overrides.setdefault("profile", extra["profile"])
    tags = {**(params.get("mlflow_tags") or {}), **(overrides.get("mlflow_tags") or {}),
            "skillflow.registered_model": f"{extra.get('registered_model')}/{extra.get('version')}",
            "skillflow.sft_run_id": str(extra.get("mlflow_run_id"))}
    overrides["mlflow_tags"] = tags
    import jsonschema

    for key, value in overrides.items():
        schema = dag.params.get_param(key).schema if dag is not None else {}
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            raise AirflowFailException(f"param '{key}' from the checkpoint event: {exc.message}") from None
    print(f"Evaluating checkpoint {extra.get('registered_model')} v{extra.get('version')} at {extra['model_path']}")
    return {**params, **overrides}


def check_model(plan: dict[str, Any], params: dict[str, Any]) -> str:
    """Stage a model given as an S3 URI onto the cluster, then fail early, naming the path, when
    the model is not there."""
    from airflow.sdk.exceptions import AirflowFailException

    from operators.tracking.s3 import stage_from_s3

    profile = _profile(params)
    hook = _hook(profile)
    source = plan.get("model_source") or plan["checked_model"]
    if source.startswith("s3://"):
        stage_from_s3(hook, profile, source, plan["checked_model"])
    path = plan["checked_model"]
    rc, out, _ = hook.run(f"test -e {_q(path)} && du -sh {_q(path)}", check=False)
    if rc != 0:
        raise AirflowFailException(f"param 'model': {path} does not exist on the cluster '{profile.name}'")
    return out.strip()


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def pending_greedy(greedy: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """``SlurmJobOperator`` kwargs of the greedy jobs (one per benchmark) whose output is not marked
    done, checked in one SSH round trip. Upstream NeMo-Skills writes no marker, so its jobs are
    resubmitted and resume inside the file (``++skip_filled=True``)."""
    profile = _profile(params)
    markers = [m for g in greedy for m in done_markers(g)]
    done = _hook(profile).files_complete(markers) if markers else {}
    todo = [{"job": g["job"], "expected_outputs": g["outputs"], "create_dirs": g["dirs"]} for g in greedy
            if not all(done.get(m, False) for m in done_markers(g))]
    print(f"{len(greedy) - len(todo)} of {len(greedy)} greedy benchmark job(s) already finished; {len(todo)} to run")
    return todo


def pending_chunks(chunks: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Sampling chunks whose outputs are not all marked done, checked in one SSH round trip."""
    if not chunks:
        return []
    profile = _profile(params)
    hook = _hook(profile)
    markers = [m for c in chunks for m in done_markers(c)]
    done = hook.files_complete(markers)
    todo = [c["job"] for c in chunks if not all(done.get(m, False) for m in done_markers(c))]
    print(f"{len(chunks) - len(todo)} of {len(chunks)} sampling chunk(s) already finished; {len(todo)} to run")
    return todo


def metric_key(bench: str, mode: str, key: str) -> str:
    """``math.majority_at_50.correct_answer``: MLflow forbids '@' in names, so ``@k`` becomes ``_at_k``."""
    return f"{bench}.{mode.replace('@', '_at_')}.{key}"


# Logged per benchmark and mode: upstream's metrics, the 95% interval of the accuracy beside it
# (``gsm8k.greedy.correct_answer.ci_low``), and for sampled modes the spread across seeds.
LOGGED_KEYS = ("correct_answer", "wrong_answer", "no_answer", "num_entries", "correct_answer.ci_low",
               "correct_answer.ci_high", "seed_accuracy.mean", "seed_accuracy.std")


def metric_names(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for bench, modes in results.items():
        for mode, values in modes.items():
            for key in LOGGED_KEYS:
                if key in values:
                    metrics[metric_key(bench, mode, key)] = float(values[key])
    return metrics


def report(plan: dict[str, Any], params: dict[str, Any], job_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics with their intervals, the benchmark files as dataset inputs, the summary table, the
    accuracy plot and the predictions zip (S3, checksum logged) into the MLflow run."""
    from operators.tracking import evidence, logged_models, mlflow_runs
    from operators.tracking.s3 import s3_client, upload_verified

    profile = _profile(params)
    hook = _hook(profile)
    out = plan["output_dir"]
    results = read_job_json(hook, f"{out}/results.json", "summary")
    table = hook.read_text(f"{out}/summary.txt") or ""
    metrics = metric_names(results)
    jobs = [r for r in job_results if r]
    metrics["slurm.gpu_hours"] = gpu_hours(jobs)
    metrics["slurm.elapsed_s"] = float(sum(int(r.get("elapsed_s") or 0) for r in jobs))
    mlc = mlflow_runs.client(profile.mlflow_conn_id)
    run_id = plan["mlflow_run_id"]
    split = params["split"]
    files = evidence.benchmark_file_digests(hook, plan["data_dir"], sorted(results), split)
    evidence.log_benchmark_datasets(mlc, run_id, files)
    model_id = logged_models.model_id_of(mlc, mlc.get_run(run_id).data.tags)
    if model_id:  # a registered checkpoint: its scores go onto its LoggedModel, per benchmark dataset
        digests = {b: f["sha256"][:evidence.DIGEST_CHARS] for b, f in files.items()}
        logged_models.log_model_scores(mlc, run_id, model_id, metrics, digests)
    mlflow_runs.log_metrics(mlc, run_id, metrics)
    mlc.set_tag(run_id, "slurm.job_ids", ",".join(str(r["job_id"]) for r in jobs))
    evidence.log_accuracy_plot(mlc, run_id, results, f"{Path(plan['model']).name}: accuracy per benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "results.json").write_text(json.dumps(results, indent=2))
        Path(tmp, "summary.txt").write_text(table)
        mlc.log_artifacts(run_id, tmp, artifact_path="summary")
        local_zip = Path(tmp, "predictions.zip")
        hook.download(f"{out}/predictions.zip", str(local_zip))
        key = f"openmath_eval/{run_id}/predictions.zip"
        stored = upload_verified(s3_client(profile.aws_conn_id), local_zip, profile.bucket, key)
    mlc.set_tag(run_id, "predictions.s3_uri", stored["uri"])
    mlc.set_tag(run_id, "predictions.sha256", stored["sha256"])
    mlflow_runs.log_params_once(mlc, run_id, {"predictions_s3_uri": stored["uri"],
                                              "predictions_sha256": stored["sha256"]})
    mlc.set_terminated(run_id, "FINISHED")
    return {"mlflow_run_id": run_id, "mlflow_url": mlflow_runs.run_url(mlc, run_id), "metrics": metrics,
            "summary_table": table, "predictions_uri": stored["uri"], "predictions_sha256": stored["sha256"],
            "predictions_bytes": stored["bytes"], "results": results}
