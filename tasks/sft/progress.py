"""How far a training run got, from what its trainer writes: the checkpoint names NeMo-Aligner
saves and the steps an epoch takes. Read by the continuation operator
(``operators/slurm/training.py``) between the jobs of a chain."""
from __future__ import annotations

import re


def steps_per_epoch(lines: int, global_batch_size: int, holdout: int = 0) -> int:
    """Optimizer steps in one epoch: whole global batches only (``drop_last``)."""
    return max(lines - holdout, 0) // global_batch_size


def nemo_progress(checkpoint_names: list[str]) -> int:
    """The highest step among NeMo checkpoint names (``...-step=S-consumed_samples=...``)."""
    steps = [int(m.group(1)) for n in checkpoint_names if (m := re.search(r"-step=(\d+)", n))]
    return max(steps, default=0)
