"""pass@k against values worked out by hand (docs/recipes/apps_sft.md §4)."""
from __future__ import annotations

import math

import pytest

from tasks.apps.passk import pass_at_k, pass_at_k_unguarded, seed_lines, summarise


def test_pass_at_1_is_fraction_correct():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_at_k_matches_binomial_form_by_hand():
    # n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252 = 11/12
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12)
    # n=5, c=1, k=2: 1 - C(4,2)/C(5,2) = 1 - 6/10 = 0.4
    assert pass_at_k(5, 1, 2) == pytest.approx(0.4)
    assert pass_at_k(10, 1, 10) == 1.0
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(20, 4, 10) == pytest.approx(1 - math.comb(16, 10) / math.comb(20, 10))


def test_n_smaller_than_k_is_refused_but_seed_variant_says_one():
    with pytest.raises(ValueError, match="pass@10 needs at least 10 samples, got n=4"):
        pass_at_k(4, 0, 10)
    # The seed's formula has no guard: n - c = 4 < 10 gives 1.0 even with no correct sample.
    assert pass_at_k_unguarded(4, 0, 10) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_summary_by_difficulty_and_unavailable_k():
    counts = {0: (10, 3), 1: (10, 0), 3000: (10, 10), 4000: (4, 1)}
    diff = {0: "interview", 1: "interview", 3000: "competition", 4000: "introductory"}
    s = summarise(counts, diff, ks=(1, 5))
    assert list(s) == ["total", "interview", "competition", "introductory"]  # first appearance by id
    # interview pass@1 = (0.3 + 0) / 2; pass@5 = (11/12 + 0) / 2
    assert s["interview"]["pass@1"] == pytest.approx(0.15)
    assert s["interview"]["pass@5"] == pytest.approx(11 / 24)
    assert s["competition"]["pass@5"] == 1.0
    # problem 4000 has n=4 < 5: pass@5 is unavailable for its group and for the total, and named
    assert s["introductory"]["pass@1"] == pytest.approx(0.25)
    assert s["introductory"]["pass@5"] is None and s["introductory"]["short@5"] == [4000]
    assert s["total"]["pass@5"] is None
    assert s["total"]["pass@1"] == pytest.approx((0.3 + 0 + 1 + 0.25) / 4)
    lines = seed_lines(s, ks=(1, 5))
    assert lines[0] == {"difficulty": "total", "k": 1, "pass@k": pytest.approx(0.3875)}
    assert len(lines) == 8 and lines[4]["k"] == 5
