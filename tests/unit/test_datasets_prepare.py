"""Benchmark preparation on the real shared data (partial copies) and on small built inputs."""
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tasks.cli import main
from tasks.openmath.datasets import prepare as prep
from tasks.openmath.datasets.sources import SOURCES, SourceFile
from tests.prereqs import SHARED_DATA as SHARED, needs_shared


# Records present in the shared copies (some are held out), from its README.
SHARED_TEST_COUNTS = {"gsm8k": 1187, "math": 4500, "asdiv": 2075, "gsm-hard": 1187,
                      "mawps": 356 + 457 + 506 + 540, "svamp": 900, "tabmwp": 900, "algebra222": 200}


def _lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x]


@needs_shared
@pytest.mark.parametrize("benchmark", sorted(SHARED_TEST_COUNTS))
def test_every_benchmark_prepares_offline(benchmark, tmp_path):
    logs = []
    [out] = prep.prepare(benchmark, "test", tmp_path, source_dir=SHARED, allow_partial=True, log=logs.append)
    rows = _lines(out)
    assert out == tmp_path / benchmark / "test.jsonl"
    assert len(rows) == SHARED_TEST_COUNTS[benchmark]
    assert all(isinstance(r["question"], str) and r["question"] and "expected_answer" in r for r in rows)
    assert any("records (partial copy)" in line for line in logs)


@needs_shared
def test_exact_count_is_required_without_allow_partial(tmp_path, capsys):
    with pytest.raises(prep.PrepareError, match=r"gsm8k/test.jsonl: found 1187 records, expected 1319"):
        prep.prepare("gsm8k", "test", tmp_path, source_dir=SHARED)
    assert main(["data", "prepare", "svamp", "--out", str(tmp_path), "--source", str(SHARED)]) == 2
    assert "SVAMP.json: found 900 records, expected 1000" in capsys.readouterr().err


@needs_shared
def test_field_transformations(tmp_path):
    for b in ("gsm8k", "asdiv", "svamp", "tabmwp", "mawps", "math"):
        prep.prepare(b, "test", tmp_path, source_dir=SHARED, allow_partial=True, log=lambda _: None)
    gsm = _lines(tmp_path / "gsm8k" / "test.jsonl")[0]
    assert gsm["expected_answer"] == 18 and "<<" not in gsm["reference_solution"]
    assert _lines(tmp_path / "asdiv" / "test.jsonl")[0]["expected_answer"] == "9"
    svamp = _lines(tmp_path / "svamp" / "test.jsonl")[0]
    assert svamp["question"].startswith("Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack. How")
    assert svamp["expected_answer"] == 51 and svamp["reference_equation"] == "( 76.0 - 25.0 )"
    tab = _lines(tmp_path / "tabmwp" / "test.jsonl")
    assert tab[0]["expected_answer"] == 84 and tab[0]["question"].startswith("Read the following table")
    assert any("\nAnswer options:\n" in r["question"] for r in tab)
    assert [r["type"] for r in _lines(tmp_path / "mawps" / "test.jsonl")][::600] == ["addsub", "singleeq", "singleop", "multiarith"]
    math_rows = _lines(tmp_path / "math" / "test.jsonl")
    assert math_rows[0]["expected_answer"] == "2" and math_rows[0]["id"] == "test/algebra/idx0"
    by_idx = {r["idx"]: r for r in math_rows}
    # test/intermediate_algebra/78.json (ToRA idx 2948): "\ 1" spacing left "\1" before the fix. The
    # shared copy holds it; a copy without it must fail here, not skip the check.
    assert 2948 in by_idx, "the shared MATH test copy lacks idx 2948, the row the backslash-digit fix is for"
    assert by_idx[2948]["expected_answer"] == "1+\\sqrt{2},1-\\sqrt{2},2+\\sqrt{3},2-\\sqrt{3}"


