"""Benchmark preparation: upstream files -> NeMo-Skills ``<benchmark>/<split>.jsonl`` (docs/recipes/openmath.md §2)."""
