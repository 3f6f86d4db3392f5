"""Checkpoint folders in S3, uploaded from the cluster, with a manifest that proves them whole.

A checkpoint is many large files; a copy that stopped half way looks like a checkpoint. So:

* every file goes up with multipart upload, its SHA-256 computed while reading it and stored as
  object metadata;
* a file already in the bucket with the same size and SHA-256 is not sent again, so a retried or
  restarted upload resumes instead of starting over;
* ``MANIFEST.json`` (path, bytes, SHA-256 of every file) is written *last*, so its presence means
  every file before it was stored;
* :func:`verify` re-reads every object from the bucket and compares it with the manifest.

Credentials come from boto3's own chain on the machine that runs this (on a cluster: the site's
credentials file named by ``AWS_PROFILE``/``AWS_SHARED_CREDENTIALS_FILE``), never from a job script.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

MANIFEST = "MANIFEST.json"
PART_BYTES = 64 << 20


class CheckpointStoreError(RuntimeError):
    """An upload or a verification failed; the message names the object."""


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://b/k`` -> (b, k); MLflow's proxied ``mlflow-artifacts:/k`` lives in the ``mlflow``
    bucket. The one S3 URI splitter of skillflow; ValueError for anything else."""
    if uri.startswith("mlflow-artifacts:/"):
        return "mlflow", uri[len("mlflow-artifacts:/"):].lstrip("/")
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def split_s3(uri: str) -> tuple[str, str]:
    """A checkpoint's ``s3://bucket/prefix``: both parts required."""
    if not uri.startswith("s3://"):
        raise CheckpointStoreError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    bucket, prefix = split_uri(uri)
    if not bucket or not prefix.strip("/"):
        raise CheckpointStoreError(f"{uri!r} needs a bucket and a prefix (s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def folder_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (symlinks followed), sorted, the manifest excluded."""
    if not folder.is_dir():
        raise CheckpointStoreError(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    if not files:
        raise CheckpointStoreError(f"{folder} has no files to upload")
    return files


def s3_client():
    """boto3's default chain; ``AWS_ENDPOINT_URL`` (or the profile's ``endpoint_url``) for S3-compatible stores."""
    import boto3

    return boto3.client("s3")


@dataclass
class Entry:
    path: str
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}


def _stored(client, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return {"bytes": head["ContentLength"], "sha256": (head.get("Metadata") or {}).get("sha256")}


def _with_retries(what: str, action: Callable[[], Any], retries: int, log: Callable[[str], None]) -> Any:
    """``action()``, tried ``retries`` times 1, 2, 4... s apart (at most 30): connection refused, 5xx
    and throttling are all worth another try. Each failed try is logged with its wait."""
    from tenacity import RetryError, Retrying, stop_after_attempt, wait_exponential

    def announce(state) -> None:
        log(f"{what}: attempt {state.attempt_number}/{retries} failed ({state.outcome.exception()}); "
            f"retrying in {state.next_action.sleep:.0f}s")

    try:
        return Retrying(stop=stop_after_attempt(retries), wait=wait_exponential(max=30), before_sleep=announce)(action)
    except RetryError as exc:
        raise CheckpointStoreError(f"{what} failed after {retries} attempts: {exc.last_attempt.exception()}") from None


def upload_folder(folder: str | Path, dest: str, *, client=None, retries: int = 5, concurrency: int = 4,
                  part_bytes: int = PART_BYTES, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Upload ``folder`` under ``dest`` (``s3://bucket/prefix``) and write the manifest last."""
    from boto3.s3.transfer import TransferConfig

    folder = Path(folder)
    bucket, prefix = split_s3(dest)
    client = client or s3_client()
    config = TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes,
                            max_concurrency=concurrency)
    entries, sent, skipped = [], 0, 0
    for path in folder_files(folder):
        rel = path.relative_to(folder).as_posix()
        entry = Entry(rel, path.stat().st_size, sha256_file(path))
        key = f"{prefix}/{rel}"
        have = _with_retries(f"HEAD s3://{bucket}/{key}", lambda: _stored(client, bucket, key), retries, log)
        if have and have["bytes"] == entry.bytes and have["sha256"] == entry.sha256:
            skipped += 1
        else:
            _with_retries(f"upload {path} to s3://{bucket}/{key}",
                          lambda: client.upload_file(str(path), bucket, key, Config=config,
                                                     ExtraArgs={"Metadata": {"sha256": entry.sha256}}),
                          retries, log)
            sent += 1
        entries.append(entry)
    manifest = {"format": "skillflow-checkpoint-manifest/1", "source": str(folder),
                "files": [e.as_dict() for e in entries], "total_bytes": sum(e.bytes for e in entries),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    body = json.dumps(manifest, indent=2).encode()
    _with_retries(f"upload s3://{bucket}/{prefix}/{MANIFEST}",
                  lambda: client.put_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}", Body=body,
                                            Metadata={"sha256": hashlib.sha256(body).hexdigest()}),
                  retries, log)
    log(f"uploaded {sent} file(s), {skipped} already stored, {manifest['total_bytes']} bytes under s3://{bucket}/{prefix}")
    return {"uri": f"s3://{bucket}/{prefix}", "manifest_uri": f"s3://{bucket}/{prefix}/{MANIFEST}",
            "manifest_sha256": hashlib.sha256(body).hexdigest(), "files": len(entries), "uploaded": sent,
            "skipped": skipped, "total_bytes": manifest["total_bytes"]}


def read_manifest(dest: str, *, client=None) -> dict[str, Any]:
    bucket, prefix = split_s3(dest)
    client = client or s3_client()
    try:
        body = client.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
    except Exception as exc:
        raise CheckpointStoreError(f"s3://{bucket}/{prefix}/{MANIFEST} cannot be read ({exc}): the upload "
                                   "did not finish, or the prefix is wrong") from None
    try:
        manifest = json.loads(body)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointStoreError(f"s3://{bucket}/{prefix}/{MANIFEST} is not a skillflow manifest") from None
    if not files:
        raise CheckpointStoreError(f"s3://{bucket}/{prefix}/{MANIFEST} lists no files")
    return manifest


def verify(dest: str, *, client=None, deep: bool = True) -> dict[str, Any]:
    """Compare every object under ``dest`` with the manifest: sizes always, SHA-256 by re-reading
    the bytes when ``deep`` (the only check that catches a corrupted store)."""
    bucket, prefix = split_s3(dest)
    client = client or s3_client()
    manifest = read_manifest(dest, client=client)
    problems = []
    for item in manifest["files"]:
        key = f"{prefix}/{item['path']}"
        stored = _stored(client, bucket, key)
        if stored is None:
            problems.append(f"s3://{bucket}/{key}: missing")
            continue
        if stored["bytes"] != item["bytes"]:
            problems.append(f"s3://{bucket}/{key}: {stored['bytes']} bytes, manifest says {item['bytes']}")
            continue
        if deep:
            h = hashlib.sha256()
            stream = client.get_object(Bucket=bucket, Key=key)["Body"]
            for block in iter(lambda: stream.read(8 << 20), b""):
                h.update(block)
            if h.hexdigest() != item["sha256"]:
                problems.append(f"s3://{bucket}/{key}: SHA-256 {h.hexdigest()} differs from the manifest's {item['sha256']}")
    if problems:
        raise CheckpointStoreError(f"{len(problems)} of {len(manifest['files'])} file(s) under s3://{bucket}/{prefix} "
                                   "do not match the manifest:\n" + "\n".join(problems[:20]))
    return {"uri": f"s3://{bucket}/{prefix}", "files": len(manifest["files"]), "total_bytes": manifest["total_bytes"],
            "deep": deep}


def register(subparsers) -> None:
    p = subparsers.add_parser("checkpoint", help="upload a checkpoint folder to S3 with a manifest; verify it")
    sub = p.add_subparsers(dest="step", required=True, metavar="STEP")
    up = sub.add_parser("upload", help="upload FOLDER to s3://bucket/prefix, manifest last, then verify")
    up.add_argument("folder")
    up.add_argument("dest")
    up.add_argument("--retries", type=int, default=5)
    up.add_argument("--no-verify", action="store_true", help="skip re-reading the objects after the upload")
    up.add_argument("--result", help="also write the result JSON to this file")
    up.set_defaults(handler=_cli_upload)
    ver = sub.add_parser("verify", help="re-read every object under s3://bucket/prefix and compare with the manifest")
    ver.add_argument("dest")
    ver.add_argument("--shallow", action="store_true", help="compare sizes only")
    ver.set_defaults(handler=_cli_verify)


def _cli_upload(args) -> int:
    try:
        result = upload_folder(args.folder, args.dest, retries=args.retries)
        if not args.no_verify:
            result["verified"] = verify(args.dest)
    except CheckpointStoreError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    text = json.dumps(result, indent=2)
    if args.result:
        tmp = f"{args.result}.tmp"
        Path(tmp).write_text(text + "\n")
        os.replace(tmp, args.result)
    print(text)
    return 0


def _cli_verify(args) -> int:
    try:
        print(json.dumps(verify(args.dest, deep=not args.shallow), indent=2))
    except CheckpointStoreError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    return 0
