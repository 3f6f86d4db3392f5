"""cluster_check without the cluster: the table, the partition rows from scontrol's text, the probe
jobs planned from a profile, and the probe's own checks run for real on this machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.cluster_check import partition, probe, probes
from tasks.cluster_check.table import FAIL, PASS, SKIP, Row, failures, markdown, summary
from tasks.profiles import load_profile
from tasks.slurm.render import render_sbatch
from tasks.slurm.spec import JobSpec
from tasks.steps.base import SANDBOX_PORT_EXPR
from tests.markdown import markdown_rows
from tests.unit.local_env import LOCAL_ENV, without_containers

ROOT = Path(__file__).resolve().parents[2]
FAKE_ENV = LOCAL_ENV
# limits_command("debug") output in Slurm 22.05.8's format, with the local stack's values (its
# partition_limits task read the same MaxTime, Nodes and Gres); some fields cut.
SCONTROL_LOCAL = """\
PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=node1 PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=20000M,node=1,billing=2,gres/gpu=2
@@SKILLFLOW_CLUSTER_CHECK nodes
NodeName=node1 Arch=x86_64 CoresPerSocket=2 CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=0.45 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=10.213.0.1 NodeHostName=vm Version=22.05.8 OS=Linux 6.1.0-28-cloud-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)  RealMemory=20000 AllocMem=0 FreeMem=9000 Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=debug,urgent,multi,bench
NodeName=node2 Arch=x86_64 CoresPerSocket=2 CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=0.45 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=10.213.0.2 NodeHostName=node2 Version=22.05.8 OS=Linux 6.1.0-28-cloud-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)  RealMemory=20000 AllocMem=0 FreeMem=9000 Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=multi
@@SKILLFLOW_CLUSTER_CHECK partitions
bench
debug
multi
urgent
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)


def profile_variant(tmp_path: Path, name: str = "local", **slurm) -> object:
    raw = yaml.safe_load((ROOT / "tasks" / "cluster_profiles" / f"{name}.yaml").read_text())
    raw["slurm"].update(slurm)
    path = tmp_path / f"{name}-variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_profile(str(path))


# ---------------------------------------------------------------------------------------- table

def test_table_renders_every_row_with_its_fix():
    rows = [Row("a", "t", PASS, "fine"), Row("b", "t", FAIL, "x | y", "do z"), Row("c", "t", SKIP, "n/a")]
    text = markdown(rows, "title")
    assert ["b", "t", "FAIL", "x \\| y", "do z"] in markdown_rows(text)
    assert summary(rows) == "1 passed, 1 failed, 1 skipped (not applicable) of 3 checks" and text.endswith(
        summary(rows) + "\n")
    assert failures(rows) == [rows[1]]
    assert Row.from_dict(rows[1].as_dict()) == rows[1]


def test_a_failed_row_without_a_fix_is_refused():
    with pytest.raises(ValueError, match="needs its fix"):
        Row("a", "t", FAIL, "broken")
    with pytest.raises(ValueError, match="not one of"):
        Row("a", "t", "OK", "fine")


# ------------------------------------------------------------------------------------ partition

def test_local_partition_matches_the_local_profile():
    rows = partition.partition_rows(load_profile("local"), SCONTROL_LOCAL)
    assert [(r.check, r.status) for r in rows] == [
        ("partition exists", PASS), ("partition is up", PASS), ("max_time within the partition's", PASS),
        ("default_time within max_time", PASS), ("GPUs per node", PASS), ("multi-node partition exists", PASS)]
    assert rows[-2].detail.endswith("GPUs in Gres= per node: node1: 2")  # node2 is not in debug


def test_a_multi_node_partition_the_cluster_lacks_fails_naming_the_real_ones(tmp_path):
    rows = {r.check: r for r in partition.partition_rows(profile_variant(tmp_path, multi_node_partition="wide"),
                                                          SCONTROL_LOCAL)}
    row = rows["multi-node partition exists"]
    assert row.status == FAIL and row.target == "partition wide"
    assert row.fix == "set slurm.multi_node_partition to one of: bench, debug, multi, urgent (or null)"
    (tmp_path / "b").mkdir()
    rows = partition.partition_rows(profile_variant(tmp_path / "b", multi_node_partition=None), SCONTROL_LOCAL)
    assert "multi-node partition exists" not in [r.check for r in rows]


