"""APPS base vs SFT paired per problem: shares, sign test, bootstrap CI, groups by difficulty."""
from __future__ import annotations

import json

import pytest
from scipy import stats as sps

from tasks.apps.paired import PairingError, format_rows, paired_apps, problem_counts
from tests.markdown import markdown_rows


def test_counts_from_results_jsonl(tmp_path):
    path = tmp_path / "results.jsonl"
    recs = [{"problem_id": 1, "sample": s, "passed": s < 2} for s in range(4)] + \
           [{"problem_id": "x", "sample": 0, "passed": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert problem_counts(path) == {"1": (4, 2), "x": (1, 0)}


def test_paired_rows_per_difficulty_with_sign_test():
    ids = [str(i) for i in range(12)]
    difficulty = {p: ("introductory" if int(p) < 8 else "competition") for p in ids}
    base = {p: (4, 1) for p in ids}
    sft = {p: (4, 3) if int(p) < 7 else (4, 1) for p in ids}  # 7 introductory problems rose
    sft["11"] = (4, 0)  # one competition problem fell
    rows, flips = paired_apps(base, sft, difficulty)
    assert list(rows) == ["apps.total", "apps.introductory", "apps.competition"]
    total = rows["apps.total"]["pass@1"]
    assert (total["n"], total["gained"], total["lost"]) == (12, 7, 1)
    assert total["a"] == pytest.approx(25.0) and total["diff"] == pytest.approx(100 * (7 * 0.5 - 0.25) / 12)
    assert total["p_value"] == pytest.approx(sps.binomtest(7, 8, 0.5).pvalue)
    assert total["ci95"][0] < total["diff"] < total["ci95"][1]
    assert flips["apps.competition"]["pass@1"] == {"gained": [], "lost": ["11"]}
    assert ["introductory", "8"] in [r[:2] for r in markdown_rows(format_rows(rows))]


def test_different_problem_sets_are_refused():
    with pytest.raises(PairingError, match="benchmark 'apps'"):
        paired_apps({"1": (1, 1)}, {"2": (1, 1)}, {})
