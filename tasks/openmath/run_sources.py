"""An evaluation run's graded outputs, found from its MLflow run id.

``openmath_eval`` logs the predictions zip's S3 URI and SHA-256 as run tags
(``predictions.s3_uri``, ``predictions.sha256``) and every benchmark file as an MLflow dataset
input (name = benchmark, digest, source). This module brings the zip back, refuses it when its
SHA-256 differs from the logged one, and unpacks it into the results-folder layout that
``skillflow summarize`` and ``skillflow compare`` read.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

TAG_URI = "predictions.s3_uri"
TAG_SHA = "predictions.sha256"


class RunSourceError(ValueError):
    """The run cannot provide its graded outputs; the message names the run and why."""


def has_predictions(run) -> bool:
    return bool(run.data.tags.get(TAG_URI))


def fetch_predictions(run, s3, dest: Path) -> Path:
    """Download the run's predictions zip with ``s3`` (a boto3 client), check it, unpack into ``dest``."""
    from tasks.storage.checkpoints import split_uri

    run_id = run.info.run_id
    uri, expected = run.data.tags.get(TAG_URI), run.data.tags.get(TAG_SHA)
    if not uri or not expected:
        raise RunSourceError(f"MLflow run {run_id} logged no predictions zip (tags {TAG_URI}, {TAG_SHA})")
    dest.mkdir(parents=True, exist_ok=True)
    local = dest / "predictions.zip"
    bucket, key = split_uri(uri)
    s3.download_file(bucket, key, str(local))
    digest = hashlib.sha256()
    with open(local, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise RunSourceError(f"MLflow run {run_id}: {uri} has SHA-256 {digest.hexdigest()}, but the run logged "
                             f"{expected}; refusing to compare altered predictions")
    out = dest / "results"
    with zipfile.ZipFile(local) as zf:
        for name in zf.namelist():
            target = (out / name).resolve()
            if not target.is_relative_to(out.resolve()):
                raise RunSourceError(f"MLflow run {run_id}: {uri} holds a path outside its folder: {name}")
        zf.extractall(out)
    local.unlink()
    return out


def dataset_digests(run) -> dict[str, str]:
    """``{benchmark: digest}`` of the benchmark files the run logged as dataset inputs."""
    inputs = getattr(run, "inputs", None)
    return {d.dataset.name: d.dataset.digest for d in (getattr(inputs, "dataset_inputs", None) or [])}


def digest_mismatches(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Benchmarks both runs logged with different digests, in name order."""
    return sorted(name for name in set(a) & set(b) if a[name] != b[name])
