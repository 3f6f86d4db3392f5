"""Comparing runs, shared by both recipes: paired statistics (``stats``), the plots
(``plots``) and logging a comparison to MLflow (``tracking``)."""
