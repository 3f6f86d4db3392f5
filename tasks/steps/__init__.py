"""Step builders for the published recipes: pure functions from typed params to a Slurm job.

Each builder takes a params dataclass and a :class:`tasks.profiles.ClusterProfile` and returns a
:class:`tasks.steps.base.RecipeJob` (the :class:`tasks.slurm.spec.JobSpec`, the files the job
is expected to write, and the directories that must exist before it is submitted). Nothing here
imports Airflow or touches a cluster; DAGs and operators call these and submit the result.

* :mod:`tasks.openmath.steps` -- OpenMath / NeMo-Skills: conversion, evaluation, labeling, SFT.
* :mod:`tasks.apps.steps` -- APPS: OpenRLHF SFT on two nodes and vLLM sampling.
"""
