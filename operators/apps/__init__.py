"""The Airflow-side steps of the APPS SFT DAG (``sft``)."""
