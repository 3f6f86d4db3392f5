"""JobSpec validation: bad values are refused with a message naming the field."""
from __future__ import annotations

import dataclasses

import pytest

from tasks.slurm.spec import JobSpec, JobSpecError, Sidecar


def spec(**kw) -> JobSpec:
    return JobSpec(name=kw.pop("name", "job"), command=kw.pop("command", "echo hi"), **kw)


@pytest.mark.parametrize("time", ["04:00:00", "30", "1-12:00:00", "2-00", "UNLIMITED", "10:00"])
def test_good_times_pass(time: str) -> None:
    assert spec(time=time).validate().time == time


@pytest.mark.parametrize("field,value", [
    ("time", "4h"), ("time", "04:00:00 --uid=0"), ("time", "1:00:00\n#SBATCH --uid=0"),
    ("partition", "batch --uid=0"), ("partition", "batch\n#SBATCH --uid=0"), ("partition", "$(id)"),
    ("account", "acct;id"), ("mem", "64 G"), ("mem", "0;id"), ("array", "0-10%4"), ("array", "1-$(id)"),
    ("signal", "USR1@90;id"), ("name", "eval job"), ("name", "x\n#SBATCH --uid=0"), ("name", "-x"),
])
def test_bad_header_values_name_the_field(field: str, value: str) -> None:
    with pytest.raises(JobSpecError) as err:
        spec(**{field: value}).validate()
    assert f"{field}={value!r}" in str(err.value)


@pytest.mark.parametrize("field,value,why", [
    ("dependency", ("afterok:1 --wrap=id",), "dependency"),
    ("dependency", ("afterok:1\n#SBATCH --uid=0",), "dependency"),
    ("extra_sbatch_args", ("--comment=$(id)",), "extra_sbatch_args"),
    ("extra_sbatch_args", ("--mem=0 --uid=0",), "extra_sbatch_args"),
    ("mounts", ("/data:/data;id",), "mounts"),
    ("mounts", ("/my data:/data",), "mounts"),
    ("env", {"BAD-KEY": "x"}, "env"),
    ("env", {"A=B; id": "x"}, "env"),
])
def test_injection_in_sbatch_or_mount_values_is_refused(field: str, value, why: str) -> None:
    with pytest.raises(JobSpecError, match=why):
        spec(**{field: value}).validate()


def test_env_values_and_command_may_hold_anything() -> None:
    """They reach the script shell-quoted or through a quoted heredoc, so no check is needed."""
    spec(env={"OK": "$(touch /tmp/x); rm -rf /"}, command="echo '$(id)'").validate()


@pytest.mark.parametrize("kw,field", [
    ({"nodes": 0}, "nodes"), ({"ntasks_per_node": -1}, "ntasks_per_node"), ({"gpus_per_node": -2}, "gpus_per_node"),
    ({"array_throttle": 4}, "array_throttle"), ({"master_port": 70000}, "master_port"),
    ({"command": "   "}, "command"), ({"use_srun": False, "nodes": 2}, "use_srun"),
    ({"sidecars": (Sidecar(name="bad name", command="x"),)}, "sidecars.name"),
])
def test_structural_errors_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(JobSpecError, match=field.replace(".", r"\.")):
        spec(**kw).validate()


def test_from_dict_lists_valid_fields_on_a_typo() -> None:
    with pytest.raises(JobSpecError, match=r"unknown job spec field\(s\) gpus .*valid: .*gpus_per_node"):
        JobSpec.from_dict({"name": "j", "command": "x", "gpus": 8})


def test_from_dict_round_trips_sidecars_and_tuples() -> None:
    original = spec(mounts=("/a:/b",), sidecars=(Sidecar(name="sandbox", command="serve", warmup_s=3),),
                    dependency=("afterany:12",))
    rebuilt = JobSpec.from_dict(dataclasses.asdict(original))
    assert rebuilt == original
