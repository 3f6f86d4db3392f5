"""The command behind the UI's Slurm log endpoint, run by the shell here as the login node would.

It may show only a ``.log`` file under the work folder; the file is judged by what it resolves to
(symlinks followed), not by its name. The endpoint itself is tested on the stack in
tests/integration/test_ui_links.py.
"""
from __future__ import annotations

import subprocess

import pytest

from tasks.slurm.commands import OUTSIDE_RC, contained_tail_command


@pytest.fixture()
def tree(tmp_path):
    work, outside = tmp_path / "work", tmp_path / "outside"
    (work / "run").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.log").write_text("secret\n")
    (outside / "secret.txt").write_text("secret\n")
    (work / "run" / "job.log").write_text("".join(f"line {i}\n" for i in range(10)))
    return work, outside


def run(path, root, n=3) -> tuple[int, str]:
    out = subprocess.run(["sh", "-c", contained_tail_command(str(path), f"{root}/", n)], capture_output=True,
                         text=True, timeout=30)
    return out.returncode, out.stdout


def test_a_log_under_the_folder_is_shown(tree):
    work, _ = tree
    assert run(work / "run" / "job.log", work) == (0, "line 7\nline 8\nline 9\n")
    (work / "alias.log").symlink_to(work / "run" / "job.log")  # a link that stays inside
    assert run(work / "alias.log", work, 1) == (0, "line 9\n")


def test_links_that_lead_out_are_refused(tree):
    work, outside = tree
    (work / "escape.log").symlink_to(outside / "secret.log")
    (work / "dir").symlink_to(outside, target_is_directory=True)
    (work / "renamed.log").symlink_to(outside / "secret.txt")
    (work / "inner.log").symlink_to(work / "run")  # a folder, not a file
    for path in (work / "escape.log", work / "dir" / "secret.log", work / "renamed.log"):
        assert run(path, work) == (OUTSIDE_RC, ""), path
    assert run(work / "inner.log", work)[0] not in (0, OUTSIDE_RC)
    assert run(work / "missing.log", work) == (4, "")


def test_a_work_folder_reached_through_a_link_still_works(tree, tmp_path):
    work, _ = tree
    (tmp_path / "work-link").symlink_to(work, target_is_directory=True)
    assert run(tmp_path / "work-link" / "run" / "job.log", tmp_path / "work-link", 1) == (0, "line 9\n")
