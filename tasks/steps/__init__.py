"""What every recipe's step builders share: pure functions from typed params to a Slurm job.

Each recipe keeps its builders in its own room (:mod:`tasks.openmath.steps`, :mod:`tasks.apps.steps`,
:mod:`tasks.sft.steps` for the SFT plumbing both use). A builder takes a params dataclass and a
:class:`tasks.profiles.ClusterProfile` and returns a :class:`tasks.steps.base.RecipeJob` (the
:class:`tasks.slurm.spec.JobSpec`, the files the job is expected to write, and the directories that
must exist before it is submitted). Nothing here imports Airflow or touches a cluster.

* :mod:`tasks.steps.base` -- the result type, job options, path mapping, quoting and checks, and the
  plan pieces every DAG's plan uses (``PlanError``, ``output_dir``, ``spec_dict``).
* :mod:`tasks.steps.engines` -- the model servers (NeMo-Skills, the native llama.cpp/vLLM server) and
  the sandbox sidecar a step runs beside its command.
"""
