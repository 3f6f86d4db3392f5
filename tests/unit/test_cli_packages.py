"""The ``skillflow`` command line in the two places it is installed: a development checkout (every
command) and an image, which carries only ``tasks`` and ``operators`` (docker/*/Dockerfile), where
the development commands parse and say they are development tooling."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import cli

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_registers_the_development_commands():
    parser = cli.build_parser()
    args = parser.parse_args(["stack", "status"])
    assert args.handler.__module__ == "devtools.stack.cli"
    assert parser.parse_args(["demo", "--no-stack"]).handler.__module__ == "devtools.demo"


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    """What an image's wheel holds: the two runtime packages and nothing else of the checkout."""
    tree = tmp_path_factory.mktemp("image")
    for package in ("tasks", "operators"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def _skillflow(tree: Path, *argv: str) -> subprocess.CompletedProcess:
    # -S: no site-packages, where the checkout's editable install would make devtools importable;
    # the command line's registration imports only the standard library.
    code = "import sys; from tasks.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-S", "-c", code, *argv], cwd=tree, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("argv", [["stack", "up"], ["demo", "--dag", "openmath_eval"], ["stack"]])
def test_image_without_devtools_refuses_the_development_commands_by_name(image_tree, argv):
    proc = _skillflow(image_tree, *argv)
    assert proc.returncode == 2, proc.stderr
    assert f"`skillflow {argv[0]}` is development tooling (the devtools package)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_image_without_devtools_keeps_the_runtime_commands(image_tree):
    proc = _skillflow(image_tree, "--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("sandbox", "generate", "grade", "checkpoint", "plan"):
        assert f"    {command} " in proc.stdout or f"    {command}\n" in proc.stdout, command
    assert "(development checkout only)" in proc.stdout


def test_a_broken_devtools_import_is_not_mistaken_for_an_image(image_tree, tmp_path):
    """devtools present but missing one of its own imports is a real error, not 'dev-only'."""
    tree = tmp_path / "tree"
    shutil.copytree(image_tree, tree)
    (tree / "devtools" / "stack").mkdir(parents=True)
    (tree / "devtools" / "__init__.py").write_text("")
    (tree / "devtools" / "stack" / "__init__.py").write_text("")
    (tree / "devtools" / "stack" / "cli.py").write_text("import no_such_module_for_this_test\n")
    proc = _skillflow(tree, "--help")
    assert proc.returncode != 0
    assert "No module named 'no_such_module_for_this_test'" in proc.stderr
