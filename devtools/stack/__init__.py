"""The local stack: every service of the ``local`` cluster profile, real, on loopback.

munge + slurmctld + slurmd (with emulated GPUs), sshd, an S3-compatible server that keeps its
data on disk, an MLflow server, Airflow's api-server, scheduler, dag-processor and triggerer,
and the local model server. Each runs with a pid file and a log under ``var/``; starting and
stopping are idempotent.
"""
