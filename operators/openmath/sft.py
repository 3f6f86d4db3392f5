"""The Airflow-side steps of ``openmath_sft`` that are not Slurm jobs: the plan, staging the
data, and publishing the checkpoint (registry, lineage, the Asset that starts evaluation)."""
from __future__ import annotations

import json
from typing import Any

from operators.dag_steps import (asset_events, fail as _fail, gpu_hours as _gpu_hours, profile_of as _profile,
                                 read_job_json, registered_model, slurm_hook as _hook, version_of_run)
from tasks.openmath.sft import SftRequest

DAG_ID = "openmath_sft"


def latest_event(asset, triggering_asset_events, inlet_events) -> dict[str, Any] | None:
    """The SFT-data event this run trains on: the one that triggered it, else the newest one."""
    events = asset_events(asset, triggering_asset_events, inlet_events)
    if not events:
        return None
    event = events[-1]
    return {"extra": dict(event.extra or {}), "source_dag_id": getattr(event, "source_dag_id", None),
            "source_run_id": getattr(event, "source_run_id", None), "timestamp": str(getattr(event, "timestamp", ""))}


def resolve_data(data: str, event: dict[str, Any] | None, data_dir: str) -> dict[str, Any]:
    """Where the prepared SFT jsonl comes from and where it will be on the cluster."""
    if data == "download":
        return {"kind": "download", "cluster_path": None, "source": "nvidia/OpenMathInstruct-1"}
    if data == "asset":
        if not event:
            raise _fail("param 'data': 'asset' but skillflow://openmath/sft-data has no event yet; run openmath_datagen "
                        "first, or give an S3 URI or a cluster path")
        extra = event["extra"]
        if not extra.get("uri") and not extra.get("cluster_path"):
            raise _fail(f"param 'data': the newest sft-data event ({event['timestamp']}) has neither uri nor cluster_path")
        uri = extra.get("uri")
        return {"kind": "asset", "source": uri or extra["cluster_path"],
                "cluster_path": f"{data_dir}/{uri.rsplit('/', 1)[-1]}" if uri else extra["cluster_path"],
                "stage_from": uri,
                "sha256": extra.get("sha256"), "lines": extra.get("lines"), "event": event}
    if data.startswith("s3://"):
        name = data.rstrip("/").rsplit("/", 1)[-1]
        if not name.endswith(".jsonl"):
            raise _fail(f"param 'data': {data!r} must name one .jsonl object (the prepared SFT data)")
        return {"kind": "s3", "source": data, "cluster_path": f"{data_dir}/{name}", "stage_from": data}
    if data.startswith("/"):
        return {"kind": "path", "source": data, "cluster_path": data}
    raise _fail(f"param 'data': {data!r} must be 'asset', 'download', an s3:// URI or an absolute cluster path")


def make_plan(params: dict[str, Any], dag_run, triggering_asset_events=None, inlet_events=None) -> dict[str, Any]:
    """Check the form, plan every job, open the MLflow run with the form and the data's lineage."""
    from operators.assets import SFT_DATA
    from operators.dag_steps import form_profile, open_tracked_run, plan_or_fail
    from tasks.plan import output_dir

    profile = form_profile(DAG_ID, params)
    exp_dir = output_dir(profile, dag_run.dag_id, dag_run.run_id)
    event = latest_event(SFT_DATA, triggering_asset_events, inlet_events) if params["data"] == "asset" else None
    data = resolve_data(params["data"], event, f"{exp_dir}/data")
    req = SftRequest.from_params(params)
    mlc, run_id = open_tracked_run(
        profile, params, dag_run, run_name=f"sft {req.base_model} {dag_run.run_id}",
        tags={"skillflow.base_model": req.base_model, "skillflow.data": data["source"]},
        skip_params=("eval",))
    # The run exists first: the plan's S3 prefix is named after it (a bad param then marks it FAILED).
    plan = plan_or_fail(DAG_ID, params, profile, dag_run, on_fail=lambda: mlc.set_terminated(run_id, "FAILED"),
                        data_path=data["cluster_path"], s3_prefix=f"s3://{profile.bucket}/{DAG_ID}/{run_id}")
    plan.update({"mlflow_run_id": run_id, "data": {k: v for k, v in data.items() if k != "event"},
                 "data_event": data.get("event")})
    lineage = {"data.kind": data["kind"], "data.source": data["source"], "base_model_path": plan["base_model_path"],
               "registered_model": plan["registered_model"],
               **{f"hp.{k}": v for k, v in plan["hyperparameters"].items()}}
    if data.get("sha256"):
        lineage["data.sha256"] = data["sha256"]
    from operators.tracking import mlflow_runs

    mlflow_runs.log_params_once(mlc, run_id, lineage)
    jobs = plan["jobs"]
    return {"plan": plan, "mlflow_run_id": run_id,
            **{f"{name}_job": (jobs[name]["job"] if name in jobs else {}) for name in
               ("download", "prepare", "convert", "train", "average", "export", "upload")},
            **{f"{name}_dirs": (jobs[name]["dirs"] if name in jobs else []) for name in
               ("download", "prepare", "convert", "train", "average", "export", "upload")},
            "progress": plan["progress"], "max_sft_jobs": plan["max_sft_jobs"],
            "curves": {"tensorboard": plan["tensorboard"], "mlflow_run_id": run_id,
                       "mlflow_conn_id": profile.mlflow_conn_id}}


