"""Slurm job states as data: which are terminal, and what each means for a task.

Every terminal state maps to one :class:`Outcome` of a closed set, so retry policy can treat a
preempted job differently from a program that exited 3.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(str, enum.Enum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PREEMPTED = "PREEMPTED"
    CANCELLED = "CANCELLED"
    # The job left the queue and no accounting source knows it.
    LOST = "LOST"


TERMINAL: dict[str, Outcome] = {
    "COMPLETED": Outcome.SUCCESS,
    "FAILED": Outcome.FAILED,
    "SPECIAL_EXIT": Outcome.FAILED,
    "TIMEOUT": Outcome.TIMEOUT,
    "DEADLINE": Outcome.TIMEOUT,
    "NODE_FAIL": Outcome.NODE_FAIL,
    "BOOT_FAIL": Outcome.NODE_FAIL,
    "OUT_OF_MEMORY": Outcome.OUT_OF_MEMORY,
    "PREEMPTED": Outcome.PREEMPTED,
    "CANCELLED": Outcome.CANCELLED,
    "REVOKED": Outcome.CANCELLED,
}

ACTIVE = frozenset({
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "POWER_UP_NODE",
})


def normalize_state(raw: str) -> str:
    """``CANCELLED by 0`` and ``CANCELLED+`` (sacct) become ``CANCELLED``."""
    word = raw.strip().split()[0] if raw.strip() else "UNKNOWN"
    return word.rstrip("+").upper()


def is_terminal(state: str) -> bool:
    return normalize_state(state) in TERMINAL


def outcome_of(state: str) -> Outcome:
    return TERMINAL.get(normalize_state(state), Outcome.LOST)


@dataclass(frozen=True)
class JobState:
    """One job (or one array element) as the cluster reports it."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    array_job_id: str | None = None
    array_task_id: str | None = None
    elapsed_s: int | None = None
    nodes: int | None = None
    gpus: int | None = None
    source: str = "squeue"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``1234`` for a plain job, ``1234_7`` for array element 7 of array 1234."""
        if self.array_job_id and self.array_task_id not in (None, "", "N/A"):
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.state)

    @property
    def gpu_hours(self) -> float | None:
        if self.elapsed_s is None or self.gpus is None:
            return None
        return self.elapsed_s * self.gpus / 3600.0
