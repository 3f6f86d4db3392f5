"""The Airflow-side steps of ``apps_sft`` that are not Slurm jobs: planning and the report.

One MLflow run per model (``base``, and ``sft`` when trained), side by side in the experiment,
found again through their tags so a retried task reuses them. Heavy imports (mlflow, boto3) stay
inside the functions.
"""
from __future__ import annotations

import json
import shlex
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from operators.dag_steps import (gpu_hours, profile_of as _profile, read_job_json, registered_model,
                                 slurm_hook as _hook, version_of_run)
from tasks.apps.plan import SIDES, comparison_table, metric_names

DAG_ID = "apps_sft"
TAG_SIDE = "skillflow.apps_side"


def side_run(mlc, experiment: str, dag_id: str, dag_run_id: str, side: str, tags: dict[str, str],
             run_name: str) -> str:
    """The MLflow run of one model of this DAG run, created on first use."""
    from operators.tracking.mlflow_runs import TAG_DAG, TAG_RUN, experiment_id

    exp_id = experiment_id(mlc, experiment)
    quoted = dag_run_id.replace("'", "\\'")
    found = mlc.search_runs([exp_id], filter_string=(f"tags.`{TAG_DAG}` = '{dag_id}' and tags.`{TAG_RUN}` = "
                                                     f"'{quoted}' and tags.`{TAG_SIDE}` = '{side}'"), max_results=1)
    if found:
        return found[0].info.run_id
    run = mlc.create_run(exp_id, tags={TAG_DAG: dag_id, TAG_RUN: dag_run_id, TAG_SIDE: side, **tags},
                         run_name=run_name)
    return run.info.run_id


def make_plan(params: dict[str, Any], dag_run) -> dict[str, Any]:
    """Check the form beyond its schema, plan every job, create the output folders on the
    cluster, and open one MLflow run per model with the form logged."""
    from operators.dag_steps import code_version as _code_version, form_profile, plan_or_fail
    from operators.tracking import mlflow_runs

    profile = form_profile(DAG_ID, params)
    plan = plan_or_fail(DAG_ID, params, profile, dag_run,
                        s3_prefix=f"s3://{profile.bucket}/{dag_run.dag_id}/{_safe_key(dag_run.run_id)}")
    _hook(profile).run("mkdir -p " + " ".join(shlex.quote(d) for d in plan["dirs"]))
    mlc = mlflow_runs.client(profile.mlflow_conn_id)
    form = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()}
    runs = {}
    for side, info in plan["sides"].items():
        name = Path(plan["model_ref"]).name if side == "base" else f"{Path(plan['model_ref']).name}-sft"
        run_id = side_run(mlc, params["experiment"], dag_run.dag_id, dag_run.run_id, side,
                          {"skillflow.profile": profile.name, "skillflow.model": info["model"],
                           "skillflow.code_version": _code_version(), "skillflow.server": plan["server"]},
                          run_name=f"{side} {name} {dag_run.run_id}")
        extra = {f"hp.{k}": v for k, v in (plan["train_hyperparameters"] or {}).items()} if side == "sft" else {}
        mlflow_runs.log_params_once(mlc, run_id, {**form, "side": side, "model_path": info["model"], **extra})
        runs[side] = run_id
    plan["mlflow_run_ids"] = runs
    plan["profile"] = profile.name if profile.source.startswith("profile ") else profile.source
    sides = plan["sides"]
    return {
        "plan": plan,
        "prepare_job": plan["prepare"],
        "prepare_outputs": plan["prepare_outputs"],
        "convert_job": plan["convert"] or {},
        "train_job": plan["train"] or {},
        "train_outputs": plan["train_outputs"],
        "train_progress": plan["train_progress"] or {"kind": "files", "files": []},
        "train_max_jobs": plan["train_max_jobs"],
        "train_curves": ({"tensorboard": plan["train_tensorboard"], "mlflow_run_id": runs["sft"],
                          "mlflow_conn_id": profile.mlflow_conn_id} if "sft" in runs else {}),
        "export_job": plan["export"] or {},
        "upload_job": plan["upload"] or {},
        **{f"sample_{s}_job": sides[s]["sample_job"] if s in sides else {} for s in SIDES},
        **{f"sample_{s}_outputs": sides[s]["sample_outputs"] if s in sides else [] for s in SIDES},
        **{f"eval_{s}_job": sides[s]["eval_job"] if s in sides else {} for s in SIDES},
        **{f"eval_{s}_outputs": sides[s]["eval_outputs"] if s in sides else [] for s in SIDES},
    }


