"""The Assets that connect skillflow's DAGs, defined once so producer and consumers agree.

Names read like URIs; the URIs use the ``x-`` prefix Airflow reserves for custom schemes: any
other unknown scheme makes Airflow load every provider's asset URI handler while parsing a DAG
file (the Amazon one imports boto3).
"""
from __future__ import annotations

from airflow.sdk import Asset

# openmath_datagen -> openmath_sft. Extra: uri, sha256, bytes, lines, cluster_path, mlflow_run_id.
SFT_DATA = Asset(name="skillflow://openmath/sft-data", uri="x-skillflow://openmath/sft-data")
# openmath_sft -> openmath_eval. Extra: model_path (what evaluation serves), s3_uri, manifest_sha256,
# registered_model, version, profile, eval (openmath_eval params for this model), mlflow_run_id.
SFT_CHECKPOINT = Asset(name="skillflow://openmath/sft-checkpoint", uri="x-skillflow://openmath/sft-checkpoint")
