"""Grading of math answers: extraction, normalisation, equivalence and file grading.

Plain Python (no Airflow). sympy is imported only when a checker first needs it (its worker pool
starts), so importing this package stays cheap.
"""
