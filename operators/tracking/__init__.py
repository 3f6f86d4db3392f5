"""MLflow and S3 on the Airflow side: one MLflow run per DAG run, artifacts verified in S3."""
