"""``cluster_check``: run once against a new cluster profile, before the first real DAG run.

The profile states facts (images, mounts, limits, model paths, credentials) that nothing checks
until a GPU job trips over one of them hours into a run. This package turns each fact into a
check that runs where the jobs will run:

* :mod:`tasks.cluster_check.probes` plans one tiny Slurm job per distinct image (and one for the
  sandbox image) on the profile's partition;
* :mod:`tasks.cluster_check.probe` is what such a job runs inside its container;
* :mod:`tasks.cluster_check.partition` reads the partition's real limits from ``scontrol``;
* :mod:`tasks.cluster_check.table` is the one table of results, each with its fix.
"""