def test_a_profile_promising_more_than_the_partition_fails_with_the_fix(tmp_path):
    profile = profile_variant(tmp_path, gpus_per_node=4, cpus_per_node=64)
    limited = SCONTROL_LOCAL.replace("MaxTime=UNLIMITED", "MaxTime=01:00:00")
    rows = {r.check: r for r in partition.partition_rows(profile, limited)}
    assert rows["GPUs per node"].status == FAIL and rows["GPUs per node"].fix == (
        "set slurm.gpus_per_node to 2, what every node of the partition has")
    assert rows["max_time within the partition's"].fix.startswith("set slurm.max_time to 01:00:00 or less")
    assert rows["CPUs per node"].fix == "set slurm.cpus_per_node to 2"


def test_a_missing_partition_lists_the_real_ones(tmp_path):
    profile = profile_variant(tmp_path, partition="gpu")
    text = ("slurm_load_partitions: Invalid partition name specified\n@@SKILLFLOW_CLUSTER_CHECK nodes\n"
            "@@SKILLFLOW_CLUSTER_CHECK partitions\nbench\ndebug\n")
    [row] = partition.partition_rows(profile, text)
    assert row.status == FAIL and row.fix == "set slurm.partition to one of: bench, debug"
    assert "Invalid partition name" in row.detail


# --------------------------------------------------------------------------------------- probes

def test_local_profile_probes_each_image_and_without_containers_the_node():
    images = {p.name: p for p in probes.plan_probes(load_profile("local"), "/cluster/cc/run1")[0]}
    assert sorted(images) == ["model_server", "nemo_skills", "sandbox", "trainer"]
    assert JobSpec.from_dict(images["trainer"].job).image == load_profile("local").images["trainer"]
    # Two cluster_check runs share the local node: each sandbox listens on its own job's port.
    in_image = JobSpec.from_dict(images["sandbox"].job)
    assert all(c.startswith(f"export SKILLFLOW_SANDBOX_PORT={SANDBOX_PORT_EXPR}\n")
               for c in (in_image.command, in_image.sidecars[0].command))
    profile = without_containers(load_profile("local"))
    planned, rows = probes.plan_probes(profile, "/cluster/cc/run1")
    assert rows == [] and [p.name for p in planned] == ["node", "sandbox"]
    node, sandbox = (JobSpec.from_dict(p.job).validate() for p in planned)
    assert node.gpus_per_node == 1 and node.image is None and node.output == "/cluster/cc/run1/node.log"
    cfg = json.loads(node.env["SKILLFLOW_CLUSTER_PROBE"])
    assert cfg["models"] == {"smollm2": FAKE_ENV["SKILLFLOW_SMOLLM2_GGUF"]} and cfg["result"] == "/cluster/cc/run1/node.json"
    assert set(profile.storage_env) <= set(node.env)
    assert sandbox.gpus_per_node == 0 and [s.name for s in sandbox.sidecars] == ["sandbox"]
    assert "SKILLFLOW_SANDBOX_PORT=$((20001" in sandbox.command


def test_pyxis_probes_one_job_per_distinct_image_and_names_no_key():
    profile = load_profile("example-pyxis")
    planned, rows = probes.plan_probes(profile, "/lustre/fsw/my_account/skillflow/cluster_check/r")
    assert rows == []
    targets = {p.name: p.target for p in planned}
    # nemo_skills and trtllm are the same image: one job for both.
    assert sorted(targets) == ["nemo", "nemo_skills", "openrlhf", "sandbox", "vllm"]
    assert "[nemo_skills, trtllm]" in targets["nemo_skills"]
    for p in planned:
        script = render_sbatch(JobSpec.from_dict(p.job), profile)
        assert f"--container-image={profile.images['sandbox' if p.name == 'sandbox' else p.name]}" in script
        assert "--container-mounts=/lustre/fsw/my_account:/lustre/fsw/my_account" in script
        assert "aws_secret_access_key" not in script.lower() and "AWS_SECRET" not in script
    sandbox = JobSpec.from_dict(next(p.job for p in planned if p.name == "sandbox"))
    # The job's own port, as the native engine starts it, never the fixed 6000: probes may share a node.
    port = f"export SKILLFLOW_SANDBOX_PORT={SANDBOX_PORT_EXPR}\n"
    assert sandbox.sidecars[0].command == port + "/entrypoint.sh && exec /start.sh"
    assert sandbox.sidecars[0].image == profile.images["sandbox"] and sandbox.command.startswith(port)


def test_profile_facts_judged_before_any_job(tmp_path):
    raw = yaml.safe_load((ROOT / "tasks" / "cluster_profiles" / "example-pyxis.yaml").read_text())
    raw["container"]["images"]["vllm"] = None
    del raw["container"]["images"]["sandbox"]
    raw["models"] = {"mistral": "${NO_SUCH_VARIABLE_HERE}/mistral"}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    planned, rows = probes.plan_probes(load_profile(str(path)), "/x")
    assert {r.check: r.fix.split(" ")[0] for r in rows} == {
        "model 'mistral'": "set", "image 'vllm'": "set", "image 'sandbox'": "add"}
    assert "sandbox" not in [p.name for p in planned] and all(r.status == FAIL for r in rows)


