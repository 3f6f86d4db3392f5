"""Slurm durations: one grammar for --time, scontrol's limits and sacct's Elapsed."""
from __future__ import annotations

import pytest

from tasks.slurm.durations import (elapsed_seconds, format_seconds, is_slurm_time, nemo_duration,
                                   slurm_time_seconds)
from tasks.slurm.spec import JobSpec, JobSpecError


@pytest.mark.parametrize("text,seconds", [
    # man sbatch, --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
    ("30", 1800), ("90", 5400), ("1:30", 90), ("10:30", 630), ("02:00:00", 7200), ("04:00:00", 14400),
    ("1-00", 86400), ("2-00", 172800), ("1-02:03", 93780), ("1-02:03:04", 93784), ("1-00:00:05", 86405),
    (" 01:00:00 ", 3600), ("UNLIMITED", None), ("INFINITE", None), ("unlimited", None)])
def test_sbatch_time_forms(text, seconds):
    assert slurm_time_seconds(text) == seconds
    assert is_slurm_time(text)


@pytest.mark.parametrize("text", ["4h", "", "1-", "-1", "1:2:3:4", "01:00:00 junk", "1.5"])
def test_not_a_time_names_the_value(text):
    with pytest.raises(ValueError, match="is not a Slurm time limit"):
        slurm_time_seconds(text)
    assert not is_slurm_time(text)


@pytest.mark.parametrize("text,seconds", [("00:05", 5), ("59:59", 3599), ("01:02:03", 3723), ("2-01:00:00", 176400),
                                          ("", None), ("INVALID", None), ("N/A", None)])
def test_sacct_elapsed(text, seconds):
    assert elapsed_seconds(text) == seconds


@pytest.mark.parametrize("seconds", [0, 59, 3600, 86399, 86400, 93784, 10 * 86400 + 1])
def test_format_and_parse_round_trip(seconds):
    assert slurm_time_seconds(format_seconds(seconds)) == seconds


def test_format_and_nemo_notation():
    assert format_seconds(93784) == "1-02:03:04" and format_seconds(7200) == "02:00:00"
    assert format_seconds(None) == "UNLIMITED"
    assert nemo_duration(93784) == "01:02:03:04" and nemo_duration(-5) == "00:00:00:00"


def test_job_spec_time_uses_the_same_grammar():
    JobSpec(name="j", command="true", time="1-02:03").validate()
    JobSpec(name="j", command="true", time="UNLIMITED").validate()
    with pytest.raises(JobSpecError, match="time"):
        JobSpec(name="j", command="true", time="4h").validate()
