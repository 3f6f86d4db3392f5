"""The Airflow-side steps of ``openmath_datagen`` that are not Slurm jobs.

Each function takes what a ``@task`` receives and returns XCom-able data; the DAG file only
wires them. Heavy imports (mlflow, boto3) stay inside the functions.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from operators.dag_steps import gpu_hours, profile_of as _profile, read_job_json, slurm_hook as _hook
from tasks.openmath.datagen import (DatagenRequest, completion_command, coverage_metrics,
                                    parse_completion, pending_jobs)

DAG_ID = "openmath_datagen"


def make_plan(params: dict[str, Any], dag_run) -> dict[str, Any]:
    """Check the form beyond its schema, plan the fixed jobs, open the MLflow run and log the form."""
    from operators.dag_steps import form_profile, open_tracked_run, plan_or_fail
    from operators.tracking import mlflow_runs

    profile = form_profile(DAG_ID, params)
    plan = plan_or_fail(DAG_ID, params, profile, dag_run)
    mlc, run_id = open_tracked_run(profile, params, dag_run,
                                   run_name=f"datagen {Path(params['model']).name} {dag_run.run_id}",
                                   tags={"skillflow.model": params["model"], "skillflow.engine": params["engine"]})
    mlflow_runs.log_params_once(mlc, run_id, {f"runs.{k}": v for k, v in plan["runs"].items()})
    plan["mlflow_run_id"] = run_id
    return {"plan": plan, "prepare_job": plan["prepare"], "mask_job": plan["mask"],
            "collect_job": plan["collect"], "sft_job": plan["sft"], "mlflow_run_id": run_id}


def pending(plan: dict[str, Any], params: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """Arrays to submit for ``stage`` over the seeds whose outputs are not complete (one SSH round trip)."""
    profile = _profile(params)
    req = DatagenRequest.from_params(params)
    units = [u for u in plan["units"] if u["stage"] == stage]
    if not units:
        return []
    _, out, _ = _hook(profile).run(completion_command(units, req.engine))
    done = parse_completion(out)
    todo, missing = pending_jobs(req, profile, plan["output_dir"], stage, done)
    for unit in units:
        seeds = missing.get(unit["name"], [])
        print(f"{unit['name']}: {unit['runs'] - len(seeds)} of {unit['runs']} run(s) complete; "
              f"{'submitting seeds ' + _ranges(seeds) if seeds else 'nothing to submit'}")
    return todo


def _ranges(seeds: list[int]) -> str:
    from tasks.openmath.steps import index_list

    return index_list(seeds) if seeds else "-"


def publish(plan: dict[str, Any], params: dict[str, Any], outlet_events, asset) -> dict[str, Any]:
    """Upload the SFT data file to S3 (checksum verified) and record the URI on the asset event."""
    from operators.tracking.s3 import s3_client, upload_verified

    profile = _profile(params)
    hook = _hook(profile)
    stats = read_job_json(hook, plan["stats"]["sft"], "sft-data prepare")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, "sft-data.jsonl")
        hook.download(plan["sft_output"], str(local))
        with open(local, "rb") as fh:
            lines = sum(1 for _ in fh)
        key = f"openmath_datagen/{plan['mlflow_run_id']}/sft-data.jsonl"
        stored = upload_verified(s3_client(profile.aws_conn_id), local, profile.bucket, key)
    if lines != stats.get("output_entries", lines):
        raise ValueError(f"{plan['sft_output']} has {lines} lines but its stats say {stats.get('output_entries')}")
    extra = {"uri": stored["uri"], "sha256": stored["sha256"], "bytes": stored["bytes"], "lines": lines,
             "cluster_path": plan["sft_output"], "mlflow_run_id": plan["mlflow_run_id"]}
    outlet_events[asset].extra = extra
    return extra


def report(plan: dict[str, Any], params: dict[str, Any], published: dict[str, Any],
           job_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and coverage per dataset and configuration, the stats JSONs and the S3 object into MLflow."""
    from operators.tracking import mlflow_runs
    from tasks.openmath.sft_data.stats import flatten_metrics

    profile = _profile(params)
    hook = _hook(profile)
    stats = {name: read_job_json(hook, path, name.split(".")[0]) for name, path in plan["stats"].items()}
    metrics = coverage_metrics(stats["collect"])
    for name, block in stats.items():
        if name.startswith("mask."):
            metrics.update({f"{name}.{k}": v for k, v in flatten_metrics(block).items()})
    metrics.update({f"sft.{k}": v for k, v in flatten_metrics(stats["sft"]).items()})
    metrics["sft.lines"] = float(published["lines"])
    jobs = [r for r in job_results if r]
    metrics["slurm.gpu_hours"] = gpu_hours(jobs)
    metrics["slurm.elapsed_s"] = float(sum(int(r.get("elapsed_s") or 0) for r in jobs))
    mlc = mlflow_runs.client(profile.mlflow_conn_id)
    run_id = plan["mlflow_run_id"]
    mlflow_runs.log_metrics(mlc, run_id, metrics)
    mlc.set_tag(run_id, "slurm.job_ids", ",".join(str(r["job_id"]) for r in jobs))
    with tempfile.TemporaryDirectory() as tmp:
        for name, block in stats.items():
            Path(tmp, f"{name}.stats.json").write_text(json.dumps(block, indent=2))
        mlc.log_artifacts(run_id, tmp, artifact_path="stats")
    for key in ("uri", "sha256"):
        mlc.set_tag(run_id, f"sft_data.{key}", str(published[key]))
    mlflow_runs.log_params_once(mlc, run_id, {"sft_data_s3_uri": published["uri"],
                                              "sft_data_sha256": published["sha256"]})
    mlc.set_terminated(run_id, "FINISHED")
    return {"mlflow_run_id": run_id, "mlflow_url": mlflow_runs.run_url(mlc, run_id), "metrics": metrics,
            "sft_data_uri": published["uri"], "sft_data_sha256": published["sha256"], "stats": stats}
