"""What an evaluation run logs beside its numbers: benchmark files as dataset inputs, the interval
metrics and the accuracy plot, into a real MLflow store (SQLite, local artifacts)."""
from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from operators.openmath.evaluation import metric_names
from operators.tracking import evidence


class LocalShell:
    """Runs the hook's command in a local shell. The command is what SSH would run on the cluster;
    the SSH transport itself is covered by the integration tests on the real stack."""

    def run(self, command: str, *, check: bool = True):
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
        return done.returncode, done.stdout, done.stderr


@pytest.fixture
def mlc(tmp_path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


RESULTS = {"gsm8k": {"greedy": {"num_entries": 10, "correct_answer": 70.0, "wrong_answer": 30.0, "no_answer": 0.0,
                                "correct_answer.ci_low": 39.7, "correct_answer.ci_high": 89.2},
                     "majority@4": {"num_entries": 10, "correct_answer": 80.0, "wrong_answer": 20.0, "no_answer": 0.0,
                                    "correct_answer.ci_low": 49.0, "correct_answer.ci_high": 94.3,
                                    "seed_accuracy.mean": 71.0, "seed_accuracy.std": 2.5, "seeds": 4}}}


def test_metric_names_put_the_interval_beside_each_accuracy():
    names = metric_names(RESULTS)
    assert names["gsm8k.greedy.correct_answer.ci_low"] == 39.7
    assert names["gsm8k.majority_at_4.correct_answer.ci_high"] == 94.3
    assert names["gsm8k.majority_at_4.seed_accuracy.std"] == 2.5
    assert "gsm8k.greedy.seed_accuracy.mean" not in names and "gsm8k.majority_at_4.seeds" not in names


def test_benchmark_files_become_dataset_inputs_with_their_digest(tmp_path, mlc):
    for bench, text in (("gsm8k", '{"question": "a"}\n{"question": "b"}\n'), ("math", '{"problem": "c"}\n')):
        (tmp_path / "data" / bench).mkdir(parents=True)
        (tmp_path / "data" / bench / "test.jsonl").write_text(text)
    files = evidence.benchmark_file_digests(LocalShell(), str(tmp_path / "data"), ["gsm8k", "math"], "test")
    want = hashlib.sha256((tmp_path / "data" / "gsm8k" / "test.jsonl").read_bytes()).hexdigest()
    assert files["gsm8k"]["sha256"] == want and files["gsm8k"]["rows"] == 2 and files["math"]["rows"] == 1
    run_id = mlc.create_run(mlc.create_experiment("evidence")).info.run_id
    evidence.log_benchmark_datasets(mlc, run_id, files)
    evidence.log_benchmark_datasets(mlc, run_id, files)  # a retried task: still one input per file
    inputs = mlc.get_run(run_id).inputs.dataset_inputs
    assert sorted((d.dataset.name, d.dataset.digest) for d in inputs) == [
        ("gsm8k", want[:32]), ("math", files["math"]["sha256"][:32])]
    assert json.loads(inputs[0].dataset.source)["uri"].endswith("/test.jsonl")
    with pytest.raises(FileNotFoundError, match="nope"):
        evidence.benchmark_file_digests(LocalShell(), str(tmp_path / "data"), ["nope"], "test")


def test_accuracy_plot_is_logged_as_a_png(tmp_path, mlc):
    run_id = mlc.create_run(mlc.create_experiment("plot", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    evidence.log_accuracy_plot(mlc, run_id, RESULTS, "m: accuracy per benchmark")
    (art,) = mlc.list_artifacts(run_id, "plots")
    assert art.path == "plots/accuracy.png"
    local = mlc.download_artifacts(run_id, art.path, str(tmp_path))
    with open(local, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_registered_checkpoint_is_a_logged_model_that_collects_eval_scores(mlc):
    from operators.tracking import logged_models

    sft_run = mlc.create_run(mlc.create_experiment("sft")).info.run_id
    mlc.create_registered_model("ckpt")
    version = logged_models.register_with_model(mlc, sft_run, "ckpt", "s3://b/ckpt/manifest.json", {"cluster_path": "/c"})
    model_id = version.tags[logged_models.TAG_MODEL_ID]
    # A retried registration step finds the same LoggedModel, not a second one.
    assert logged_models.logged_model_for_run(mlc, sft_run, "ckpt") == model_id
    model = mlc.get_logged_model(model_id)
    assert model.source_run_id == sft_run and str(model.status) in ("READY", "LoggedModelStatus.READY")
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": "ckpt", "version": str(version.version)}]
    logged_models.link_version(mlc, model_id, "ckpt", int(version.version))  # as a server writes it: a number
    assert len(json.loads(mlc.get_logged_model(model_id).tags["mlflow.modelVersions"])) == 1
    assert [o.model_id for o in mlc.get_run(sft_run).outputs.model_outputs] == [model_id]

    eval_run = mlc.create_run(mlc.create_experiment("eval"),
                              tags={"skillflow.registered_model": f"ckpt/{version.version}"}).info.run_id
    assert logged_models.model_id_of(mlc, mlc.get_run(eval_run).data.tags) == model_id
    logged = logged_models.log_model_scores(mlc, eval_run, model_id, metric_names(RESULTS) | {"slurm.gpu_hours": 1.0},
                                            {"gsm8k": "d" * 32})
    assert logged == len(metric_names(RESULTS))
    scores = {(m.key, m.dataset_name, m.dataset_digest, m.run_id) for m in mlc.get_logged_model(model_id).metrics}
    assert ("gsm8k.greedy.correct_answer", "gsm8k", "d" * 32, eval_run) in scores
    assert not any(key.startswith("slurm.") for key, *_ in scores)
    assert [i.model_id for i in mlc.get_run(eval_run).inputs.model_inputs] == [model_id]
    assert logged_models.model_id_of(mlc, {"skillflow.model": "/some/path"}) is None
