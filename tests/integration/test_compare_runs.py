"""`skillflow compare RUN_A RUN_B` on MLflow run ids: predictions zips from the stack's S3, their
SHA-256 checked, benchmark digests from the runs' dataset inputs, the comparison logged as a run."""
from __future__ import annotations

import json
import time
import zipfile

import pytest

pytestmark = pytest.mark.integration


def _eval_run(mlc, s3, exp_id, name: str, correct: list[bool], digest: str, tmp):
    """A finished run shaped as openmath_eval leaves it: zip in S3 with its checksum, dataset input."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from operators.tracking.s3 import upload_verified

    lines = "".join(json.dumps({"question": f"q{i}", "expected_answer": "1", "predicted_answer": "1" if ok else "0",
                                "is_correct": ok}) + "\n" for i, ok in enumerate(correct))
    bundle = tmp / f"{name}.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("gsm8k/output-greedy.jsonl", lines)
    stored = upload_verified(s3, bundle, "skillflow", f"selftest/compare/{name}.zip")
    run_id = mlc.create_run(exp_id, run_name=name).info.run_id
    mlc.set_tag(run_id, "predictions.s3_uri", stored["uri"])
    mlc.set_tag(run_id, "predictions.sha256", stored["sha256"])
    mlc.log_inputs(run_id, datasets=[DatasetInput(Dataset("gsm8k", digest, "local", json.dumps({"uri": "/d/gsm8k"})),
                                                  tags=[InputTag("mlflow.data.context", "eval")])])
    mlc.set_terminated(run_id, "FINISHED")
    return run_id, stored


def test_compare_run_ids_checks_zip_and_data_then_logs_the_comparison(stack, tmp_path, capsys):
    from operators.tracking import mlflow_runs
    from operators.tracking.s3 import s3_client
    from tasks.cli import main

    mlc = mlflow_runs.client("mlflow_local")
    s3 = s3_client("s3_local")
    tag = f"selftest-compare-{int(time.time())}"
    exp_id = mlflow_runs.experiment_id(mlc, tag)
    base = [i % 5 != 0 for i in range(400)]  # 80%
    better = [ok or i % 10 == 0 for i, ok in enumerate(base)]  # +40 problems
    run_a, _ = _eval_run(mlc, s3, exp_id, f"{tag}-a", base, "a" * 32, tmp_path)
    run_b, _ = _eval_run(mlc, s3, exp_id, f"{tag}-b", better, "a" * 32, tmp_path)
    out = tmp_path / "cmp.json"
    assert main(["compare", run_a, run_b, "--json", str(out), "--mlflow-experiment", tag]) == 0
    row = json.loads(out.read_text())["gsm8k"]["greedy"]
    assert (row["n"], row["gained"], row["lost"], row["a"], row["b"]) == (400, 40, 0, 80.0, 90.0)
    assert row["p_value"] < 1e-10 and row["ci95"][0] > 0
    logged = [r for r in mlc.search_runs([exp_id]) if r.data.tags.get("skillflow.kind") == "comparison"]
    assert len(logged) == 1 and logged[0].data.tags["skillflow.compare.run_a"] == run_a
    # The plot is served by the MLflow server as a PNG, which is what the UI's artifact view shows inline.
    import requests

    png = requests.get(f"{stack.env['MLFLOW_TRACKING_URI']}/get-artifact",
                       params={"path": "plots/accuracy_a_vs_b.png", "run_uuid": logged[0].info.run_id}, timeout=30)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()

    # Different benchmark data: refused, naming the benchmark; allowed on request, and said so.
    run_c, _ = _eval_run(mlc, s3, exp_id, f"{tag}-c", better, "c" * 32, tmp_path)
    assert main(["compare", run_a, run_c, "--flips", str(tmp_path / "f.json")]) == 2
    assert "gsm8k (aaaaaaaaaaaa vs cccccccccccc)" in capsys.readouterr().err
    assert main(["compare", run_a, run_c, "--flips", str(tmp_path / "f.json"), "--allow-different-data"]) == 0
    assert "benchmark 'gsm8k': data digests differ" in capsys.readouterr().out

    # An altered predictions zip is refused before anything is compared.
    run_d, stored = _eval_run(mlc, s3, exp_id, f"{tag}-d", better, "a" * 32, tmp_path)
    s3.put_object(Bucket="skillflow", Key=stored["uri"].split("/", 3)[3], Body=b"not the zip that was logged")
    assert main(["compare", run_a, run_d, "--flips", str(tmp_path / "f.json")]) == 2
    assert "refusing to compare altered predictions" in capsys.readouterr().err
