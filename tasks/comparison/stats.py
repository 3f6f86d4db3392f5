"""The statistics behind every number skillflow reports and every comparison it makes.

* :func:`wilson_interval` -- the 95% Wilson score interval of one accuracy. Chosen over the normal
  ("Wald") interval because it stays inside [0, 1] and is not zero-width at 0% or 100%, which a
  small benchmark (or a weak model) reaches.
* :func:`seed_mean_std` -- mean and sample standard deviation (ddof=1) of per-seed accuracies, the
  spread NeMo-Skills reports for sampled modes.
* :func:`paired_bootstrap_ci` -- percentile bootstrap CI of the mean paired difference b - a,
  resampling problems (10,000 resamples, fixed seed). Resampling n problems with replacement is
  the same as drawing a multinomial count for each *distinct* difference value, so the resamples
  are drawn as counts, not as index arrays: a full-size MATH comparison costs milliseconds and a
  few MB instead of 10,000 x 5,000 indices.
* :func:`mcnemar_exact` -- exact two-sided McNemar test: under "no change", each discordant pair
  is a fair coin, so the p-value is the two-sided binomial(p = 0.5) tail of the smaller count.
* :func:`sign_test` -- the same exact binomial test on the signs of paired continuous differences
  (zeros dropped); used for APPS' per-problem pass@1 shares.
* :func:`holm` -- Holm's step-down adjustment of a family of p-values (controls the family-wise
  error rate without assuming independence; uniformly more powerful than Bonferroni).

Pure Python except the bootstrap (numpy, imported inside), so the cluster-side summary needs no numpy.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20240521  # fixed: the same inputs give the same interval on every machine
_CHUNK_CELLS = 4_000_000  # resamples x distinct values drawn per block: bounds memory (~32 MB)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` as fractions in [0, 1]; (0, 1) when n is 0.

    At 0 successes the low end is exactly 0 and the high end is z^2 / (n + z^2); at n successes,
    symmetrically. ``successes`` outside [0, n] is an error.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes} n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if successes == 0:
        low = 0.0
    if successes == n:
        high = 1.0
    return low, high


def seed_mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of per-seed accuracies; std is 0.0 for one seed."""
    if not values:
        raise ValueError("no per-seed values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(b - a) over problems resampled with replacement.

    ``a`` and ``b`` are per-problem scores of the same problems (0/1 correctness, or shares in
    [0, 1]); the interval is in the same units (multiply by 100 for points).
    """
    import numpy as np

    da, db = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if da.shape != db.shape or da.ndim != 1:
        raise ValueError(f"paired scores must be two vectors of one length, got {da.shape} and {db.shape}")
    n = da.size
    if n == 0:
        raise ValueError("no paired problems")
    values, counts = np.unique(db - da, return_counts=True)
    rng = np.random.default_rng(seed)
    probs = counts / n
    means = np.empty(resamples)
    block = max(1, _CHUNK_CELLS // values.size)
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        drawn = rng.multinomial(n, probs, size=size)
        means[start:start + size] = drawn @ values / n
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of seeing k of n heads from a fair coin: 2 * P(X <= min(k, n-k)), at most 1."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k} n={n}")
    if n == 0:
        return 1.0
    small = min(k, n - k)
    if 2 * small == n:
        return 1.0
    tail, term = 0, 1
    for i in range(small + 1):  # sum of C(n, i), i <= small, in exact integers
        tail += term
        term = term * (n - i) // (i + 1)
    return min(1.0, float(Fraction(2 * tail, 2 ** n)))


def mcnemar_exact(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs (1.0 when there are none)."""
    if gained < 0 or lost < 0:
        raise ValueError(f"counts must be >= 0, got gained={gained} lost={lost}")
    return binomial_two_sided(gained, gained + lost)


def sign_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, int, int]:
    """Exact two-sided sign test of paired scores: (p-value, problems where b > a, where b < a); ties dropped."""
    if len(a) != len(b):
        raise ValueError(f"paired scores differ in length: {len(a)} and {len(b)}")
    up = sum(1 for x, y in zip(a, b) if y > x)
    down = sum(1 for x, y in zip(a, b) if y < x)
    return binomial_two_sided(up, up + down), up, down


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the input order: compare each with the level directly."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
