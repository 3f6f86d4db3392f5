"""S3 uploads whose result is checked, not assumed.

Large files go straight to S3 with multipart upload (never through the MLflow server); the
SHA-256 of what was sent is compared with what the bucket returns, and the URI plus checksum
are what the caller logs beside the artifact.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.checkpoint_store import sha256_file


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
