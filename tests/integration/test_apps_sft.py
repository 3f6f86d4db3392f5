"""apps_sft through the real scheduler, triggerer, Slurm, MLflow and S3 of the local stack.

One DAG run with ``train`` = true: the local profile's CPU stand-in for OpenRLHF trains SmolLM2 on
the shipped training problems (a few real optimizer steps), data-parallel across the local
cluster's two nodes as the seed's run spans two (then once more on one node, which must train the
same model), uploads the final model with its
manifest and registers it; llama.cpp (two CPU cores) samples 3 shipped MapCoder test problems
twice each with a short token budget from the base and the SFT model, and the real evaluator runs
the programs. The model is too small to solve them, so the test checks the plumbing and the
numbers' consistency, not their size. (A profile that cannot train at all refuses ``train`` at
planning: tests/unit/test_apps_plan.py.)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from devtools.stack.nodes import FIRST_NODE, SECOND_NODE
from operators.slurm.operator import SlurmJobOperator
from tasks.apps.plan import LOCAL_SFT, local_train_params
from tasks.plan import spec_dict
from tasks.profiles import load_profile
from tasks.sft.steps import local_sft_job
from tasks.steps.base import JobOptions
from tests.integration import profile_variants
from tests.integration.airflow_api import client_for
from tests.integration.slurm_driver import TaskInstanceStandIn, finish, submit
from tests.markdown import markdown_rows

pytestmark = pytest.mark.integration

DAG = "apps_sft"
SMOKE = {"model": "smollm2", "data": "mapcoder-sample", "limit": 3, "n_samples": 2, "max_tokens": 128,
         "concurrency": 2, "train": True, "experiment": "selftest-apps-sft"}
STEPS = ("prepare", "convert_base", "train", "export_sft", "upload_sft", "sample_base", "eval_base", "sample_sft",
         "eval_sft", "report")


def _check_side(mlc, tmp_path, side: dict, name: str) -> dict:
    """What every model's run carries: pass@k by difficulty, per-sample results, the table."""
    run = mlc.get_run(side["mlflow_run_id"])
    metrics = run.data.metrics
    for group in ("total", "introductory", "interview", "competition"):
        assert 0.0 <= metrics[f"{group}.pass_at_1"] <= 1.0, sorted(metrics)
        assert metrics[f"{group}.samples"] == (6 if group == "total" else 2)
        assert f"{group}.pass_at_5" not in metrics  # 2 samples per problem: pass@5 is not estimated
    assert metrics["total.problems"] == 3
    assert metrics["total.pass_at_1"] == pytest.approx(metrics["total.correct"] / 6)
    assert run.data.params["n_samples"] == "2" and run.data.tags["skillflow.apps_side"] == name
    assert run.info.status == "FINISHED"
    local = mlc.download_artifacts(side["mlflow_run_id"], "results/results.jsonl", str(tmp_path / name))
    rows = [json.loads(x) for x in open(local).read().splitlines()]
    assert len(rows) == 6 and {str(r["problem_id"]) for r in rows} == {"4276", "1647", "2012"}
    assert all({"passed", "status", "codes"} <= set(r) for r in rows)
    assert sum(bool(r["passed"]) for r in rows) == metrics["total.correct"]
    return run


