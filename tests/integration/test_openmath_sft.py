"""openmath_sft on the local profile: real CPU training of SmolLM2 under real Slurm.

Two tests: the training operator when Slurm cuts a job at its time limit (the continuation job
must resume from the checkpoint the cut job saved), and the whole DAG through Airflow -- data
from S3, training, averaging, GGUF export, upload with a manifest, the registry, and the
evaluation the new checkpoint starts.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from operators.slurm.hook import SlurmHook
from operators.slurm.operator import SlurmJobOperator
from tasks.plan import spec_dict
from tasks.profiles import load_profile
from tasks.sft.steps import LocalSftParams, gguf_to_hf_job, local_sft_job
from tasks.steps.base import JobOptions
from tests.integration.selftest_runs import TRAINING, chain_records, run_training
from tests.integration.slurm_driver import TaskInstanceStandIn, finish, submit
from tests.polling import wait_until

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sft" / "gsm8k_sft_sample.jsonl"


@pytest.fixture(scope="module")
def base_hf(stack) -> str:
    """SmolLM2 as an HF folder on the cluster, converted once per checkout by the real job."""
    profile = load_profile("local")
    out = f"{profile.workdir}/test-cache/smollm2-hf"
    if not Path(out, "config.json").exists():
        job = gguf_to_hf_job(profile.model_path("smollm2"), out, profile)
        op = SlurmJobOperator(task_id="convert", job=spec_dict(job.spec), profile="local",
                              poll_interval=1.0, create_dirs=list(job.dirs))
        # Stand-in: a set-up step (the base model converted once), not a case under test.
        ti = TaskInstanceStandIn(task_id="convert")
        finish(op, ti, submit(op, ti), timeout=600)
    assert Path(out, "model.safetensors").exists()
    return out


@pytest.mark.heavy  # two two-minute jobs: run by `make faults` (tests/faults/cases.py), not `make test`
def test_job_cut_at_its_time_limit_is_continued_from_its_checkpoint(stack, base_hf):
    """The save rule of every SFT job: a time limit inside the walltime, no signal. Each job of the
    chain saves and stops by itself before its two-minute walltime (at the end of the last step
    that fits before walltime minus the margin), and the next one resumes from that checkpoint.
    Checked on what is on disk and in Slurm's accounting only: a job's log, cut or buffered on a
    busy machine, is no evidence (a run here once resumed correctly while the log said otherwise).
    """
    profile = load_profile("local")
    exp = f"{profile.workdir}/test-sft/{uuid.uuid4().hex[:8]}"
    Path(exp).mkdir(parents=True)
    data = shutil.copy(FIXTURE, f"{exp}/train.jsonl")
    walltime, margin = 120, 30
    job = local_sft_job(LocalSftParams(
        hf_model=base_hf, train_data=data, validation_data=None, holdout=4, output_dir=f"{exp}/training", lr="1e-5",
        max_steps=400, global_batch_size=2, micro_batch_size=2, max_seq_length=128, val_check_interval=1000,
        save_top_k=100, checkpoint_margin_s=margin), profile, JobOptions(time="00:02:00"))
    assert job.spec.signal is None and f"+ {walltime - margin} ))" in job.spec.command
    # Through the real scheduler, triggerer and worker: selftest_slurm_training (tests/dags) wires
    # the training operator with this job, a two-minute walltime and two links at most.
    r = run_training(stack, {"job": spec_dict(job.spec), "create_dirs": list(job.dirs), "max_jobs": 2,
                             "progress": {"kind": "local", "status": f"{exp}/training/status.json"}}, timeout=900)
    # 400 steps cannot finish in two two-minute jobs: the chain ends "not done after 2 job(s)".
    assert r["state"] == "failed" and "not done after 2 job" in r["log"], r["log"][-3000:]

    # Slurm's accounting: two jobs, each ended by the trainer itself inside its walltime
    # (COMPLETED, not TIMEOUT: nothing was killed mid-step or mid-save).
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    ids = chain_records(stack, TRAINING, r["run_id"])
    assert len(ids) == 2, ids
    states = {s.job_id: s for s in hook.states(ids)}
    assert [states[i].state for i in ids] == ["COMPLETED", "COMPLETED"], {i: states[i] for i in ids}
    assert all(states[i].elapsed_s <= walltime for i in ids), {i: states[i].elapsed_s for i in ids}

    # On disk: one history entry per job, by Slurm job id. The first job saved the step it stopped
    # at; the second resumed from exactly that step (no trained step lost) and saved its own stop.
    status = json.loads(Path(exp, "training", "status.json").read_text())
    history = status["history"]
    assert [h["slurm_job_id"] for h in history] == ids, history
    first, second = history
    assert first["resumed_from_step"] == 0 and first["stopped_at_step"] >= 1, history
    assert second["resumed_from_step"] == first["stopped_at_step"], history
    assert second["stopped_at_step"] > second["resumed_from_step"], history
    assert all(h["stopped_by"] and h["stopped_by"].startswith("deadline") for h in history), history
    checkpoints = Path(exp, "training", "checkpoints")
    assert status["resumed_from"] == str(checkpoints / f"checkpoint-{first['stopped_at_step']}")
    # (The first job's checkpoint is gone by now: without a validation metric it is not among the
    # kept top-k, and only the newest is kept for resuming.)
    final = json.loads((checkpoints / f"checkpoint-{second['stopped_at_step']}" / "trainer_state.json").read_text())
    assert final["global_step"] == second["stopped_at_step"]
    logged = sorted({e["step"] for e in final["log_history"] if "loss" in e})
    # Every step from 1 to the last was trained, the first job's carried over by the resume.
    assert logged == list(range(1, second["stopped_at_step"] + 1)), logged


DAG = "openmath_sft"
EVAL = {"benchmarks": ["gsm8k:0"], "data": "samples", "limit": 1, "batch_size": 1,
        "experiment": "selftest-openmath-sft-eval"}


@pytest.mark.recipe  # minutes of DAG run: `make test-recipes` (CI runs it), not `make test`
def test_dag_trains_publishes_and_starts_the_evaluation(stack):
    """The whole chain on the local profile, through the real scheduler and triggerer."""
    import boto3

    from tests.integration.airflow_api import client_for

    env = stack.env
    s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    key = f"selftest/sft-data/{uuid.uuid4().hex[:8]}.jsonl"
    s3.upload_file(str(FIXTURE), "skillflow", key)

    api = client_for(stack)
    api.wait_for_dag(DAG, unpause=False)
    # Created paused; SFT-data events of earlier tests must not start a run with the defaults.
    api.clear_queued_asset_events(DAG)
    api.set_paused(DAG, False)
    try:
        _run_and_check(api, env, s3, key)
    finally:
        api.set_paused(DAG, True)  # as created: later SFT-data events must not start training


def _run_and_check(api, env, s3, key):
    from mlflow.tracking import MlflowClient

    from tasks.storage.checkpoints import verify

    api.wait_for_dag("openmath_eval")
    evals_before = {r["dag_run_id"] for r in api.dag_runs("openmath_eval")}
    conf = {"base_model": "smollm2", "data": f"s3://skillflow/{key}", "max_steps": 4, "val_check_interval": 2,
            "save_top_k": 2, "curves_interval_s": 10, "experiment": "selftest-openmath-sft", "eval": EVAL}
    run_id = api.trigger(DAG, conf)["dag_run_id"]
    final = api.wait_for_run(DAG, run_id, timeout=1500)
    assert final["state"] == "success", api.task_instances(DAG, run_id)

    out = api.xcom(DAG, run_id, "publish")
    mlc = MlflowClient(env["MLFLOW_TRACKING_URI"])
    version = mlc.get_model_version(out["registered_model"], out["version"])
    tags = version.tags
    assert version.source == out["s3_uri"] and tags["cluster_path"].endswith("model-f16.gguf")
    assert tags["base_model"] == "smollm2" and tags["data.kind"] == "s3" and tags["hp.max_steps"] == "4"
    assert tags["training.steps"] == "4" and json.loads(tags["slurm.job_ids"])["train"]
    # The checkpoint in S3 matches its manifest, byte for byte.
    checked = verify(out["s3_uri"], client=s3)
    assert checked["files"] >= 3 and checked["deep"]
    # Curves came from the job's TensorBoard files, with steps.
    history = mlc.get_metric_history(out["mlflow_run_id"], "train/loss")
    assert sorted(m.step for m in history)[-1] == 4, history
    assert mlc.get_metric_history(out["mlflow_run_id"], "eval/loss")
    # The checkpoint Asset started an evaluation of exactly this model.
    new = wait_until(lambda: [r for r in api.dag_runs("openmath_eval") if r["dag_run_id"] not in evals_before
                              and r.get("run_type") == "asset_triggered"], 120,
                     "an openmath_eval run started by the checkpoint", interval=3)
    eval_run = api.wait_for_run("openmath_eval", new[0]["dag_run_id"], timeout=900)
    assert eval_run["state"] == "success", api.task_instances("openmath_eval", new[0]["dag_run_id"])
    plan = api.xcom("openmath_eval", new[0]["dag_run_id"], "plan", key="plan")
    assert plan["checked_model"] == tags["cluster_path"]
    # The version stands for a LoggedModel of the SFT run, and the evaluation's scores are on it,
    # per benchmark dataset (operators/tracking/logged_models.py).
    model = mlc.get_logged_model(tags["skillflow.model_id"])
    assert model.source_run_id == out["mlflow_run_id"]
    report = api.xcom("openmath_eval", new[0]["dag_run_id"], "report")
    scores = {(m.key, m.dataset_name, m.run_id) for m in model.metrics}
    for bench in plan["benchmarks"]:
        assert (f"{bench}.greedy.correct_answer", bench, report["mlflow_run_id"]) in scores, scores
    assert [i.model_id for i in mlc.get_run(report["mlflow_run_id"]).inputs.model_inputs] == [model.model_id]


def test_trainer_that_writes_its_model_at_the_end_with_curves_while_it_runs(stack):
    """The apps_sft shape (OpenRLHF): done means the final files exist; TensorBoard scalars the
    job writes reach MLflow during the job (wake-ups) and once more at the end, never twice."""
    from mlflow.tracking import MlflowClient

    from operators.tracking import curves, mlflow_runs

    profile = load_profile("local")
    exp = f"{profile.workdir}/test-sft/{uuid.uuid4().hex[:8]}"
    Path(exp).mkdir(parents=True)
    writer = (f"{profile.train_python} -c 'import os, sys, time\n"
              "from torch.utils.tensorboard import SummaryWriter\n"
              "w = SummaryWriter(sys.argv[1])\n"
              "for step in range(1, 7):\n"
              "    w.add_scalar(\"train/loss\", 1.0 / step, step); w.flush(); time.sleep(0.5)\n"
              "    if step == 3:\n"
              "        gate = time.time() + 180\n"
              "        while not os.path.exists(sys.argv[2]) and time.time() < gate: time.sleep(0.2)\n"
              "w.close()' " + f"{exp}/runs {exp}/gate && echo done > {exp}/model/config.json")
    mlc = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    run_id = mlc.create_run(mlflow_runs.experiment_id(mlc, "selftest-training-operator")).info.run_id
    name = f"t-tb-{uuid.uuid4().hex[:8]}"
    seen_while_running: list[int] = []

    def watch():
        # Points in MLflow while the job still runs: copied by a wake-up, not by the end. The job
        # holds after its third step until the test has seen that (at most 180 s: past that it
        # goes on, and the assertion below fails), then writes the rest.
        running = subprocess.run(["squeue", "-h", "-n", name, "-t", "RUNNING", "-o", "%i"], capture_output=True,
                                 text=True).stdout.split()
        points = len(mlc.get_metric_history(run_id, "train/loss"))
        if running and points:
            seen_while_running.append(points)
            Path(exp, "gate").touch()

    # Through the real scheduler, triggerer and worker: selftest_slurm_training (tests/dags) wires
    # the training operator with this job, its files-kind progress and its curves. The wake-up
    # interval is kept well above the seconds a worker takes to report its deferral: a trigger
    # event that comes before that report (here a 4 s interval, with the worker's exit reported
    # 5 s after it deferred) makes Airflow's scheduler fail the re-queued task ("finished with
    # state success, but the task instance's state attribute is queued").
    # In the CPU trainer's image, as the local profile runs its training steps.
    job = {"name": name, "command": f"mkdir -p {exp}/model && {writer}", "image": profile.image("trainer")}
    r = run_training(stack, {"job": job, "max_jobs": 1,
                             "progress": {"kind": "files", "files": [f"{exp}/model/config.json"]},
                             "curves": {"tensorboard": f"{exp}/runs", "mlflow_run_id": run_id,
                                        "mlflow_conn_id": profile.mlflow_conn_id},
                             "curves_every_s": 15}, watch=watch)
    assert r["state"] == "success", r["log"][-3000:]
    assert r["result"]["steps"] == 1 and r["result"]["jobs"] == 1
    assert seen_while_running, "no curve point reached MLflow while the job ran"
    history = mlc.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]
    assert abs(next(m.value for m in history if m.step == 4) - 0.25) < 1e-6
    again = curves.sync(SlurmHook("slurm_local", accounting="jobcomp"), f"{exp}/runs", mlc, run_id)
    assert again["logged"] == 0
