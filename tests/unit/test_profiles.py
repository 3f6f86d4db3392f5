from __future__ import annotations

import pytest

from tests.unit.local_env import LOCAL_ENV
from tasks.profiles import ProfileError, builtin_profiles, load_profile


def test_builtin_profiles_load(monkeypatch):
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    assert {"local", "example-pyxis"} <= set(builtin_profiles())
    local = load_profile("local")
    assert local.runtime == "podman" and local.workdir == "/var/lib/skillflow/cluster/work" and local.cpu_stand_ins
    assert local.image("trainer") == "localhost/skillflow-trainer:checkout-test"
    with pytest.raises(ProfileError, match="container.images has no 'nemo'"):
        local.image("nemo")
    pyxis = load_profile("example-pyxis")
    assert pyxis.runtime == "pyxis" and "/nemo-skills:0.3.0-" in pyxis.image("trtllm")


def test_local_profile_needs_stack_env(monkeypatch):
    monkeypatch.setenv("SKILLFLOW_IMAGE_TAG", "checkout-test")
    monkeypatch.delenv("SKILLFLOW_VAR", raising=False)
    with pytest.raises(ProfileError, match="SKILLFLOW_VAR"):
        load_profile("local")
    monkeypatch.setenv("SKILLFLOW_VAR", "/opt/skillflow/var")
    monkeypatch.delenv("SKILLFLOW_IMAGE_TAG")
    with pytest.raises(ProfileError, match=r"container.images.nemo_skills uses \$\{SKILLFLOW_IMAGE_TAG\}"):
        load_profile("local")


def test_accelerator_is_gpu_or_cpu(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: c\nssh: {conn_id: x}\npaths: {workdir: /w}\nslurm: {accelerator: tpu}\n")
    with pytest.raises(ProfileError, match=r"c.yaml: slurm.accelerator 'tpu' is not one of gpu, cpu"):
        load_profile(str(bad))
    assert not load_profile("example-pyxis").cpu_stand_ins


def test_misspelt_key_lists_valid_ones(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: c\nssh: {conn_id: x}\npaths: {workdir: /w}\nslurm: {partiton: gpu}\n")
    with pytest.raises(ProfileError, match=r"slurm.partiton.*valid: .*partition"):
        load_profile(str(bad))


def test_unknown_profile_name():
    with pytest.raises(ProfileError, match="unknown cluster profile 'nope'"):
        load_profile("nope")


def test_bad_runtime(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("ssh: {conn_id: x}\npaths: {workdir: /w}\ncontainer: {runtime: docker}\n")
    with pytest.raises(ProfileError, match="runtime 'docker'"):
        load_profile(str(bad))
