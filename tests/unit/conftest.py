"""Fixtures shared by the unit tests: the cluster profiles the recipe and render tests build against."""
from __future__ import annotations

import pytest

from tasks.profiles import ClusterProfile, load_profile
from tests.unit.local_env import LOCAL_ENV


@pytest.fixture()
def pyxis() -> ClusterProfile:
    """The example Pyxis/enroot cluster profile."""
    return load_profile("example-pyxis")


@pytest.fixture()
def local(monkeypatch) -> ClusterProfile:
    """The local profile, with its root and var folders set to fixed paths."""
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    return load_profile("local")
