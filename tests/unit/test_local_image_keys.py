"""The local images' tags name everything they are built from (devtools/images.py), so a stale
image is never reused and an unchanged one is never rebuilt."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools import images


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    (tmp_path / "docker" / "local").mkdir(parents=True)
    (tmp_path / images.DOCKERFILE).write_text("FROM base\n")
    for name in images.CONTEXT_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("set -eu\n")
    (tmp_path / "pins.txt").write_text("sympy==1.14.0\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "cli.py").write_text("print(1)\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(images, "ROOT", tmp_path)
    return tmp_path


IMAGE = images.LocalImage("runtime", ("pins.txt",))


@pytest.mark.parametrize("change", [
    lambda t: (t / images.DOCKERFILE).write_text("FROM base\nRUN true\n"),
    lambda t: (t / images.INSTALL_SCRIPT).write_text("set -eux\n"),
    lambda t: (t / "docker" / "sandbox" / "start.sh").write_text("exec true\n"),
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
    # Another target of the same Dockerfile, from the same pins, is another image.
    assert images.image_tag(images.LocalImage("sandbox", ("pins.txt",)), "localhost/skillflow-base:bookworm-1") != tag


def test_the_base_comes_from_the_hosts_mirror(tmp_path):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\n")
    assert images.apt_mirror(sources) == "http://mirror.invalid/debian"
    sources.write_text("Types: deb\n")
    with pytest.raises(RuntimeError, match="debian.sources"):
        images.apt_mirror(sources)


# ------------------------------------------------------------------------- the Dockerfile
DOCKERFILE = Path(__file__).resolve().parents[2] / images.DOCKERFILE


def _stages() -> dict[str, str]:
    """Each stage of docker/local/Dockerfile and the stage or image it starts from."""
    found = re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE.read_text(), re.M)
    return {name: parent for parent, name in found}


def test_every_image_is_a_target_and_every_target_an_image():
    stages = _stages()
    targets = {name for name in stages if not name.endswith("-deps") and name != "cli"}
    assert targets == {i.name for i in images.IMAGES}


def test_every_target_starts_from_the_clis_stage():
    """The claim devtools/images.py makes: the CLI's venv is one stage, so podman builds it once."""
    stages = _stages()
    assert stages["cli"] == "${BASE}"
    for image in images.IMAGES:
        parent = stages[image.name]
        assert parent == "cli" or stages[parent] == "cli", (image.name, parent)
        assert image.requirements[0] == images.RUNTIME_PINS


def test_the_local_dockerfile_lints_clean():
    from tests.unit.test_docker_images import assert_lint_clean

    assert_lint_clean(DOCKERFILE)
