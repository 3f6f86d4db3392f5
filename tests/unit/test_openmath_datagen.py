"""openmath_datagen planning: configurations, run counts, jobs, and which arrays a resubmission submits."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.openmath import datagen as dg
from tasks.openmath import steps as openmath
from tasks.profiles import ClusterProfile, load_profile
from tasks.steps.base import RecipeError
from tests.unit.local_env import LOCAL_ENV, without_containers

ROOT = Path(__file__).resolve().parents[2]
OUT = "/cluster/dg/run1"


@pytest.fixture()
def local(monkeypatch) -> ClusterProfile:
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SKILLFLOW_SMOLLM2_GGUF", "/opt/models/smollm2.gguf")
    return without_containers(load_profile("local"))


def smoke(**kw) -> dg.DatagenRequest:
    base = dict(model="smollm2", engine="native", num_gpus=1, configurations=["gsm8k", "gsm8k-masked"],
                num_runs=2, masked_runs=2, throttle=2, limit=3, data="shared-sample")
    return dg.DatagenRequest(**{**base, **kw})


def test_configurations_are_the_seed_documents():
    confs = dg.CONFIGURATIONS
    assert len(confs) == 4 + 2 * 7
    assert {n: c.seed_runs for n, c in confs.items() if not n.startswith(("math-masked-", "math-"))} == {
        "gsm8k": 128, "gsm8k-masked": 128, "math": 224}
    assert confs["math-masked"].seed_runs == 224
    # Paper Table 2: MATH 224 + 7x32 + 224 + 7x32 samples per problem, GSM8K 128 + 128.
    assert sum(c.seed_runs for c in confs.values() if c.base == "math") == 896
    assert sum(c.seed_runs for c in confs.values() if c.base == "gsm8k") == 256
    assert confs["math-masked-geometry"].dataset == "math-masked"
    assert confs["math-masked-geometry"].examples_type == "math_geometry"
    assert confs["math-geometry"].context_type == "empty"
    assert confs["gsm8k-masked"].generation_type == "masked_reference_solution"
    assert confs["gsm8k"].generation_type == "without_reference_solution"


def test_run_counts_seed_scaled_and_explicit():
    req = dg.DatagenRequest(model="m", engine="native")
    assert dg.runs_for(dg.CONFIGURATIONS["math"], req) == 224
    req.runs_scale = 0.1
    assert dg.runs_for(dg.CONFIGURATIONS["math"], req) == 23  # ceil(22.4)
    assert dg.runs_for(dg.CONFIGURATIONS["math-algebra"], req) == 4
    req.num_runs = 2
    assert dg.runs_for(dg.CONFIGURATIONS["math"], req) == 2
    req.num_runs, req.runs_scale = None, 0
    with pytest.raises(dg.PlanError, match="runs_scale"):
        dg.runs_for(dg.CONFIGURATIONS["math"], req)


def test_smoke_plan_jobs(local):
    plan = dg.build_plan(smoke(), local, OUT)
    assert plan["bases"] == ["gsm8k"] and plan["masked_bases"] == ["gsm8k"]
    assert plan["runs"] == {"masked-gsm8k": 2, "gsm8k": 2, "gsm8k-masked": 2}
    prep = plan["prepare"]["command"]
    assert f"data samples --split train_full --out {OUT}/data gsm8k" in prep
    assert f"head -n 3 {OUT}/data/gsm8k/train_full.jsonl" in prep
    mask = plan["mask"]["command"]
    assert f"--dataset-file {OUT}/data/gsm8k/train_full.jsonl" in mask
    runs = f"{OUT}/masked-solutions/gsm8k/output-rs0.jsonl {OUT}/masked-solutions/gsm8k/output-rs1.jsonl"
    assert f"--runs {runs} " in mask
    assert f"--output {OUT}/data/gsm8k-masked/train_full.jsonl" in mask
    collect = plan["collect"]["command"]
    assert (f"--source gsm8k masked_reference_solution '{OUT}/synthetic-solutions/gsm8k-masked/output-rs*.jsonl' "
            "gsm8k-masked") in collect
    sft = plan["sft"]["command"]
    assert "--downsampling-method fair --num-output-samples 1024000 --text-filter-type any_code" in sft
    assert plan["stats"] == {"mask.gsm8k": f"{OUT}/data/gsm8k-masked/train_full.stats.json",
                             "collect": f"{OUT}/correct_solutions.stats.json", "sft": f"{OUT}/sft-data.stats.json"}
    json.dumps(plan)  # XCom-able


def test_no_masked_configuration_plans_no_mask_step(local):
    plan = dg.build_plan(smoke(configurations=["math", "math-algebra"]), local, OUT)
    assert plan["masked_bases"] == [] and plan["mask"] == {}
    assert [u["name"] for u in plan["units"]] == ["math", "math-algebra"]
    assert "data samples --split train_full --out /cluster/dg/run1/data math" in plan["prepare"]["command"]


def test_masked_labeling_uses_the_masking_prompt(local):
    todo, missing = dg.pending_jobs(smoke(), local, OUT, "masked", {})
    assert missing == {"masked-gsm8k": [0, 1]}
    (item,) = todo
    cmd = item["job"]["command"]
    assert "--prompt openmathinstruct/text_masked_base" in cmd
    assert "--examples-type gsm8k_generate_masked --context-type reference_solution" in cmd
    assert "--num-few-shots 5" in cmd
    assert f"--input {OUT}/data/gsm8k/train_full.jsonl --output-dir {OUT}/masked-solutions/gsm8k" in cmd


def test_labeling_arrays_have_the_papers_settings(local):
    todo, _ = dg.pending_jobs(smoke(), local, OUT, "labeling", {})
    by_dir = {t["job"]["command"].split("--output-dir ")[1].split()[0]: t for t in todo}
    masked = by_dir[f"{OUT}/synthetic-solutions/gsm8k-masked"]["job"]
    cmd = masked["command"]
    for piece in ("--prompt openmathinstruct/base", "--num-few-shots 5", "--examples-type gsm8k_text_with_code",
                  "--context-type masked_solution", "--temperature 1.0", "--top-p 0.95",
                  f"--input {OUT}/data/gsm8k-masked/train_full.jsonl"):
        assert piece in cmd
    assert masked["array"] == "0-1" and masked["array_throttle"] == 2
    # Native: `skillflow generate`'s own defaults are the paper's (3 code blocks, stop on error).
    from tasks.generation.cli import register
    import argparse
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    gen = parser.parse_args(["generate", "--server-url", "u", "--model", "m", "--input", "i", "--output-dir", "o"])
    assert gen.max_code_executions == 3 and gen.stop_on_code_error is True


def test_nemo_skills_labeling_passes_code_settings_and_reads_the_prepared_data(pyxis):
    """Upstream generate_solutions.py (9b7f9d57) reads ++data_file when given; the run's own data
    folder is mounted at /data, so nothing is written into the shared NeMo-Skills checkout."""
    req = smoke(engine="nemo_skills", code_dir="/lustre/NeMo-Skills", model="/lustre/mixtral-trt", num_gpus=8)
    plan = dg.build_plan(req, pyxis, OUT)
    assert plan["data_dir"] == f"{OUT}/data"
    assert f"--output {OUT}/data/gsm8k-masked/train_full.jsonl" in plan["mask"]["command"]
    todo, _ = dg.pending_jobs(req, pyxis, OUT, "labeling", {})
    cmd = todo[0]["job"]["command"]
    for piece in ("++server.code_execution.max_code_executions=3", "++server.code_execution.stop_on_code_error=True",
                  "++prompt.few_shot_examples.num_few_shots=5", "inference.temperature=1.0",
                  "++data_file=/data/gsm8k/train_full.jsonl"):
        assert piece in cmd
    assert f"{OUT}/data:/data" in todo[0]["job"]["mounts"] and "datasets" not in cmd
    # CPU steps run in the image that carries the skillflow CLI.
    assert plan["mask"]["image"] == pyxis.images["nemo_skills"] == plan["collect"]["image"]
    # nemo_skills jobs end with an MPI error even on success: outputs decide.
    assert todo[0]["expected_outputs"] == [f"{OUT}/synthetic-solutions/gsm8k/output-rs{s}.jsonl" for s in (0, 1)]
    # The folder mounted as /results exists before sbatch: pyxis and podman refuse a missing one
    # (found when the local profile first ran datagen in containers).
    assert todo[0]["create_dirs"] == [f"{OUT}/synthetic-solutions/gsm8k"]
    assert f"{OUT}/synthetic-solutions/gsm8k:/results" in todo[0]["job"]["mounts"]


@pytest.mark.parametrize("done, arrays", [
    ({}, {"gsm8k": "0-5", "gsm8k-masked": "0-5"}),
    ({"gsm8k": {0, 1, 2, 3, 4, 5}}, {"gsm8k-masked": "0-5"}),
    ({"gsm8k": {0, 1, 2}, "gsm8k-masked": {0, 2, 3}}, {"gsm8k": "3-5", "gsm8k-masked": "1,4-5"}),
    ({"gsm8k": set(range(6)), "gsm8k-masked": set(range(6)), "masked-gsm8k": {0}}, {}),
])
def test_resubmission_submits_arrays_only_over_missing_seeds(local, done, arrays):
    req = smoke(num_runs=6)
    todo, missing = dg.pending_jobs(req, local, OUT, "labeling", done)
    got = {t["job"]["command"].split("/synthetic-solutions/")[1].split()[0]: t["job"]["array"] for t in todo}
    assert got == arrays
    for name in ("gsm8k", "gsm8k-masked"):
        assert missing[name] == [s for s in range(6) if s not in done.get(name, set())]
    for t in todo:
        # Element i still labels seed i, so a partial array writes exactly the missing files.
        assert "export SKILLFLOW_SEED=$((SLURM_ARRAY_TASK_ID + 0))" in t["job"]["command"]
        assert t["job"]["array_throttle"] == 2


def test_only_seeds_builder_extension(local):
    params = openmath.LabelingParams(model_path="/m/x.gguf", output_dir="/o", dataset="gsm8k",
                                     examples_type="gsm8k_text_with_code", engine="native", data_dir="/d")
    job = openmath.labeling_array_job(10, 4, params, local, starting_seed=10, only_seeds=[19, 11, 12, 13])
    assert job.spec.array == "1-3,9" and job.spec.array_throttle == 4
    assert job.outputs == tuple(f"/o/output-rs{s}.jsonl" for s in (11, 12, 13, 19))
    with pytest.raises(RecipeError, match="only_seeds"):
        openmath.labeling_array_job(10, 4, params, local, starting_seed=10, only_seeds=[9])
    assert openmath.index_list([7, 0, 1, 2, 5]) == "0-2,5,7"
    # One element: a range, so templating with native objects cannot turn it into an int.
    assert openmath.labeling_array_job(10, 4, params, local, only_seeds=[5]).spec.array == "5-5"


def _write(path: Path, rows: list[dict], done: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if done:
        Path(f"{path}.done").write_text("ok\n")


@pytest.mark.parametrize("engine", ["native", "nemo_skills"])
def test_completion_check_in_bash(tmp_path, engine):
    data = tmp_path / "data.jsonl"
    data.write_text('{"question": "a"}\n{"question": "b"}\n')
    out = tmp_path / "labels"
    graded = [{"question": "a", "is_correct": True}, {"question": "b", "is_correct": False}]
    _write(out / "output-rs0.jsonl", graded, done=True)                      # complete
    _write(out / "output-rs1.jsonl", [{"question": "a"}, {"question": "b"}], done=True)  # generated, not graded
    _write(out / "output-rs2.jsonl", graded[:1], done=False)                 # interrupted
    _write(out / "output-rs4.jsonl", graded, done=False)                     # graded, no marker
    units = [{"name": "gsm8k", "output_dir": str(out), "runs": 5, "data_file": str(data)}]
    proc = subprocess.run(["bash", "-c", dg.completion_command(units, engine)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    expected = {0} if engine == "native" else {0, 4}
    assert dg.parse_completion(proc.stdout) == {"gsm8k": expected}


def test_param_errors_name_the_param(local):
    with pytest.raises(dg.PlanError, match="configurations"):
        dg.build_plan(smoke(configurations=["gsm8k", "svamp"]), local, OUT)
    with pytest.raises(dg.PlanError, match="code_dir"):
        dg.build_plan(smoke(engine="nemo_skills"), local, OUT)
    with pytest.raises(dg.PlanError, match="'data'"):
        dg.build_plan(smoke(data="relative/folder"), local, OUT)
    with pytest.raises(dg.PlanError, match="server"):
        dg.build_plan(smoke(server="tensorrt_llm"), local, OUT)


def test_mirror_folder_and_download(local):
    plan = dg.build_plan(smoke(data="/mirror", limit=None, configurations=["gsm8k", "math-masked"]), local, OUT)
    cmd = plan["prepare"]["command"]
    assert f"data prepare gsm8k --split train_full --out {OUT}/data --source /mirror" in cmd
    assert f"data prepare math --split train_full --out {OUT}/data --source /mirror" in cmd
    assert "head -n" not in cmd
    assert plan["masked_bases"] == ["math"]


def test_coverage_metrics():
    stats = {"solutions": 5,
             "per_dataset": {"gsm8k": {"coverage": 0.5, "solutions": 5, "questions": 4}},
             "per_source": {"gsm8k": {"coverage": 0.25, "solutions": 2},
                            "gsm8k-masked": {"coverage": 0.5, "solutions": 3}}}
    assert dg.coverage_metrics(stats) == {
        "solutions.total": 5.0, "coverage.dataset.gsm8k": 0.5, "solutions.dataset.gsm8k": 5.0,
        "questions.dataset.gsm8k": 4.0, "coverage.config.gsm8k": 0.25, "solutions.config.gsm8k": 2.0,
        "coverage.config.gsm8k-masked": 0.5, "solutions.config.gsm8k-masked": 3.0}


def test_cpu_steps_run_end_to_end_on_labeled_files(tmp_path, local):
    """The planned data, mask, collect and sft commands, run by bash with the real CLI on graded runs."""
    out = str(tmp_path)
    plan = dg.build_plan(smoke(), local, out)
    env = dict(os.environ, SKILLFLOW_CLI=str(Path(sys.executable).with_name("skillflow")))
    if not Path(env["SKILLFLOW_CLI"]).exists():
        pytest.skip("skillflow console script not installed next to this python")

    def run(job):
        proc = subprocess.run(["bash", "-c", job["command"]], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]

    run(plan["prepare"])
    data = [json.loads(x) for x in Path(out, "data/gsm8k/train_full.jsonl").read_text().splitlines()]
    assert len(data) == 3 and all(r["reference_solution"] for r in data)

    def solution(answer) -> str:
        return (f"<llm-code>\nprint({answer})\n</llm-code>\n<llm-code-output>\n{answer}\n</llm-code-output>\n"
                f"So \\boxed{{{answer}}}.")

    def labeled(folder: str, seed: int, correct: bool) -> None:
        masking = folder.startswith("masked-solutions")
        rows = [{"question": r["question"],
                 "generation": f"Masked M = N + {seed}." if masking else solution(r["expected_answer"]),
                 "expected_answer": r["expected_answer"], "predicted_answer": str(r["expected_answer"]),
                 "is_correct": correct and i != 2} for i, r in enumerate(data)]
        _write(Path(out, folder, f"output-rs{seed}.jsonl"), rows, done=True)

    for seed in (0, 1):
        labeled("masked-solutions/gsm8k", seed, False)
    run(plan["mask"])
    masked = [json.loads(x) for x in Path(out, "data/gsm8k-masked/train_full.jsonl").read_text().splitlines()]
    assert len(masked) == 3 and all(r["masked_reference_solution"] for r in masked)
    for seed in (0, 1):
        labeled("synthetic-solutions/gsm8k", seed, True)
        labeled("synthetic-solutions/gsm8k-masked", seed, seed == 0)
    proc = subprocess.run(["bash", "-c", dg.completion_command(plan["units"], "native")], capture_output=True,
                          text=True)
    assert dg.parse_completion(proc.stdout) == {"masked-gsm8k": {0, 1}, "gsm8k": {0, 1}, "gsm8k-masked": {0, 1}}
    run(plan["collect"])
    collect = json.loads(Path(plan["stats"]["collect"]).read_text())
    metrics = dg.coverage_metrics(collect)
    # Problems 0 and 1 solved (the same text in every run, so de-duplicated), problem 2 never.
    assert metrics["coverage.dataset.gsm8k"] == pytest.approx(2 / 3)
    assert metrics["coverage.config.gsm8k"] == pytest.approx(2 / 3)
    assert metrics["solutions.total"] == 2
    run(plan["sft"])
    sft = [json.loads(x) for x in Path(plan["sft_output"]).read_text().splitlines()]
    assert len(sft) == 2 and all(r["input"].startswith("System:") and "<llm-code>" in r["output"] for r in sft)


def test_samples_split_cli(tmp_path):
    from tasks.openmath.datasets.samples import copy_samples

    written = copy_samples(["gsm8k", "math"], tmp_path, split="train_full")
    for path in written:
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        assert len(rows) == 20 and all(r.get("reference_solution") and "expected_answer" in r for r in rows)
    with pytest.raises(ValueError, match="train_full"):
        copy_samples(["asdiv"], tmp_path, split="train_full")
