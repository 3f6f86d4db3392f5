"""The local images' tags name everything they are built from (devtools/images.py), so a stale
image is never reused and an unchanged one is never rebuilt."""
from __future__ import annotations

from pathlib import Path

import pytest

from devtools import images


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile").write_text("FROM base\n")
    (tmp_path / "pins.txt").write_text("sympy==1.14.0\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "cli.py").write_text("print(1)\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(images, "ROOT", tmp_path)
    return tmp_path


IMAGE = images.LocalImage("runtime", "docker/Dockerfile", ("pins.txt",))


@pytest.mark.parametrize("change", [
    lambda t: (t / "docker" / "Dockerfile").write_text("FROM base\nRUN true\n"),
    lambda t: (t / "pins.txt").write_text("sympy==1.13.0\n"),
    lambda t: (t / "tasks" / "cli.py").write_text("print(2)\n"),
    lambda t: (t / "tasks" / "new.py").write_text(""),
    lambda t: (t / "tasks" / "cli.py").rename(t / "tasks" / "main.py"),
])
def test_every_input_is_in_the_tag(tree, change):
    before = images.image_tag(IMAGE, "localhost/skillflow-base:bookworm-1")
    change(tree)
    assert images.image_tag(IMAGE, "localhost/skillflow-base:bookworm-1") != before


def test_an_unchanged_tree_keeps_its_tag_and_a_new_base_changes_it(tree):
    tag = images.image_tag(IMAGE, "localhost/skillflow-base:bookworm-1")
    (tree / "tasks" / "__pycache__").mkdir()
    (tree / "tasks" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")  # not an input
    assert images.image_tag(IMAGE, "localhost/skillflow-base:bookworm-1") == tag
    assert images.image_tag(IMAGE, "localhost/skillflow-base:bookworm-2") != tag
    assert tag.startswith("localhost/skillflow-runtime:")


def test_the_base_comes_from_the_hosts_mirror(tmp_path):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\n")
    assert images.apt_mirror(sources) == "http://mirror.invalid/debian"
    sources.write_text("Types: deb\n")
    with pytest.raises(RuntimeError, match="debian.sources"):
        images.apt_mirror(sources)


# ------------------------------------------------------------------------- the Dockerfiles
REAL_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DOCKERFILES = sorted((REAL_ROOT / "docker" / "local").glob("*/Dockerfile"))


def test_every_local_dockerfile_is_built_and_every_image_has_one():
    assert {str(p.relative_to(REAL_ROOT)) for p in LOCAL_DOCKERFILES} == {i.dockerfile for i in images.IMAGES}


@pytest.mark.parametrize("dockerfile", LOCAL_DOCKERFILES, ids=lambda p: p.parent.name)
def test_local_dockerfile_lints_clean(dockerfile):
    from tests.unit.test_docker_images import assert_lint_clean

    assert_lint_clean(dockerfile)


def _steps(dockerfile: Path) -> list[str]:
    """The instructions, continuation lines joined, comments left out."""
    text = "\n".join(line for line in dockerfile.read_text().splitlines() if not line.startswith("#"))
    return [step.strip() for step in text.replace("\\\n", " ").split("\n") if step.strip()]


def test_the_local_images_share_the_clis_layers():
    """The claim devtools/images.py makes: the same leading steps in each, so podman builds the
    CLI's venv once for all of them."""
    runtime = _steps(REAL_ROOT / "docker" / "local" / "runtime" / "Dockerfile")
    shared = runtime[:next(i for i, s in enumerate(runtime) if s.startswith("COPY skillflow/"))]
    for dockerfile in LOCAL_DOCKERFILES:
        assert _steps(dockerfile)[:len(shared)] == shared, dockerfile
        assert images.RUNTIME_PINS in {i.requirements[0] for i in images.IMAGES if i.dockerfile.endswith(
            f"{dockerfile.parent.name}/Dockerfile")}
