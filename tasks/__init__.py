"""Plain-Python work of skillflow: no Airflow imports anywhere below this package.

The same code runs on the Airflow worker, inside cluster containers and from the
``skillflow`` command line, so it must import without Airflow installed.
"""
