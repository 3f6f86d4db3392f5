"""A recipe param can never become a command.

Every builder is fed params carrying shell metacharacters. The rendered script must pass
``bash -n``; for the runtime-``none`` local profile the script is then really executed with the
Slurm environment faked and ``srun``/``scontrol``/the tools replaced by shims on PATH that log
their arguments. The marker files the payloads would create must never appear, and the payload
must reach the tool as literal text. On container profiles the same paths are refused as mounts.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from tests.unit.local_env import LOCAL_ENV
from tasks.apps import steps as apps
from tasks.openmath import steps as openmath
from tasks.profiles import load_profile
from tasks.slurm.render import render_sbatch
from tasks.slurm.spec import JobSpecError
from tasks.steps.base import JobOptions, RecipeError, RecipeJob
from tasks.steps.engines import NativeServer

SRUN = """#!/bin/bash
# srun [options] bash -c '...': drop the options, run the command here.
while [ $# -gt 0 ] && [ "$1" != bash ]; do shift; done
exec "$@"
"""
SCONTROL = """#!/bin/bash
echo localhost
"""
TOOL = """#!/bin/bash
# Logs argv one element per line, then behaves just enough like the real tool.
printf '%s\\n' "== $(basename "$0")" "$@" >> "$SHIM_LOG"
if [ "$(basename "$0")" = python ] && [ "${1:-}" = -c ]; then exit 0; fi   # readiness probes
case "$*" in
  *serve_trt.py*) echo "Running on all addresses"; while :; do sleep 0.2; done ;;
esac
case "$(basename "$0") ${1:-}" in
  "skillflow sandbox"|"llama-server "*) exec sleep 20 ;;
esac
exit 0
"""
TOOLS = ("python", "skillflow", "deepspeed", "trtllm-build", "llama-server", "nvidia-smi")


@pytest.fixture()
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Shim bin folder, marker paths and a local profile whose tools are the shims."""
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in [("srun", SRUN), ("scontrol", SCONTROL), *((t, TOOL) for t in TOOLS)]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("must survive")
    profile = dataclasses.replace(load_profile("local"), runtime="none", python=str(bin_dir / "python"),
                                  skillflow=str(bin_dir / "skillflow"), workdir=str(work))
    return {"tmp": tmp_path, "bin": bin_dir, "profile": profile, "marker": tmp_path / "pwned",
            "victim": victim, "log": tmp_path / "shim.log"}


def payloads(box: dict) -> list[str]:
    marker, victim = box["marker"], box["victim"]
    return [f"$(touch {marker})", f"`touch {marker}`", f"x; touch {marker}; rm -rf {victim} #",
            f"x' && touch {marker} && echo '", f'x" && touch {marker} && echo "', f"x\n touch {marker}"]


