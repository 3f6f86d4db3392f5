"""tasks.comparison.stats against hand-computed values and scipy (an independent implementation)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from tasks.comparison.stats import (binomial_two_sided, holm, mcnemar_exact, paired_bootstrap_ci, seed_mean_std, sign_test,
                                    wilson_interval)


# Wilson ---------------------------------------------------------------------------------------

def test_wilson_at_zero_and_hundred_percent_by_hand():
    # p = 0: low is 0 and high is z^2 / (n + z^2); p = 1 mirrors it.
    z2 = 1.959963984540054 ** 2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(1 - z2 / (10 + z2))
    assert wilson_interval(0, 10)[1] == pytest.approx(0.27753279986288993)


def test_wilson_matches_scipy_binomtest():
    for k, n in ((0, 1), (1, 1), (3, 7), (1055, 1319), (222, 222), (50, 100)):
        ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = wilson_interval(k, n)
        assert (low, high) == (pytest.approx(ref.low, abs=1e-12), pytest.approx(ref.high, abs=1e-12)), (k, n)


def test_wilson_bad_input_and_empty():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


# McNemar / sign test ----------------------------------------------------------------------------

def test_mcnemar_small_tables_by_hand():
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pairs: no evidence of a change
    assert mcnemar_exact(0, 1) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert mcnemar_exact(1, 5) == pytest.approx(2 * 7 / 64)  # 2 * (C(6,0)+C(6,1)) / 2^6
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(2, 8) == mcnemar_exact(8, 2) == pytest.approx(2 * 56 / 1024)


def test_mcnemar_matches_scipy_exact_binomial():
    for gained, lost in ((0, 7), (4, 9), (10, 30), (120, 160), (1000, 1100), (2500, 2400)):
        ref = sps.binomtest(gained, gained + lost, 0.5, alternative="two-sided").pvalue
        assert mcnemar_exact(gained, lost) == pytest.approx(ref, rel=1e-9), (gained, lost)


def test_sign_test_drops_ties():
    p, up, down = sign_test([0.2, 0.5, 0.5, 0.1, 0.0], [0.4, 0.5, 0.1, 0.3, 0.6])
    assert (up, down) == (3, 1) and p == binomial_two_sided(3, 4) == pytest.approx(10 / 16)
    p, up, down = sign_test([0.0] * 9, [0.5] * 9)
    assert (up, down) == (9, 0) and p == pytest.approx(2 / 512)


# Bootstrap --------------------------------------------------------------------------------------

def test_bootstrap_width_matches_analytic_paired_standard_error():
    rng = np.random.default_rng(7)
    n = 20_000
    a = rng.random(n) < 0.70
    flip = rng.random(n)
    b = np.where(flip < 0.06, ~a, a)  # 6% of problems flip, in both directions
    b[(~a) & (flip > 0.97)] = True  # a real gain on top
    d = b.astype(float) - a.astype(float)
    se = d.std(ddof=1) / math.sqrt(n)
    low, high = paired_bootstrap_ci(a, b)
    assert (high - low) == pytest.approx(2 * 1.959963984540054 * se, rel=0.05)
    assert low < d.mean() < high


def test_bootstrap_is_deterministic_and_handles_identical_runs():
    a = [True, False, True, True, False] * 40
    b = [True, True, False, True, False] * 40
    assert paired_bootstrap_ci(a, b) == paired_bootstrap_ci(a, b)
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1, 0], [1])


def test_bootstrap_of_shares_in_small_blocks_equals_one_block(monkeypatch):
    import tasks.comparison.stats as stats

    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 11, 300) / 10, rng.integers(0, 11, 300) / 10
    whole = paired_bootstrap_ci(a, b)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 50)  # many blocks: the draws must not depend on block size
    assert paired_bootstrap_ci(a, b) == (pytest.approx(whole[0]), pytest.approx(whole[1]))
    assert whole[0] < (b - a).mean() < whole[1]


# Seeds and Holm ---------------------------------------------------------------------------------

def test_seed_mean_std_is_sample_std():
    mean, std = seed_mean_std([70.0, 72.0, 74.0])
    assert mean == 72.0 and std == pytest.approx(2.0)
    assert seed_mean_std([55.5]) == (55.5, 0.0)


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
