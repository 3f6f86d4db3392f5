"""SFT data for the OpenMath recipe: masked reference solutions, correct-solution collection, prepare.

Three steps of docs/recipes/openmath.md §8.3–§9, each a streaming function plus a ``skillflow sft-data``
sub-command:

- :mod:`.masked`  picks one masked reference solution per problem from the masked-solution runs;
- :mod:`.collect` gathers the correct, de-duplicated solutions of the labeling runs (the shape of
  OpenMathInstruct-1's ``correct_solutions`` files);
- :mod:`.prepare` turns those into the SFT jsonl (filters, trimming, text filter, downsampling).

Every step returns a plain stats dict; :func:`.stats.flatten_metrics` turns it into MLflow metrics.
"""