@pytest.mark.recipe  # minutes of DAG run: `make test-recipes` (CI runs it), not `make test`
def test_local_run_trains_on_the_cpu_registers_the_model_and_compares_it_with_the_base(stack, tmp_path):
    import boto3
    from mlflow.tracking import MlflowClient

    from tasks.storage.checkpoints import MANIFEST, split_s3, verify
    from tasks.storage.s3 import sha256_of_object

    env = stack.env
    api = client_for(stack)
    api.wait_for_dag(DAG)
    started = time.monotonic()
    run_id = api.trigger(DAG, SMOKE)["dag_run_id"]
    final = api.wait_for_run(DAG, run_id, timeout=900)
    assert final["state"] == "success", api.task_instances(DAG, run_id)
    print(f"apps_sft run with CPU training: {time.monotonic() - started:.0f}s")
    states = {t["task_id"]: t.get("state") for t in api.task_instances(DAG, run_id)}
    assert all(states[s] == "success" for s in STEPS), states

    out = api.xcom(DAG, run_id, "report")
    assert list(out["runs"]) == ["base", "sft"]
    mlc = MlflowClient(env["MLFLOW_TRACKING_URI"])
    base = _check_side(mlc, tmp_path, out["runs"]["base"], "base")
    sft = _check_side(mlc, tmp_path, out["runs"]["sft"], "sft")
    assert sft.data.params["hp.max_seq_length"] == "512" and sft.data.params["hp.lr"] == "2e-5"
    for side in out["runs"].values():
        assert sha256_of_object(side["samples_uri"], env) == side["samples_sha256"]

    # The comparison in the seed's format, both models and their difference, in both runs.
    tables = [open(mlc.download_artifacts(r.info.run_id, "comparison/comparison.md", str(tmp_path / r.info.run_id))
                   ).read() for r in (base, sft)]
    assert tables[0] == tables[1] == out["comparison"] + "\n"
    table = tables[0]
    assert "Note: this run did not train" not in table
    assert "## Base model: `" in table and "## SFT model: `" in table and table.count("| Difficulty") == 3
    assert "model-f16.gguf`" in table and "## SFT minus base" in table and "n/a (n<5)" in table

    # Training curves from the trainer's TensorBoard files reached the SFT run.
    loss = sorted((m.step, m.value) for m in mlc.get_metric_history(sft.info.run_id, "train/loss"))
    print(f"train/loss by step: {loss}; eval/loss: "
          f"{[(m.step, m.value) for m in mlc.get_metric_history(sft.info.run_id, 'eval/loss')]}")
    assert loss and loss[-1][0] == 5, loss
    assert mlc.get_metric_history(sft.info.run_id, "eval/loss")

    # The registered version points at the uploaded model, whose manifest verifies byte for byte.
    registered = out["runs"]["sft"]["registered"]
    assert registered["registered_model"] == "apps-sft-smollm2"
    version = mlc.get_model_version("apps-sft-smollm2", registered["version"])
    tags = version.tags
    print(f"registered: apps-sft-smollm2/{version.version} source={version.source} tags={json.dumps(tags)}")
    assert version.source == tags["s3_uri"] == registered["s3_uri"] and version.run_id == sft.info.run_id
    assert tags["cluster_path"].endswith("/train/model-f16.gguf") and tags["data"] == "mapcoder-sample"
    assert tags["base_model"] == base.data.params["model_path"] and tags["mlflow_run_id"] == sft.info.run_id
    assert tags["hp.recipe"].startswith("local CPU stand-in") and tags["training.steps"] == "5"
    job_ids = json.loads(tags["slurm.job_ids"])
    assert set(job_ids) == {"convert", "train", "export", "upload"} and all(job_ids.values())
    s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    checked = verify(tags["s3_uri"], client=s3)
    assert checked["deep"] and checked["files"] >= 3
    bucket, prefix = split_s3(tags["s3_uri"])
    manifest = s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
    assert hashlib.sha256(manifest).hexdigest() == tags["manifest_sha256"]
    assert {"config.json", "model.safetensors"} <= {f["path"] for f in json.loads(manifest)["files"]}
    assert sft.data.tags["skillflow.registered_model"] == f"apps-sft-smollm2/{version.version}"

    # Behind the version, a LoggedModel whose source is the SFT run (tracking/logged_models.py).
    model = mlc.get_logged_model(tags["skillflow.model_id"])
    assert model.source_run_id == sft.info.run_id
    linked = [(v["name"], str(v["version"])) for v in json.loads(model.tags["mlflow.modelVersions"])]
    assert linked == [("apps-sft-smollm2", version.version)]

    # Base vs SFT paired per problem and difficulty, in the table and as a comparison run of its own.
    assert "## SFT vs base, paired per problem" in table and "total" in [r[0] for r in markdown_rows(table)]
    comparison = mlc.get_run(out["comparison_run_id"])
    assert comparison.data.tags["skillflow.compare.run_a"] == base.info.run_id
    assert comparison.data.tags["skillflow.compare.run_b"] == sft.info.run_id
    assert "apps.total.pass_at_1.p_value" in comparison.data.metrics
    assert {f.path for f in mlc.list_artifacts(comparison.info.run_id, "plots")} == {"plots/accuracy_a_vs_b.png"}

    # Trained across both nodes of the local cluster: one rank per node, in the training job's log.
    train_dir = Path(tags["cluster_path"]).parent
    train_log = Path(load_profile("local").workdir, "logs", f"sft-train-{job_ids['train']}.log").read_text()
    ranks = sorted(set(re.findall(r"^rank (\d) of (\d) on node (\S+):", train_log, re.M)))
    assert ranks == [("0", "2", FIRST_NODE), ("1", "2", SECOND_NODE)], train_log[-3000:]
    assert sft.data.params["hp.train_nodes"] == "2"
    _same_training_on_one_node(train_dir)


