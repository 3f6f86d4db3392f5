"""Fixtures shared by the unit tests: the cluster profiles the recipe and render tests build against."""
from __future__ import annotations

import pytest

from tasks.profiles import ClusterProfile, load_profile


@pytest.fixture()
def pyxis() -> ClusterProfile:
    """The example Pyxis/enroot cluster profile."""
    return load_profile("example-pyxis")


@pytest.fixture()
def local(monkeypatch) -> ClusterProfile:
    """The local profile, with its root and var folders set to fixed paths."""
    monkeypatch.setenv("SKILLFLOW_ROOT", "/opt/skillflow")
    monkeypatch.setenv("SKILLFLOW_VAR", "/var/lib/skillflow")
    return load_profile("local")