def stage_data(plan: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Bring S3 data to the cluster (through the worker, which holds the S3 credentials), then
    check it is there and not empty; the error names the param and the path."""
    from operators.tracking.s3 import stage_from_s3

    data = plan["data"]
    if data["kind"] == "download":
        return {"path": None}
    profile = _profile(params)
    hook = _hook(profile)
    if data.get("stage_from"):
        stage_from_s3(hook, profile, data["stage_from"], data["cluster_path"], param="data")
    path = data["cluster_path"]
    rc, out, _ = hook.run(f"test -s {_q(path)} && wc -l < {_q(path)}", check=False)
    if rc != 0:
        raise _fail(f"param 'data': {path} is missing or empty on the cluster '{profile.name}'")
    lines = int(out.strip() or 0)
    if data.get("lines") not in (None, lines):
        raise _fail(f"param 'data': {path} has {lines} lines but the sft-data event says {data['lines']}")
    return {"path": path, "lines": lines}


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def publish(plan: dict[str, Any], params: dict[str, Any], train: dict[str, Any], job_results: dict[str, Any],
            outlet_events, asset) -> dict[str, Any]:
    """Verify the uploaded checkpoint against its manifest, register it with its lineage, and emit
    the checkpoint Asset (which starts ``openmath_eval`` on it)."""
    from operators.tracking import mlflow_runs
    from operators.tracking.s3 import s3_client
    from tasks.storage.checkpoints import CheckpointStoreError, verify

    profile = _profile(params)
    hook = _hook(profile)
    upload = read_job_json(hook, plan["paths"]["upload_result"], "upload_checkpoint")
    try:
        # Sizes against the manifest from here; the job itself re-read every byte after uploading.
        checked = verify(upload["uri"], client=s3_client(profile.aws_conn_id), deep=False)
    except CheckpointStoreError as exc:
        raise _fail(f"uploaded checkpoint does not match its manifest: {exc}") from None
    mlc = mlflow_runs.client(profile.mlflow_conn_id)
    run_id = plan["mlflow_run_id"]
    jobs = {name: r for name, r in job_results.items() if r}
    job_ids = {name: str(r.get("job_id")) for name, r in jobs.items()}
    job_ids["train"] = ",".join(train.get("job_ids") or [str(train.get("job_id"))])
    gpu_hours = _gpu_hours([*jobs.values(), train])
    tags = {"cluster_path": plan["eval_model"], "s3_uri": upload["uri"], "manifest_sha256": upload["manifest_sha256"],
            "profile": profile.name, "base_model": params["base_model"], "base_model_path": plan["base_model_path"],
            "data.kind": plan["data"]["kind"], "data.source": plan["data"]["source"],
            "data.sha256": str(plan["data"].get("sha256") or ""), "mlflow_run_id": run_id,
            "slurm.job_ids": json.dumps(job_ids), "slurm.gpu_hours": str(gpu_hours),
            "training.steps": str(train.get("steps")), "training.jobs": str(train.get("jobs")),
            **{f"hp.{k}": str(v) for k, v in plan["hyperparameters"].items()}}
    event = plan.get("data_event") or {}
    if event.get("source_run_id"):
        tags["data.source_dag_run"] = f"{event.get('source_dag_id')}/{event.get('source_run_id')}"
    name = plan["registered_model"]
    registered_model(mlc, name, description="OpenMath SFT checkpoints trained by skillflow's openmath_sft")
    # Behind the version: a LoggedModel that evaluations attach their scores to (tracking/logged_models.py).
    from operators.tracking.logged_models import register_with_model

    # A retried publish finds the version it registered before instead of adding another.
    version = version_of_run(mlc, name, run_id) or register_with_model(
        mlc, run_id, name, upload["uri"], tags,
        description=f"{params['base_model']} fine-tuned on {plan['data']['source']}")
    if params.get("registry_alias"):
        mlc.set_registered_model_alias(name, params["registry_alias"], version.version)
    mlflow_runs.log_metrics(mlc, run_id, {"slurm.gpu_hours": gpu_hours, "training.jobs": float(train.get("jobs") or 0),
                                          "training.steps": float(train.get("steps") or 0),
                                          "checkpoint.bytes": float(checked["total_bytes"])})
    mlc.set_tag(run_id, "skillflow.registered_model", f"{name}/{version.version}")
    mlc.set_tag(run_id, "checkpoint.s3_uri", upload["uri"])
    mlc.set_terminated(run_id, "FINISHED")
    extra = {"model_path": plan["eval_model"], "s3_uri": upload["uri"], "manifest_sha256": upload["manifest_sha256"],
             "registered_model": name, "version": str(version.version), "profile": params.get("profile"),
             "eval": dict(params.get("eval") or {}), "mlflow_run_id": run_id}
    outlet_events[asset].extra = extra
    return {**extra, "mlflow_url": mlflow_runs.run_url(mlc, run_id), "gpu_hours": gpu_hours}
