"""Airflow-facing layer of skillflow: hooks, operators and triggers.

Installed as a package because Airflow's triggerer does not load code from the DAG folder.
"""
