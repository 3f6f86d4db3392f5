"""The OpenMath recipe: evaluation, data generation and SFT of math models (docs/recipes/openmath.md).

Each DAG has its plan module here (``evaluation``, ``datagen``, ``sft``: the form, the plan, the
CPU steps), and ``steps`` builds its Slurm jobs. Around them: the benchmark data (``datasets/``),
grading results turned into metrics (``metrics``, ``summarize``), run comparison (``compare``,
``run_sources``), the nightly regression verdicts (``regressions``) and the SFT data pipeline
(``sft_data/``).
"""