def run_script(box: dict, job: RecipeJob) -> str:
    """Render for the shim profile, syntax-check, execute with faked Slurm env; returns the shim log."""
    script = box["tmp"] / "job.sbatch"
    script.write_text(render_sbatch(job.spec, box["profile"]))
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    env = {**os.environ, "PATH": f"{box['bin']}:{os.environ['PATH']}", "SHIM_LOG": str(box["log"]),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "injection-test", "SLURM_NODEID": "0", "SLURM_LOCALID": "0",
           "SLURM_PROCID": "0", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_NODELIST": "localhost",
           "SLURM_JOB_NUM_NODES": "1", "TMPDIR": str(box["tmp"]), "SKILLFLOW_POLL_S": "0.05"}
    proc = subprocess.Popen(["bash", str(script)], cwd=box["tmp"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftover shim servers of this test only
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out
    assert not box["marker"].exists(), f"a payload ran as a command:\n{out}"
    assert box["victim"].exists(), f"a payload deleted a file:\n{out}"
    return box["log"].read_text() if box["log"].exists() else ""


def _dir(path: str) -> str:
    """A folder that must exist for the step to get going (a code checkout, a training folder)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def _hf(path: str) -> str:
    """An HF model folder with the tokenizer files a TensorRT-LLM engine folder needs."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (Path(_dir(path)) / name).write_text("{}")
    return path


def _native(served: str) -> NativeServer:
    return NativeServer(served_model_name=served, startup_timeout_s=10)


BUILDERS: dict[str, Callable[[dict, str], RecipeJob]] = {
    "eval-native": lambda b, p: openmath.eval_greedy_job(openmath.EvalParams(
        model_path=f"{b['tmp']}/model {p}.gguf", output_dir=f"{b['tmp']}/out {p}", engine="native",
        data_dir=f"{b['tmp']}/data {p}", benchmarks=("gsm8k",), prompt_config=p, native_server=_native(p)),
        b["profile"]),
    "eval-nemo-skills": lambda b, p: openmath.eval_sampling_chunk_job(range(0, 2), openmath.EvalParams(
        model_path=f"{b['tmp']}/engine {p}", output_dir=f"{b['tmp']}/out {p}", code_dir=_dir(f"{b['tmp']}/code"),
        data_dir=f"{b['tmp']}/data {p}", benchmarks=("gsm8k",), prompt_config=p, extra_overrides=(f"++x={p}",)),
        b["profile"]),
    "labeling-native": lambda b, p: openmath.labeling_array_job(4, 2, openmath.LabelingParams(
        model_path=f"{b['tmp']}/model.gguf", output_dir=f"{b['tmp']}/out {p}", dataset="gsm8k", examples_type=p,
        engine="native", data_dir=f"{b['tmp']}/data", native_server=_native(p)), b["profile"], starting_seed=7),
    "labeling-nemo-skills": lambda b, p: openmath.labeling_array_job(4, None, openmath.LabelingParams(
        model_path=f"{b['tmp']}/engine", output_dir=f"{b['tmp']}/out {p}", dataset="gsm8k", examples_type=p,
        code_dir=_dir(f"{b['tmp']}/code {p}"), data_dir=f"{b['tmp']}/data"), b["profile"]),
    "trtllm-build": lambda b, p: openmath.trtllm_build_job(openmath.TrtllmBuildParams(
        hf_model_path=_hf(f"{b['tmp']}/hf {p}"), engine_dir=f"{b['tmp']}/engine {p}", code_dir=_dir(f"{b['tmp']}/code"),
        dtype=p, extra_build_args=(p,)), b["profile"]),
    "nemo-sft": lambda b, p: openmath.nemo_sft_job(openmath.NemoSftParams(
        model="Mistral-7B", nemo_model=f"{b['tmp']}/base {p}", output_dir=f"{b['tmp']}/train {p}",
        sft_data=f"{b['tmp']}/data/sft {p}.jsonl", validation_file=f"{b['tmp']}/data/validation {p}.jsonl",
        code_dir=f"{b['tmp']}/code", expname=p, extra_overrides=(p,)), b["profile"], JobOptions(time="02:00:00")),
    "openrlhf-sft": lambda b, p: apps.openrlhf_sft_job(apps.OpenrlhfSftParams(
        pretrain=f"{b['tmp']}/model {p}", dataset=f"{b['tmp']}/train {p}.jsonl", output_dir=f"{b['tmp']}/out {p}",
        input_key=p, learning_rate=p), b["profile"]),
    "apps-eval": lambda b, p: apps.apps_eval_job(apps.AppsEvalParams(
        samples=f"{b['tmp']}/samples {p}.jsonl", problems=f"{b['tmp']}/problems {p}.jsonl",
        out_dir=f"{b['tmp']}/eval {p}"), b["profile"]),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_payloads_stay_literal_when_the_script_runs(name: str, sandbox: dict) -> None:
    for payload in payloads(sandbox):
        sandbox["log"].unlink(missing_ok=True)
        try:
            job = BUILDERS[name](sandbox, payload)
        except RecipeError as exc:  # paths refuse newlines outright, naming the param
            assert "\n" in payload and "contains a newline" in str(exc), exc
            continue
        log = run_script(sandbox, job)
        assert payload.split("\n")[0] in log, f"{name}: payload {payload!r} did not reach a tool literally:\n{log}"


def test_the_shims_do_run_the_main_step(sandbox: dict) -> None:
    """Guards the test itself: the executed script really invoked the tools it names."""
    log = run_script(sandbox, BUILDERS["apps-eval"](sandbox, "plain"))
    assert "== skillflow" in log and "apps" in log and "--samples" in log


@pytest.mark.parametrize("payload", ["$(touch /tmp/pwned)", "; rm -rf /", "`id`"])
@pytest.mark.parametrize("profile_name", ["example-pyxis", "local"])
def test_rendered_scripts_parse_with_payloads(payload: str, profile_name: str, monkeypatch, tmp_path) -> None:
    """Syntax only (never executed): payloads in free-text params of GPU steps, rendered for pyxis
    and for the local profile without containers (with podman it has no GPU images)."""
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    profile = load_profile(profile_name)
    if profile_name == "local":
        profile = dataclasses.replace(profile, runtime="none")
    jobs = [
        openmath.labeling_array_job(2, None, openmath.LabelingParams(
            model_path="/m/engine", output_dir="/m/out", dataset="math", examples_type=payload, code_dir="/m/code",
            data_dir="/m/data", prompt_config=payload, extra_overrides=(payload,)), profile),
        openmath.nemo_sft_job(openmath.NemoSftParams(
            model="CodeLlama-70B", nemo_model="/m/base", output_dir="/m/train", sft_data="/m/sft.jsonl",
            validation_file="/m/validation-sft.jsonl", code_dir="/m/code", expname=payload, wandb_project=payload),
            profile, JobOptions(time="04:00:00")),
        apps.openrlhf_sft_job(apps.OpenrlhfSftParams(pretrain="/m/model", dataset="/m/train.jsonl",
                                                    output_dir="/m/out", output_key=payload), profile),
    ]
    for job in jobs:
        script = tmp_path / "s.sbatch"
        text = render_sbatch(job.spec, profile)
        script.write_text(text)
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        assert payload not in "".join(line for line in text.splitlines(True) if line.startswith("#SBATCH"))


def test_container_mounts_refuse_shell_characters(monkeypatch) -> None:
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    profile = load_profile("example-pyxis")
    with pytest.raises(JobSpecError, match="mounts"):
        apps.apps_eval_job(apps.AppsEvalParams(samples="/m/s$(touch /tmp/pwned).jsonl", problems="/m/p.jsonl",
                                               out_dir="/m/eval"), profile)


def test_sbatch_values_from_options_are_validated(monkeypatch) -> None:
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    profile = load_profile("example-pyxis")
    params = apps.AppsEvalParams(samples="/m/s.jsonl", problems="/m/p.jsonl", out_dir="/m/eval")
    with pytest.raises(JobSpecError, match="partition"):
        apps.apps_eval_job(params, profile, JobOptions(partition="batch\n#SBATCH --uid=0"))
    with pytest.raises(JobSpecError, match="time"):
        apps.apps_eval_job(params, profile, JobOptions(time="1:00:00; touch /tmp/pwned"))
    with pytest.raises(JobSpecError, match="dependency"):
        apps.apps_eval_job(params, profile, JobOptions(dependency=("afterok:1 --wrap=id",)))