@needs_shared
def test_train_splits_and_fixes(tmp_path):
    for split in ("train_full", "validation", "train"):
        prep.prepare("gsm8k", split, tmp_path, source_dir=SHARED, log=lambda _: None)
    full = _lines(tmp_path / "gsm8k" / "train_full.jsonl")
    val = _lines(tmp_path / "gsm8k" / "validation.jsonl")
    train = _lines(tmp_path / "gsm8k" / "train.jsonl")
    assert (len(full), len(val), len(train)) == (7473, 1000, 6473)
    assert full[:1000] == val and full[1000:] == train
    pete = [r for r in full if r["question"].startswith("Pete has to take a 10-minute walk")]
    assert [r["expected_answer"] for r in pete] == ["07:30"]
    sft = _lines(tmp_path / "gsm8k" / "validation-sft.jsonl")
    assert len(sft) == 1000 and sft[0]["dataset"] == "gsm8k"
    assert sft[0]["input"].startswith("System:\nYou're an expert Python programmer") and sft[0]["input"].endswith(
        val[0]["question"] + "\n\nAssistant:\n")
    assert sft[0]["output"] == val[0]["reference_solution"]


def _math_tar(path: Path, problems: dict):
    with tarfile.open(path, "w") as tar:
        for name, content in problems.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(f"MATH/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_math_from_original_tar_layout(tmp_path, monkeypatch):
    source = tmp_path / "src"
    (source / "math").mkdir(parents=True)
    def p(problem, solution, typ="Algebra"):
        return {"problem": problem, "level": "Level 1", "type": typ, "solution": solution}
    _math_tar(source / "math" / "MATH.tar", {
        "test/algebra/1.json": p("Solve for x.", "So $x = \\boxed{x=5}$."),
        "test/algebra/2.json": p("Find the equation of the line.", "It is $\\boxed{y = 2x+1}$."),
        "test/counting_and_probability/3.json": p("How many?", "$\\boxed{\\frac12}$", "Counting & Probability"),
        "train/algebra/4.json": p("t", "$\\boxed{1}$"),
    })
    monkeypatch.setitem(SOURCES["math"], "tar", SourceFile("math/MATH.tar", None, 4))
    logs = []
    [out] = prep.prepare("math", "test", tmp_path / "out", source_dir=source, allow_partial=True, log=logs.append)
    rows = _lines(out)
    assert [r["expected_answer"] for r in rows] == ["5", "y=2x+1", "\\frac{1}{2}"]
    assert [r["id"] for r in rows] == ["test/algebra/1.json", "test/algebra/2.json", "test/counting_and_probability/3.json"]
    assert "3 of 5000 records" in logs[0]


def test_download_verifies_sha256(tmp_path, monkeypatch):
    original = tmp_path / "SVAMP.json"
    original.write_text(json.dumps([{"ID": "a", "Body": "Tom has 3 apples", "Question": "How many?",
                                     "Equation": "( 3.0 )", "Answer": 3.0, "Type": "x"}]))
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    url = original.as_uri()
    monkeypatch.setitem(SOURCES["svamp"], "test", SourceFile("svamp/SVAMP.json", url, 1))
    with pytest.raises(prep.PrepareError, match=f"no sha256 is pinned.*{digest}"):
        prep.prepare("svamp", "test", tmp_path / "a", log=lambda _: None)
    [out] = prep.prepare("svamp", "test", tmp_path / "a", skip_sha256=True, log=lambda _: None)
    assert _lines(out)[0]["question"] == "Tom has 3 apples. How many?"
    monkeypatch.setitem(SOURCES["svamp"], "test", SourceFile("svamp/SVAMP.json", url, 1, sha256="0" * 64))
    with pytest.raises(prep.PrepareError, match="does not match the pinned"):
        prep.prepare("svamp", "test", tmp_path / "b", log=lambda _: None)
    monkeypatch.setitem(SOURCES["svamp"], "test", SourceFile("svamp/SVAMP.json", url, 2, sha256=digest))
    with pytest.raises(prep.PrepareError, match="found 1 records, expected 2"):
        prep.prepare("svamp", "test", tmp_path / "c", log=lambda _: None)
    with pytest.raises(prep.PrepareError, match="--allow-partial needs --source"):
        prep.prepare("svamp", "test", tmp_path / "c", allow_partial=True)


def test_math_train_download_names_dead_address(tmp_path):
    with pytest.raises(prep.PrepareError, match="no longer served"):
        prep.prepare("math", "train", tmp_path, log=lambda _: None)
