from __future__ import annotations

import math

from tasks.regressions import find_regressions, format_report, published_for

PREVIOUS = {"gsm8k.greedy.correct_answer": 80.0, "math.greedy.correct_answer": 44.0,
            "gsm8k.greedy.no_answer": 1.0, "math.majority_at_50.correct_answer": 57.0}


def test_equal_run_passes():
    assert find_regressions(dict(PREVIOUS), previous=PREVIOUS, tolerance=1.0) == []


def test_planted_regression_is_flagged_with_both_baselines():
    current = dict(PREVIOUS, **{"math.greedy.correct_answer": 40.0})
    published = {"math.greedy.correct_answer": 44.5, "gsm8k.greedy.correct_answer": 80.2}
    found = find_regressions(current, previous=PREVIOUS, published=published, tolerance=1.0)
    assert [(r.metric, r.baseline) for r in found] == [("math.greedy.correct_answer", "previous nightly run"),
                                                       ("math.greedy.correct_answer", "published")]
    assert found[0].drop == 4.0
    report = format_report("m", found, 1.0)
    assert "2 regression(s)" in report and "40.00 vs  44.00" in report


def test_drop_within_tolerance_and_non_accuracy_metrics_pass():
    current = dict(PREVIOUS, **{"gsm8k.greedy.correct_answer": 79.2, "gsm8k.greedy.no_answer": 30.0})
    assert find_regressions(current, previous=PREVIOUS, tolerance=1.0) == []


def test_missing_benchmark_counts_as_regression():
    current = {k: v for k, v in PREVIOUS.items() if not k.startswith("math.majority")}
    found = find_regressions(current, previous=PREVIOUS)
    assert len(found) == 1 and math.isnan(found[0].observed)
    assert "missing" in format_report("m", found, 1.0)


def test_published_lookup_by_model_path():
    assert published_for("/models/OpenMath-Mistral-7B-v0.1-hf")["math.greedy.correct_answer"] == 44.5
    assert published_for("/models/OpenMath-Mistral-7B-v0.1")["gsm8k.majority_at_50.correct_answer"] == 86.9
    assert published_for("/models/my-own-model") is None
