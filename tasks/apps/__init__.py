"""APPS code-generation data and evaluation (docs/recipes/apps_sft.md §2.2, §2.4, §3, §4).

* :mod:`tasks.apps.prepare` -- raw APPS rows to the SFT file and the test prompts;
* :mod:`tasks.apps.mapcoder` -- MapCoder/xCodeEval-format subsets to APPS rows;
* :mod:`tasks.apps.execute` -- one program against one problem, reference harness semantics;
* :mod:`tasks.apps.passk` -- the unbiased pass@k estimator;
* :mod:`tasks.apps.evaluate` -- samples file to results and pass@k summary.

Kept import-free on purpose: the sandbox workers preload :mod:`tasks.apps.driver`, which imports
this package first.
"""
