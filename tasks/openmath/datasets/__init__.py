"""Benchmark preparation: upstream files -> NeMo-Skills ``<benchmark>/<split>.jsonl`` (spec §2)."""
