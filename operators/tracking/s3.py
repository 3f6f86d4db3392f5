"""S3 uploads whose result is checked, not assumed, and S3 objects staged onto the cluster.

Large files go straight to S3 with multipart upload (never through the MLflow server); the
SHA-256 of what was sent is compared with what the bucket returns, and the URI plus checksum
are what the caller logs beside the artifact.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from tasks.storage.checkpoints import sha256_file


def s3_client(aws_conn_id: str | None):
    """boto3 client from the Airflow AWS connection (endpoint_url in its extra for S3-compatible servers)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


def upload_verified(client, local_path: str | Path, bucket: str, key: str, retries: int = 5) -> dict[str, str | int]:
    """Upload, then download-hash the stored object and compare; any failure (connection refused,
    5xx, checksum mismatch) is retried, 1, 2, 4... s apart (at most 20)."""
    from boto3.s3.transfer import TransferConfig
    from tenacity import RetryError, Retrying, stop_after_attempt, wait_exponential

    digest = sha256_file(local_path)
    size = Path(local_path).stat().st_size
    config = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)

    def attempt() -> dict[str, str | int]:
        client.upload_file(str(local_path), bucket, key, Config=config, ExtraArgs={"Metadata": {"sha256": digest}})
        stored = stored_sha256(client, bucket, key)
        if stored != digest:
            raise IOError(f"s3://{bucket}/{key}: stored object's SHA-256 {stored} differs from the local {digest}")
        return {"uri": f"s3://{bucket}/{key}", "sha256": digest, "bytes": size}

    try:
        return Retrying(stop=stop_after_attempt(retries), wait=wait_exponential(max=20))(attempt)
    except RetryError as exc:
        raise IOError(f"upload of {local_path} to s3://{bucket}/{key} failed after {retries} tries: "
                      f"{exc.last_attempt.exception()}") from None


def stored_sha256(client, bucket: str, key: str) -> str:
    h = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for block in iter(lambda: body.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def stage_from_s3(hook, profile, source: str, target: str, param: str = "model") -> None:
    """Copy the object (or every object under the prefix) to the cluster through the worker.

    The worker holds the S3 credentials, so they never reach the cluster or a job script. A
    ``.staged`` marker with the objects' ETags makes a second run (or a retry) skip the copy.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from tasks.storage.checkpoints import split_uri

    client = s3_client(profile.aws_conn_id)
    bucket, key = split_uri(source)
    single = target.rsplit("/", 1)[-1] == key.rsplit("/", 1)[-1]
    folder = target.rsplit("/", 1)[0] if single else target
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        objects += [o for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    if single:
        objects = [o for o in objects if o["Key"] == key]
    if not objects:
        raise AirflowFailException(f"param '{param}': no object at {source}")
    manifest = {o["Key"]: o["ETag"] for o in objects}
    marker = f"{folder}/.staged"
    current = hook.read_text(marker)
    if current and json.loads(current) == manifest:
        print(f"{source} is already staged at {target}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for obj in objects:
            rel = obj["Key"].rsplit("/", 1)[-1] if single else obj["Key"][len(key):].lstrip("/")
            local = Path(tmp, "obj")
            client.download_file(bucket, obj["Key"], str(local))
            hook.upload(str(local), f"{folder}/{rel}")
            print(f"staged s3://{bucket}/{obj['Key']} -> {folder}/{rel} ({obj['Size']} bytes)")
            local.unlink()
    hook.write_text(marker, json.dumps(manifest), mode="644")
