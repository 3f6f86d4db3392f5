"""Slurm's notations for durations, in one place: one grammar, read the way Slurm reads it.

Used for a job's ``--time`` (the spec's validation, the plan-time check against the profile's
``max_time``, the trainer's time budget), for what ``scontrol`` prints as a partition's limit
(``cluster_check``), and for sacct's ``Elapsed`` column. :func:`nemo_duration` writes the
``DD:HH:MM:SS`` form NeMo's ``exp_manager.max_time_per_run`` reads.
"""
from __future__ import annotations

import re

UNLIMITED = None  # what :func:`slurm_time_seconds` returns for UNLIMITED / INFINITE

# sbatch's forms (``man sbatch``, ``--time``): M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
# The form's ``time_limit`` param: [D-]HH:MM:SS only, the one notation that reads the same to everyone.
FORM_TIME_PATTERN = r"^([0-9]+-)?[0-9]{1,2}:[0-9]{2}:[0-9]{2}$"


def slurm_time_seconds(text: str) -> int | None:
    """Seconds in a Slurm time limit; None for UNLIMITED/INFINITE; ValueError for anything else.

    Note the asymmetry Slurm has: without days two fields are minutes and seconds, with days they
    are hours and minutes.
    """
    value = str(text).strip()
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return UNLIMITED
    m = _TIME.match(value)
    if not m:
        raise ValueError(f"{text!r} is not a Slurm time limit ([D-]HH:MM:SS, MM, D-HH, UNLIMITED)")
    a, b, c = (int(g) if g is not None else None for g in (m["a"], m["b"], m["c"]))
    if m["days"] is not None:  # D-H, D-H:M, D-H:M:S
        return ((int(m["days"]) * 24 + a) * 60 + (b or 0)) * 60 + (c or 0)
    if c is not None:  # H:M:S
        return (a * 60 + b) * 60 + c
    if b is not None:  # M:S
        return a * 60 + b
    return a * 60  # M


def is_slurm_time(text: str) -> bool:
    try:
        slurm_time_seconds(text)
    except ValueError:
        return False
    return True


def elapsed_seconds(text: str) -> int | None:
    """sacct's ``Elapsed`` (``MM:SS``, ``HH:MM:SS``, ``D-HH:MM:SS``) in seconds; None when sacct
    has none (empty, ``INVALID``, ``N/A``)."""
    value = text.strip()
    if not value or value in ("INVALID", "N/A", "UNLIMITED"):
        return None
    return slurm_time_seconds(value)


def format_seconds(seconds: int | None) -> str:
    """``D-HH:MM:SS`` (days only when non-zero), or UNLIMITED."""
    if seconds is None:
        return "UNLIMITED"
    days, rest = divmod(int(seconds), 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


def nemo_duration(seconds: int) -> str:
    """``DD:HH:MM:SS``, the notation of NeMo's ``exp_manager.max_time_per_run``."""
    days, rest = divmod(max(int(seconds), 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"
