"""Look at what is really in the bucket, from the command line (no Airflow connection needed)."""
from __future__ import annotations

import hashlib

from tasks.storage.checkpoints import split_uri


def client(env: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


def sha256_of_object(uri: str, env: dict[str, str]) -> str:
    bucket, key = split_uri(uri)
    body = client(env).get_object(Bucket=bucket, Key=key)["Body"]
    h = hashlib.sha256()
    for block in iter(lambda: body.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()
