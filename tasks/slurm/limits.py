"""Slurm's own notations for limits, read the way Slurm reads them.

Shared by the plan-time checks (a job's ``--time`` against the profile) and ``cluster_check``
(the profile against what ``scontrol show partition`` and ``scontrol show node`` print), so the
two can never disagree on what ``1-00:00`` means.
"""
from __future__ import annotations

import re

UNLIMITED = None  # what :func:`slurm_time_seconds` returns for UNLIMITED / INFINITE

_DAYS = re.compile(r"^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$")
_CLOCK = re.compile(r"^(\d+)(?::(\d+))?(?::(\d+))?$")


def slurm_time_seconds(text: str) -> int | None:
    """Seconds in a Slurm time limit; None for UNLIMITED/INFINITE.

    sbatch's forms (``man sbatch``, ``--time``): ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``. Note the asymmetry: without days two fields are minutes and seconds, with days
    they are hours and minutes.
    """
    value = str(text).strip()
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return UNLIMITED
    m = _DAYS.match(value)
    if m:
        days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    m = _CLOCK.match(value)
    if m:
        parts = [int(g) for g in m.groups() if g is not None]
        if len(parts) == 1:
            return parts[0] * 60
        if len(parts) == 2:
            return parts[0] * 60 + parts[1]
        return (parts[0] * 60 + parts[1]) * 60 + parts[2]
    raise ValueError(f"{text!r} is not a Slurm time limit ([D-]HH:MM:SS, MM, D-HH, UNLIMITED)")


def format_seconds(seconds: int | None) -> str:
    """``D-HH:MM:SS`` (days only when non-zero), or UNLIMITED."""
    if seconds is None:
        return "UNLIMITED"
    days, rest = divmod(int(seconds), 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


def gpus_in_gres(gres: str) -> int:
    """GPUs a node offers, from ``scontrol show node``'s ``Gres=`` (``gpu:8``, ``gpu:a100:4(S:0-1)``,
    ``gpu:a100:4,gpu:v100:2``, ``(null)``)."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres or ""):
        item = re.sub(r"\(.*?\)", "", item).strip()
        fields = item.split(":")
        if fields[0] != "gpu" or len(fields) < 2:
            continue
        count = fields[-1]
        if count.isdigit():
            total += int(count)
    return total
