"""openmath_sft on the local profile: real CPU training of SmolLM2 under real Slurm.

Two tests: the training operator when Slurm cuts a job at its time limit (the continuation job
must resume from the checkpoint the cut job saved), and the whole DAG through Airflow -- data
from S3, training, averaging, GGUF export, upload with a manifest, the registry, and the
evaluation the new checkpoint starts.
"""
from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from operators.slurm.hook import SlurmHook
from operators.slurm.operator import SlurmJobOperator
from operators.slurm.training import SlurmTrainingOperator
from tasks.openmath_eval import spec_dict
from tasks.profiles import load_profile
from tasks.recipes.sft import LocalSftParams, gguf_to_hf_job, local_sft_job
from tasks.recipes.common import JobOptions
from tests.integration.slurm_driver import TaskInstanceStandIn, context_for, finish, run_trigger, submit

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
        ti = TaskInstanceStandIn(task_id="convert")
        finish(op, ti, submit(op, ti), timeout=600)
    assert Path(out, "model.safetensors").exists()
    return out


def run_chain(op, ti, timeout: float) -> dict:
    """Drive a training operator through every deferral (wake-ups and continuation jobs)."""
    deferred = submit(op, ti)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "training chain did not finish in time"
        event = run_trigger(deferred.trigger, timeout=left)
        try:
            return op.execute_complete(context_for(ti), event.payload, **(deferred.kwargs or {}))
        except TaskDeferred as again:
            deferred = again


def test_job_cut_at_its_time_limit_is_continued_from_its_checkpoint(stack, base_hf):
    profile = load_profile("local")
    exp = f"{profile.workdir}/test-sft/{uuid.uuid4().hex[:8]}"
    Path(exp).mkdir(parents=True)
    data = shutil.copy(FIXTURE, f"{exp}/train.jsonl")
    # No early stop and no early signal: Slurm itself ends the job at one minute (SIGTERM, then
    # SIGKILL KillWait later). The trainer saves on SIGTERM; failing that, at every 5th step.
    job = local_sft_job(LocalSftParams(
        hf_model=base_hf, train_data=data, validation_data=None, holdout=4, output_dir=f"{exp}/training", lr="1e-5",
        max_steps=400, global_batch_size=2, micro_batch_size=2, max_seq_length=128, val_check_interval=5,
        save_top_k=1, checkpoint_margin_s=0, signal_lead_s=0), profile, JobOptions(time="00:01:00"))
    op = SlurmTrainingOperator(task_id="train", job=spec_dict(job.spec), profile="local",
                               poll_interval=2.0, create_dirs=list(job.dirs), max_jobs=2,
                               progress={"kind": "local", "status": f"{exp}/training/status.json"})
    ti = TaskInstanceStandIn(task_id="train")
    # 400 steps cannot finish in two one-minute jobs: the chain ends "not done after 2 job(s)".
    with pytest.raises(AirflowFailException, match="not done after 2 job"):
        run_chain(op, ti, timeout=600)
    hook = SlurmHook("slurm_local", accounting="jobcomp")
    records = sorted(Path(profile.workdir, ".skillflow", "jobs").rglob("train.c*.jobid"))
    records = [r for r in records if ti.run_id in str(r)]
    assert [r.name.split(".")[1] for r in records] == ["c0", "c1"]
    first, second = (r.read_text().strip() for r in records)
    states = {s.job_id: s.state for s in hook.states([first, second])}
    assert states[first] == "TIMEOUT", states
    log1 = Path(profile.workdir, "logs", f"sft-training-{first}.log").read_text()
    log2 = Path(profile.workdir, "logs", f"sft-training-{second}.log").read_text()
    assert "starting from the base model" in log1
    resumed = re.search(r"resuming from (\S+/checkpoint-(\d+))", log2)
    assert resumed, f"the continuation job did not resume from a checkpoint:\n{log2[-3000:]}"
    # The checkpoint was written by the first job, before Slurm ended it ...
    assert f"checkpoint-{resumed.group(2)}" in log1 or "Stopping at step" in log1
    # ... and the second job trained on from it.
    assert "'loss'" in log2[resumed.end():], log2[-3000:]
