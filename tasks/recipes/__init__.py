"""Step builders for the published recipes: pure functions from typed params to a Slurm job.

Each builder takes a params dataclass and a :class:`tasks.profiles.ClusterProfile` and returns a
:class:`tasks.recipes.common.RecipeJob` (the :class:`tasks.slurm.spec.JobSpec`, the files the job
is expected to write, and the directories that must exist before it is submitted). Nothing here
imports Airflow or touches a cluster; DAGs and operators call these and submit the result.

* :mod:`tasks.recipes.openmath` -- OpenMath / NeMo-Skills: conversion, evaluation, labeling, SFT.
* :mod:`tasks.recipes.apps` -- APPS: OpenRLHF SFT on two nodes and vLLM sampling.
"""
