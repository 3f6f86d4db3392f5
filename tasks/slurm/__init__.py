"""Slurm without Airflow: job specs, sbatch rendering, state tables and remote command builders.

Every shell command the operators send over SSH is built here by a small pure function, so it
can be unit-tested without a cluster and reused from the command line.
"""