def _safe_key(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def register_sft_model(mlc, plan: dict[str, Any], params: dict[str, Any], run_id: str, hook,
                       jobs: dict[str, dict[str, Any] | None]) -> dict[str, str]:
    """The uploaded SFT model into the registry with its lineage; a retry reuses its version."""
    from operators.tracking.s3 import s3_client
    from tasks.storage.checkpoints import verify

    upload = read_job_json(hook, plan["upload_result"], "upload_sft")
    checked = verify(upload["uri"], client=s3_client(_profile(params).aws_conn_id), deep=False)
    train, up = jobs.get("train") or {}, jobs.get("upload_sft") or {}
    steps = {"convert": jobs.get("convert") or {}, "export": jobs.get("export") or {}}
    name = f"apps-sft-{_safe_key(Path(plan['model_ref']).name)}"[:100]
    job_ids = {"train": ",".join(train.get("job_ids") or [str(train.get("job_id"))]), "upload": str(up.get("job_id")),
               **{step: str(r["job_id"]) for step, r in steps.items() if r}}
    total_gpu_hours = gpu_hours((train, up, *steps.values()))
    tags = {"cluster_path": plan["sides"]["sft"]["model"], "s3_uri": upload["uri"],
            "manifest_sha256": upload["manifest_sha256"], "base_model": plan["model"],
            "data": str(params.get("data")), "mlflow_run_id": run_id,
            "slurm.job_ids": json.dumps(job_ids), "slurm.gpu_hours": str(total_gpu_hours)}
    if plan.get("train_hyperparameters"):
        tags.update({"hp.recipe": "local CPU stand-in for OpenRLHF train_sft: HF Trainer over the chat format "
                                  "(tasks/sft/local_train.py); a plumbing check, not a result",
                     "training.steps": str(train.get("steps")),
                     **{f"hp.{k}": str(v) for k, v in plan["train_hyperparameters"].items()}})
    else:
        tags.update({"hp.num_nodes": str(params.get("num_nodes")), "hp.gpus_per_node": str(params.get("gpus_per_node")),
                     "hp.recipe": "OpenRLHF train_sft, the seed's flags (apps spec 1.1)"})
    registered_model(mlc, name, description="APPS code SFT models trained by skillflow's apps_sft")
    version = version_of_run(mlc, name, run_id)
    if version is None:  # behind the version: a LoggedModel that evaluations attach their scores to
        from operators.tracking.logged_models import register_with_model

        version = register_with_model(mlc, run_id, name, upload["uri"], tags)
    mlc.set_tag(run_id, "skillflow.registered_model", f"{name}/{version.version}")
    mlc.set_tag(run_id, "checkpoint.s3_uri", upload["uri"])
    return {"registered_model": name, "version": str(version.version), "s3_uri": upload["uri"],
            "checkpoint_bytes": str(checked["total_bytes"])}


def _job_metrics(results: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for step, result in results.items():
        if result:
            metrics[f"slurm.{step}_elapsed_s"] = float(result.get("elapsed_s") or 0)
            metrics[f"slurm.{step}_gpu_hours"] = round(float(result.get("gpu_hours") or 0), 4)
    return metrics


def report(plan: dict[str, Any], params: dict[str, Any], jobs: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """pass@k per difficulty into each model's MLflow run, with the per-sample ``results.jsonl``
    and ``summary.json`` as artifacts, the comparison table in every run, and the samples plus
    results zipped to S3 (SHA-256 verified, logged as tags)."""
    from operators.tracking import mlflow_runs
    from operators.tracking.s3 import s3_client, upload_verified

    profile = _profile(params)
    hook = _hook(profile)
    mlc = mlflow_runs.client(profile.mlflow_conn_id)
    trained = "sft" in plan["sides"]
    summaries: dict[str, dict[str, Any]] = {}
    for side, info in plan["sides"].items():
        summaries[side] = read_job_json(hook, f"{info['eval_dir']}/summary.json", f"eval_{side}")
    table = comparison_table({s: {"model": plan["sides"][s]["model"], "pass_at_k": summ["pass_at_k"],
                                  "problems": summ["problems"], "samples": summ["samples"]}
                              for s, summ in summaries.items()}, trained)
    paired = _paired_comparison(plan, profile, hook) if trained else None
    if paired:
        from tasks.apps.paired import format_rows

        table = table.rstrip("\n") + "\n\n" + format_rows(paired[0])
    out: dict[str, Any] = {"comparison": table, "runs": {}}
    for side, info in plan["sides"].items():
        run_id = plan["mlflow_run_ids"][side]
        summary = summaries[side]
        metrics = metric_names(summary["pass_at_k"])
        step_jobs = {"sample": jobs.get(f"sample_{side}"), "eval": jobs.get(f"eval_{side}")}
        if side == "sft":
            step_jobs.update({"convert": jobs.get("convert"), "train": jobs.get("train"), "export": jobs.get("export")})
        metrics.update(_job_metrics(step_jobs))
        mlflow_runs.log_metrics(mlc, run_id, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            res_dir = Path(tmp, "results")
            res_dir.mkdir()
            hook.download(f"{info['eval_dir']}/results.jsonl", str(res_dir / "results.jsonl"))
            (res_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            mlc.log_artifacts(run_id, str(res_dir), artifact_path="results")
            cmp_dir = Path(tmp, "comparison")
            cmp_dir.mkdir()
            (cmp_dir / "comparison.md").write_text(table + "\n")
            mlc.log_artifacts(run_id, str(cmp_dir), artifact_path="comparison")
            samples = Path(tmp, "samples.jsonl")
            hook.download(info["samples"], str(samples))
            bundle = Path(tmp, f"apps-{side}.zip")
            with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.write(samples, "samples.jsonl")
                zf.write(res_dir / "results.jsonl", "results.jsonl")
                zf.write(res_dir / "summary.json", "summary.json")
            stored = upload_verified(s3_client(profile.aws_conn_id), bundle, profile.bucket,
                                     f"apps_sft/{run_id}/apps-{side}.zip")
        mlc.set_tag(run_id, "samples.s3_uri", stored["uri"])
        mlc.set_tag(run_id, "samples.sha256", stored["sha256"])
        mlc.set_tag(run_id, "slurm.job_ids", ",".join(str(j["job_id"]) for j in step_jobs.values() if j))
        registered = register_sft_model(mlc, plan, params, run_id, hook, jobs) \
            if side == "sft" and plan.get("upload_result") else None
        mlc.set_terminated(run_id, "FINISHED")
        out["runs"][side] = {"mlflow_run_id": run_id, "mlflow_url": mlflow_runs.run_url(mlc, run_id),
                             "metrics": metrics, "samples_uri": stored["uri"], "samples_sha256": stored["sha256"],
                             "unusual_n": summary.get("problems_with_unusual_n", []), "registered": registered}
    if paired:
        from tasks.comparison.tracking import log_comparison

        base_id, sft_id = plan["mlflow_run_ids"]["base"], plan["mlflow_run_ids"]["sft"]
        out["comparison_run_id"] = log_comparison(
            mlc, mlc.get_run(base_id).info.experiment_id, paired[0], paired[1], table, run_a=base_id, run_b=sft_id,
            label_a="base", label_b="sft", tags={"skillflow.apps_comparison": "base_vs_sft"})
    print(table)
    return out


def _paired_comparison(plan: dict[str, Any], profile, hook) -> tuple[dict, dict] | None:
    """Base vs SFT paired per problem and difficulty (tasks/apps/paired.py) from both results.jsonl.

    The difficulties come from the problems file on the cluster, read there by the profile's
    python so only ``{problem_id: difficulty}`` travels over SSH, not the tests."""
    from tasks.apps.paired import paired_apps, problem_counts

    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("base", "sft"):
            local = Path(tmp, f"{side}.jsonl")
            hook.download(f"{plan['sides'][side]['eval_dir']}/results.jsonl", str(local))
            counts[side] = problem_counts(local)
    script = ("import json, sys\nout = {}\nfor line in open(sys.argv[1], encoding='utf-8'):\n"
              "    if line.strip():\n        r = json.loads(line)\n"
              "        out[str(r.get('problem_id', r.get('id')))] = str(r.get('difficulty') or 'unknown')\n"
              "print(json.dumps(out))")
    rc, text, err = hook.run(f"{shlex.quote(profile.python)} -c {shlex.quote(script)} {shlex.quote(plan['problems'])}",
                             check=False)
    if rc != 0:
        raise FileNotFoundError(f"could not read difficulties from {plan['problems']} on the cluster: {err.strip()}")
    return paired_apps(counts["base"], counts["sft"], json.loads(text))
