"""Grading of math answers: extraction, normalisation, equivalence and file grading.

Plain Python (no Airflow). sympy is imported only inside the worker processes that need it, so
importing this package stays cheap.
"""
