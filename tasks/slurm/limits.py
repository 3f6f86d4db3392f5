"""Slurm's own notations for node resources, read the way Slurm reads them (durations are in
:mod:`tasks.slurm.durations`)."""
from __future__ import annotations

import re

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
