"""Scores attached to the model, MLflow 3's way (``LoggedModel``).

* A checkpoint that ``openmath_sft`` or ``apps_sft`` registers gets a LoggedModel in the training
  run's experiment (``source_run_id`` = the training run, which lists it as an output). The model
  version created for it passes its ``model_id`` (``MlflowClient.create_model_version(model_id=)``)
  and carries it as the version tag ``skillflow.model_id``; the LoggedModel's
  ``mlflow.modelVersions`` tag names the version, as ``mlflow.register_model`` writes it
  (``mlflow/tracking/_model_registry/fluent.py``), so the model's page links to its version.
  The version's ``source`` stays the checkpoint's S3 URI, which the cluster staging reads.
* An evaluation of a registered version logs its accuracies with that ``model_id`` and the
  benchmark's dataset (name, digest) -- ``Metric(model_id=, dataset_name=, dataset_digest=)`` --
  and the model as a run input, so the model's page lists its scores per benchmark and the
  evaluation run shows the model it measured.
"""
from __future__ import annotations

import json
import time
from typing import Any

TAG_MODEL_ID = "skillflow.model_id"
MODEL_VERSIONS = "mlflow.modelVersions"  # mlflow.utils.mlflow_tags.MLFLOW_MODEL_VERSIONS


def logged_model_for_run(mlc, run_id: str, name: str, tags: dict[str, str] | None = None) -> str:
    """The LoggedModel of the checkpoint ``run_id`` trained; created (READY) on first call, reused on retry."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    exp_id = mlc.get_run(run_id).info.experiment_id
    found = mlc.search_logged_models(experiment_ids=[exp_id], filter_string=f"source_run_id = '{run_id}'",
                                     max_results=1)
    if found:
        return found[0].model_id
    model = mlc.create_logged_model(exp_id, name=name, source_run_id=run_id, tags=tags or {},
                                    model_type="skillflow-sft-checkpoint")
    mlc.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    mlc.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model.model_id


def link_version(mlc, model_id: str, name: str, version: str) -> None:
    """Name the registered version on the LoggedModel, once. An MLflow server already does this
    when a version is created with ``model_id`` (it writes the version as a number); a store used
    in process does not, so the tag is checked, not assumed."""
    model = mlc.get_logged_model(model_id)
    versions = json.loads(model.tags.get(MODEL_VERSIONS) or "[]")
    if not any(v.get("name") == name and str(v.get("version")) == str(version) for v in versions):
        versions.append({"name": name, "version": str(version)})
        mlc.set_logged_model_tags(model_id, {MODEL_VERSIONS: json.dumps(versions)})


def model_id_of(mlc, run_tags: dict[str, str]) -> str | None:
    """The LoggedModel behind the registered version an evaluation run measured, from its tags
    (``skillflow.registered_model`` = name/version, or the nightly's model and version tags)."""
    ref = run_tags.get("skillflow.registered_model")
    if ref and "/" in ref:
        name, version = ref.rsplit("/", 1)
    elif run_tags.get("skillflow.nightly_model") and run_tags.get("skillflow.model_version"):
        name, version = run_tags["skillflow.nightly_model"], run_tags["skillflow.model_version"]
    else:
        return None
    if version in ("", "None"):
        return None
    return (mlc.get_model_version(name, version).tags or {}).get(TAG_MODEL_ID)


def log_model_scores(mlc, run_id: str, model_id: str, metrics: dict[str, float],
                     datasets: dict[str, str]) -> int:
    """Log each benchmark's metrics with ``model_id`` and its dataset (``datasets``: name -> digest);
    returns how many were logged. Metrics of benchmarks without a dataset are left to the caller."""
    from mlflow.entities import LoggedModelInput, Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, 0, model_id=model_id, dataset_name=key.split(".", 1)[0],
                    dataset_digest=datasets[key.split(".", 1)[0]])
             for key, value in metrics.items() if key.split(".", 1)[0] in datasets]
    for start in range(0, len(batch), 900):
        mlc.log_batch(run_id, metrics=batch[start:start + 900])
    mlc.log_inputs(run_id, models=[LoggedModelInput(model_id)])
    return len(batch)


def register_with_model(mlc, run_id: str, name: str, source: str, tags: dict[str, Any], **kwargs):
    """``create_model_version`` for a checkpoint, behind its LoggedModel (see the module docstring)."""
    model_id = logged_model_for_run(mlc, run_id, name, {"registered_model": name, "checkpoint": source})
    version = mlc.create_model_version(name, source=source, run_id=run_id, tags={**tags, TAG_MODEL_ID: model_id},
                                       model_id=model_id, **kwargs)
    link_version(mlc, model_id, name, str(version.version))
    return version
