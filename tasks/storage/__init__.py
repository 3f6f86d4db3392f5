"""Files and objects: JSON Lines I/O (``jsonl``), S3 URIs and clients (``s3``), verified
checkpoint upload and download with a checksum manifest (``checkpoints``)."""
