"""Checkpoint folders to S3 and back, against the stack's real S3 server (s3rver)."""
from __future__ import annotations

import os
import uuid

import pytest

from tasks.storage.checkpoints import MANIFEST, CheckpointStoreError, read_manifest, upload_folder, verify

pytestmark = pytest.mark.integration


@pytest.fixture()
def s3(stack):
    import boto3

    env = stack.env
    return boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


def make_checkpoint(root):
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}\n')
    (root / "tokenizer" / "tokenizer.json").write_text("{}\n")
    (root / "model.safetensors").write_bytes(os.urandom(12 << 20))  # 3 parts of 5 MiB
    return root


def test_upload_is_multipart_resumable_and_verified_byte_for_byte(s3, tmp_path):
    folder = make_checkpoint(tmp_path / "ckpt")
    dest = f"s3://skillflow/selftest/checkpoints/{uuid.uuid4().hex[:8]}"
    parts = []
    s3.meta.events.register("provide-client-params.s3.UploadPart", lambda **kw: parts.append(kw["params"]["PartNumber"]))
    first = upload_folder(folder, dest, client=s3, part_bytes=5 << 20, log=lambda m: None)
    assert (first["files"], first["uploaded"], first["skipped"]) == (3, 3, 0)
    manifest = read_manifest(dest, client=s3)
    assert [f["path"] for f in manifest["files"]] == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    bucket, prefix = dest[5:].split("/", 1)
    assert sorted(parts) == [1, 2, 3]  # the 12 MiB file really went up in parts
    assert verify(dest, client=s3)["files"] == 3

    # A retried upload sends nothing that is already stored whole.
    again = upload_folder(folder, dest, client=s3, part_bytes=5 << 20, log=lambda m: None)
    assert (again["uploaded"], again["skipped"]) == (0, 3)

    # Same size, other bytes: only the deep check can see it, and it names the object.
    s3.put_object(Bucket=bucket, Key=f"{prefix}/config.json", Body=b'{"model_type": "LLAMA"}\n')
    assert verify(dest, client=s3, deep=False)["files"] == 3
    with pytest.raises(CheckpointStoreError, match=r"config\.json: SHA-256 .* differs"):
        verify(dest, client=s3)
    s3.delete_object(Bucket=bucket, Key=f"{prefix}/tokenizer/tokenizer.json")
    with pytest.raises(CheckpointStoreError, match=r"tokenizer/tokenizer\.json: missing"):
        verify(dest, client=s3, deep=False)


def test_a_prefix_without_manifest_is_not_a_checkpoint(s3, tmp_path):
    dest = f"s3://skillflow/selftest/checkpoints/{uuid.uuid4().hex[:8]}"
    bucket, prefix = dest[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/model.safetensors", Body=b"half")
    with pytest.raises(CheckpointStoreError, match=MANIFEST):
        verify(dest, client=s3)
    with pytest.raises(CheckpointStoreError, match="no files"):
        upload_folder(tmp_path, dest, client=s3)
