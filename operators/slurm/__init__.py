"""Slurm over SSH for Airflow: a hook, a shared async poller, a trigger and a deferrable operator."""
from operators.slurm.errors import SlurmJobError  # noqa: F401
