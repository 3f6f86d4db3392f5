"""`skillflow compare` and the intervals of `skillflow summarize` on graded files written here."""
from __future__ import annotations

import json

import pytest
from scipy import stats as sps

from tasks.cli import main
from tasks.openmath.compare import CompareError, _data_notes, compare_outcomes, load_results_dir
from tasks.openmath.summarize import summarize


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _graded(questions, correct, answers=None):
    answers = answers or ["1"] * len(questions)
    return [{"question": q, "expected_answer": "1", "predicted_answer": a, "is_correct": c}
            for q, c, a in zip(questions, correct, answers)]


QUESTIONS = [f"q{i}" for i in range(10)]


def _run(root, greedy, samples=None):
    _write(root / "gsm8k" / "output-greedy.jsonl", _graded(QUESTIONS, greedy))
    for s, correct in enumerate(samples or []):
        _write(root / "gsm8k" / f"output-rs{s}.jsonl", _graded(QUESTIONS, correct))
    return root


def test_compare_reports_every_key_flips_and_writes_json(tmp_path, capsys):
    a_greedy = [True] * 6 + [False] * 4
    b_greedy = [True] * 4 + [False] * 2 + [True] * 3 + [False]  # lost 4, 5; gained 6, 7, 8
    a = _run(tmp_path / "a", a_greedy, [[True] * 5 + [False] * 5] * 2)
    b = _run(tmp_path / "b", b_greedy, [[True] * 7 + [False] * 3] * 2)
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert list(rows["gsm8k"]) == ["greedy", "majority@2", "pass@2"]
    g = rows["gsm8k"]["greedy"]
    assert set(g) == {"n", "a", "b", "diff", "ci95", "p_value", "gained", "lost"}
    assert (g["n"], g["a"], g["b"], g["gained"], g["lost"]) == (10, 60.0, 70.0, 3, 2)
    assert g["diff"] == pytest.approx(10.0)
    assert g["p_value"] == pytest.approx(sps.binomtest(3, 5, 0.5).pvalue)
    assert g["ci95"][0] < 10.0 < g["ci95"][1]
    maj = rows["gsm8k"]["majority@2"]
    assert (maj["gained"], maj["lost"], maj["p_value"]) == (2, 0, 0.5)
    flips = json.loads((tmp_path / "cmp.flips.json").read_text())
    assert flips["gsm8k"]["greedy"] == {"gained": [6, 7, 8], "lost": [4, 5]}
    printed = capsys.readouterr().out
    assert "majority@2" in printed and "checked by question text only" in printed


def test_mismatched_problems_are_an_error_naming_the_benchmark(tmp_path, capsys):
    a = _run(tmp_path / "a", [True] * 10)
    b = tmp_path / "b"
    _write(b / "gsm8k" / "output-greedy.jsonl", _graded(QUESTIONS[:3] + ["other"] + QUESTIONS[4:], [True] * 10))
    with pytest.raises(CompareError, match=r"benchmark 'gsm8k': problem 3 .*'q3' vs 'other'"):
        compare_outcomes(load_results_dir(a), load_results_dir(b))
    _write(b / "gsm8k" / "output-greedy.jsonl", _graded(QUESTIONS[:9], [True] * 9))
    assert main(["compare", str(a), str(b)]) == 2
    assert "benchmark 'gsm8k': A has 10 problems, B has 9" in capsys.readouterr().err


def test_benchmarks_and_modes_on_one_side_only_are_noted_not_compared(tmp_path):
    a = _run(tmp_path / "a", [True] * 10, [[True] * 10] * 3)
    b = _run(tmp_path / "b", [False] * 10)
    _write(b / "math" / "output-greedy.jsonl", _graded(["m"], [True]))
    result = compare_outcomes(load_results_dir(a), load_results_dir(b))
    assert list(result.rows) == ["gsm8k"] and list(result.rows["gsm8k"]) == ["greedy"]
    assert result.only_in_a == [("gsm8k", "majority@3"), ("gsm8k", "pass@3")]
    assert result.only_in_b == [("math", "greedy")]
    assert result.rows["gsm8k"]["greedy"]["p_value"] == pytest.approx(2 / 1024)


def test_differing_dataset_digests_are_refused_unless_allowed():
    a, b = {"gsm8k": "aaa111", "math": "bbb"}, {"gsm8k": "aaa222", "math": "bbb"}
    with pytest.raises(CompareError, match=r"gsm8k \(aaa111 vs aaa222\).*--allow-different-data"):
        _data_notes(a, b, allow=False)
    (note,) = _data_notes(a, b, allow=True)
    assert "gsm8k" in note and "compared anyway" in note
    assert _data_notes(a, dict(a), allow=False) == []


def test_summarize_adds_wilson_interval_and_seed_spread(tmp_path, capsys):
    _run(tmp_path, [True] * 10, [[True] * 10, [True] * 8 + [False] * 2, [True] * 6 + [False] * 4])
    results = summarize(tmp_path)["gsm8k"]
    assert results["greedy"]["correct_answer.ci_low"] == pytest.approx(100 * 0.7224672001371101)
    assert results["greedy"]["correct_answer.ci_high"] == 100.0
    assert "seed_accuracy.mean" not in results["greedy"]
    maj = results["majority@3"]
    assert (maj["seed_accuracy.mean"], maj["seed_accuracy.std"], maj["seeds"]) == (80.0, pytest.approx(20.0), 3)
    assert main(["summarize", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "[72.25, 100.00]" in table and "80.00 +- 20.00" in table


def test_comparison_is_logged_as_its_own_mlflow_run(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    a = _run(tmp_path / "a", [True] * 6 + [False] * 4)
    b = _run(tmp_path / "b", [True] * 4 + [False] * 2 + [True] * 3 + [False])
    assert main(["compare", str(a), str(b), "--mlflow-experiment", "cmp"]) == 0
    assert (tmp_path / "compare-flips.json").is_file()
    mlc = MlflowClient(uri)
    (run,) = mlc.search_runs([mlc.get_experiment_by_name("cmp").experiment_id])
    assert run.data.tags["skillflow.compare.run_a"] == str(a) and run.data.tags["skillflow.compare.run_b"] == str(b)
    assert run.data.metrics["gsm8k.greedy.lost"] == 2 and run.data.metrics["gsm8k.greedy.diff"] == pytest.approx(10)
    arts = {f.path for f in mlc.list_artifacts(run.info.run_id)} | {
        f.path for f in mlc.list_artifacts(run.info.run_id, "plots")}
    assert {"comparison_table.json", "flips.json", "comparison.txt", "plots/accuracy_a_vs_b.png"} <= arts
    assert run.info.run_id in capsys.readouterr().out