def _same_training_on_one_node(two_node_dir: Path) -> None:
    """The same run on one node (the same global batch, two micro-batches accumulated instead of
    one per node) trains the same model: every step's loss, the validation loss and the weights."""
    profile = load_profile("local")
    out = two_node_dir.parent
    one_dir = f"{profile.workdir}/test-one-node/{uuid.uuid4().hex[:8]}"
    job = local_sft_job(local_train_params(f"{out}/base-hf", f"{out}/data/train_sft.jsonl", one_dir, "00:30:00", 1),
                        profile, JobOptions(time="00:30:00"))
    assert job.spec.nodes == 1 and "torch.distributed.run" not in job.spec.command
    op = SlurmJobOperator(task_id="train_one_node", job=spec_dict(job.spec), profile="local", poll_interval=1.0,
                          create_dirs=list(job.dirs))
    # The operator driven directly (tests/integration/slurm_driver.py), not through a DAG run.
    ti = TaskInstanceStandIn(task_id="train_one_node")
    finish(op, ti, submit(op, ti), timeout=600)
    step = LOCAL_SFT["max_steps"]
    states = [json.loads(Path(d, "checkpoints", f"checkpoint-{step}", "trainer_state.json").read_text())
              for d in (two_node_dir, one_dir)]
    losses = [[(e["step"], e.get("loss"), e.get("eval_loss")) for e in st["log_history"]
               if "loss" in e or "eval_loss" in e] for st in states]
    print(f"two nodes: {losses[0]}\none node:  {losses[1]}")
    assert [x[0] for x in losses[0]] == [x[0] for x in losses[1]] and len(losses[0]) == step + 1
    for two, one in zip(*losses):
        for a, b in zip(two[1:], one[1:]):
            assert (a is None) == (b is None) and (a is None or a == pytest.approx(b, rel=1e-4)), (two, one)
    # The weights are read by the host's training environment's torch (the test environment has
    # none; `make install` builds it for profiles without containers).
    compare = ("import sys; from safetensors.torch import load_file; a, b = map(load_file, sys.argv[1:]); "
               "assert a.keys() == b.keys(); print(max((a[k] - b[k]).abs().max().item() for k in a))")
    diff = float(subprocess.run(
        [os.path.expandvars(profile_variants.NODE_PATHS["train_python"]), "-c", compare,
         *(str(Path(d, "checkpoints", f"checkpoint-{step}", "model.safetensors")) for d in (two_node_dir, one_dir))],
        capture_output=True, text=True, check=True, timeout=300).stdout)
    print(f"largest weight difference after {step} steps: {diff:g}")
    assert diff < 1e-5
