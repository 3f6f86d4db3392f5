from __future__ import annotations

import pytest

from tasks.profiles import ProfileError, builtin_profiles, load_profile


def test_builtin_profiles_load(monkeypatch):
    monkeypatch.setenv("SKILLFLOW_ROOT", "/opt/skillflow")
    monkeypatch.setenv("SKILLFLOW_VAR", "/opt/skillflow/var")
    assert {"local", "example-pyxis"} <= set(builtin_profiles())
    local = load_profile("local")
    assert local.runtime == "none" and local.workdir == "/opt/skillflow/var/cluster/work"
    assert local.image("nemo") is None
    pyxis = load_profile("example-pyxis")
    assert pyxis.runtime == "pyxis" and "/nemo-skills:0.3.0-" in pyxis.image("trtllm")


def test_local_profile_needs_stack_env(monkeypatch):
    monkeypatch.delenv("SKILLFLOW_VAR", raising=False)
    with pytest.raises(ProfileError, match="SKILLFLOW_VAR"):
        load_profile("local")


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
