"""tasks.openmath.regressions: significant and large drops are regressions; noise and unmeasured metrics are not."""
from __future__ import annotations

import random

from tasks.openmath.compare import paired_statistics
from tasks.openmath.regressions import format_report, interval_verdict, paired_verdict, published_for


def _rows(pairs: dict[str, tuple[list[bool], list[bool]]]):
    rows, flips = {}, {}
    for key, (a, b) in pairs.items():
        bench, mode = key.split(" ")
        row, flipped = paired_statistics(a, b)
        rows.setdefault(bench, {})[mode] = row
        flips.setdefault(bench, {})[mode] = flipped
    return rows, flips


def _night(n: int, accuracy: float, seed: int) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < accuracy for _ in range(n)]


def _flip(outcomes: list[bool], positions: list[int]) -> list[bool]:
    out = list(outcomes)
    for i in positions:
        out[i] = not out[i]
    return out


def test_noise_flips_both_ways_are_not_a_regression():
    before = _night(1319, 0.8, 1)
    right = [i for i, x in enumerate(before) if x]
    wrong = [i for i, x in enumerate(before) if not x]
    after = _flip(before, right[:9] + wrong[:6])  # 9 lost, 6 gained: -0.23 points, p = 0.61
    rows, flips = _rows({"gsm8k greedy": (before, after)})
    verdict = paired_verdict(rows, flips, "previous nightly run r1")
    (finding,) = verdict.findings
    assert (finding.lost, finding.gained) == (9, 6) and not finding.regression
    assert finding.p_value > 0.5 and verdict.regressions == []
    assert "no regression" in format_report("m v1", [verdict], alpha=0.05, min_effect=1.0)


def test_losing_a_real_share_is_a_regression_with_the_full_report():
    before = _night(1319, 0.8, 2)
    right = [i for i, x in enumerate(before) if x]
    wrong = [i for i, x in enumerate(before) if not x]
    after = _flip(before, right[:70] + wrong[:10])  # 70 lost, 10 gained: -4.5 points
    same = _night(500, 0.45, 3)
    rows, flips = _rows({"gsm8k greedy": (before, after), "math greedy": (same, same)})
    verdict = paired_verdict(rows, flips, "previous nightly run r1")
    bad = verdict.regressions
    assert [f.metric for f in bad] == ["gsm8k.greedy.correct_answer"]
    f = bad[0]
    assert (f.lost, f.gained) == (70, 10) and f.p_adjusted < 1e-6 and f.ci[1] < 0
    assert f.diff == -60 * 100 / 1319 and list(f.first_lost) == right[:10]
    report = format_report("m v1", [verdict], alpha=0.05, min_effect=1.0)
    assert report.startswith("m v1: 1 regression(s)")
    assert f"first lost problems {right[:10]}" in report and "lost 70, gained 10" in report
    assert "Holm" in report and "ok         math.greedy.correct_answer" in report


def test_significant_but_tiny_drop_is_below_the_minimum_effect():
    before = [True] * 20_000
    after = _flip(before, list(range(40)))  # 40 lost, 0 gained: p ~ 1e-12, but only -0.2 points
    rows, flips = _rows({"big greedy": (before, after)})
    verdict = paired_verdict(rows, flips, "prev", min_effect=1.0)
    assert verdict.findings[0].p_value < 1e-9 and verdict.regressions == []
    assert paired_verdict(rows, flips, "prev", min_effect=0.1).regressions


def test_holm_correction_spans_every_metric_of_the_model():
    # One drop at p ~ 0.02: significant alone, not after Holm over 5 tests (0.02 * 5 > 0.05).
    base = _night(300, 0.5, 4)
    right = [i for i, x in enumerate(base) if x]
    # 7 lost, 0 gained: exact McNemar p = 2 / 2**7 = 0.0156, a drop of 2.3 points.
    lone_rows, lone_flips = _rows({"a greedy": (base, _flip(base, right[:7]))})
    p = lone_rows["a"]["greedy"]["p_value"]
    assert 0.01 < p < 0.05 and paired_verdict(lone_rows, lone_flips, "prev", min_effect=0.5).regressions
    many = {"a greedy": (base, _flip(base, right[:7]))}
    many.update({f"b{i} greedy": (base, base) for i in range(4)})
    rows, flips = _rows(many)
    assert paired_verdict(rows, flips, "prev", min_effect=0.5).regressions == []


def test_published_numbers_use_the_runs_own_interval_and_skip_unmeasured_metrics():
    """Issue 23: a greedy-only night is not a regression against published majority@50 numbers."""
    published = published_for("/models/OpenMath-Mistral-7B-v0.1-hf")
    current = {"gsm8k.greedy.correct_answer": 79.6, "gsm8k.greedy.num_entries": 1319,
               "math.greedy.correct_answer": 44.0, "math.greedy.num_entries": 5000}
    verdict = interval_verdict(current, published, "published numbers")
    assert verdict.regressions == []
    assert verdict.not_evaluated == ["gsm8k.majority_at_50.correct_answer", "math.majority_at_50.correct_answer"]
    report = format_report("m v1", [verdict], alpha=0.05, min_effect=1.0)
    assert report.startswith("m v1: no regression")
    assert "not evaluated by this run (not compared): gsm8k.majority_at_50" in report and "missing" not in report
    worse = dict(current, **{"math.greedy.correct_answer": 41.0})  # interval ~[39.6, 42.4] < 44.5
    (bad,) = interval_verdict(worse, published, "published numbers").regressions
    assert bad.metric == "math.greedy.correct_answer" and bad.ci[1] < 44.5


def test_small_benchmark_drop_inside_its_interval_is_not_flagged():
    # algebra222: 222 problems; 3 points below the reference is inside a +-6 point interval.
    verdict = interval_verdict({"algebra222.greedy.correct_answer": 60.0, "algebra222.greedy.num_entries": 222},
                               {"algebra222.greedy.correct_answer": 63.0}, "previous nightly run r0")
    assert verdict.findings and verdict.regressions == []


def test_published_lookup_by_model_path():
    assert published_for("/models/OpenMath-Mistral-7B-v0.1-hf")["math.greedy.correct_answer"] == 44.5
    assert published_for("/models/OpenMath-Mistral-7B-v0.1")["gsm8k.majority_at_50.correct_answer"] == 86.9
    assert published_for("/models/my-own-model") is None