def test_missing_result_row_quotes_the_log():
    log = ("skillflow: job 7 (cluster-check-nemo) on node1 at 2026-12-06T20:26:11+00:00\n"
           "pyxis: importing docker image: registry.example.com/skillflow/nemo:1\n"
           "pyxis: failed to import docker image\nsrun: error: node1: task 0: Exited with exit code 1\n"
           "skillflow: main step exited with status 1 at 2026-12-06T20:26:12+00:00\n")
    row = probes.missing_result_row({"result": "/r.json", "log": "/r.log", "target": "img / p"}, log)
    assert row.status == FAIL and row.detail == (
        "no result at /r.json; log /r.log: pyxis: importing docker image: registry.example.com/skillflow/nemo:1 / "
        "pyxis: failed to import docker image / srun: error: node1: task 0: Exited with exit code 1")
    assert "container that cannot start" in row.fix


# ------------------------------------------------------------------------- the probe, for real

def test_folder_and_model_checks(tmp_path):
    assert probe.check_folder(str(tmp_path), True, "paths.workdir")[0] == PASS
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    status, detail, fix = probe.check_folder(str(tmp_path / "absent"), True, "container.mounts")
    assert status == FAIL and fix.startswith(f"create {tmp_path / 'absent'} on the cluster")
    (tmp_path / "m.gguf").write_bytes(b"x" * 1000)
    assert probe.check_model("m", str(tmp_path / "m.gguf"))[0] == PASS
    assert probe.check_model("m", str(tmp_path / "nope.gguf"))[2] == (
        f"copy the model to {tmp_path / 'nope.gguf'} on the cluster (a mounted path), or change models.m in the profile")
    assert probes.parse_mount("/a:/b:ro") == {"spec": "/a:/b:ro", "path": "/b", "writable": False}
    assert probes.parse_mount("/a") == {"spec": "/a", "path": "/a", "writable": True}


def test_gpu_rows_say_what_was_and_was_not_checked(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("PATH", "/nonexistent")
    cfg = {"gpus": 1, "runtime": "none", "partition": "debug"}
    assert probe.check_gpu_allocation(cfg)[0] == PASS
    status, detail, _ = probe.check_gpu_devices(cfg)
    assert status == SKIP and "devices were not queried" in detail
    # In a container the driver's tools must be there: a missing nvidia-smi is a failure.
    assert probe.check_gpu_devices({**cfg, "runtime": "pyxis"})[0] == FAIL
    assert probe.check_gpu_allocation({**cfg, "gpus": 2})[0] == FAIL


def test_s3_check_refuses_keys_in_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    status, detail, fix = probe.check_s3({"bucket": "b", "storage_env_names": []})
    assert status == FAIL and "credentials method 'env'" in detail and "credentials file" in fix


def test_broken_profile_probe_runs_as_a_job_would_and_fails_the_model_check(tmp_path):
    """The probe job's own command (`skillflow cluster-probe`, the CLI of this venv standing in for
    the image's) with the config of a profile whose model is missing gives: the job succeeds, its
    result names the failed check and the fix. The command names no interpreter: the profile's
    `paths.python` is the image's own, which cannot import skillflow."""
    profile = without_containers(load_profile("local"))
    [node, _] = probes.plan_probes(profile, str(tmp_path / "out"))[0]
    cfg = json.loads(node.job["env"]["SKILLFLOW_CLUSTER_PROBE"])
    cfg.update(workdir=str(tmp_path), models={"smollm2": str(tmp_path / "gone.gguf")}, gpus=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SKILLFLOW_CLUSTER_PROBE": json.dumps(cfg),
           "SKILLFLOW_CLI": str(Path(sys.executable).parent / "skillflow"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"), "AWS_CONFIG_FILE": str(tmp_path / "no"),
           "AWS_PROFILE": "none"}
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    assert "SKILLFLOW_PYTHON" not in node.job["command"], node.job["command"]
    proc = subprocess.run(["bash", "-c", node.job["command"]], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["check"]: r for r in json.loads(Path(cfg["result"]).read_text())["rows"]}
    assert rows["model 'smollm2'"]["status"] == FAIL
    assert rows["model 'smollm2'"]["fix"].startswith(f"copy the model to {tmp_path / 'gone.gguf'}")
    assert rows["container starts"]["status"] == SKIP and rows["workdir writable"]["status"] == PASS
    assert rows["skillflow --version"]["status"] == PASS and "skillflow " in rows["skillflow --version"]["detail"]
    assert rows["S3 reachable with cluster credentials"]["status"] == FAIL
