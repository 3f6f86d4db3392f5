"""The Airflow-side steps of the OpenMath DAGs: ``evaluation``, ``datagen``, ``sft``, ``nightly``."""
