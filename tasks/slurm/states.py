"""Slurm job states as data: which are terminal, and what each means for a task.

Every terminal state maps to one :class:`Outcome` of a closed set, so retry policy can treat a
preempted job differently from a program that exited 3.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping


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


@dataclass(frozen=True)
class OutcomePolicy:
    """What one outcome means for the task that waited on the job.

    ``severity``: when an array's elements end differently, the outcome reported is the most
    severe one present (lowest number first): infrastructure outcomes lead, because they decide
    whether a retry can help. ``retry``: whether a Slurm task may retry after it (the default
    ``retry_on`` of :class:`operators.slurm.operator.SlurmJobOperator`). ``continues``: whether a
    training chain submits its next job after it (the job stopped for time or lost its node, and
    the trainer's checkpoint is good), instead of judging it as a failure.
    """

    outcome: Outcome
    severity: int
    retry: bool
    continues: bool
    meaning: str


# The policy, one row per outcome.
POLICY: dict[Outcome, OutcomePolicy] = {p.outcome: p for p in (
    OutcomePolicy(Outcome.SUCCESS, 99, retry=False, continues=True, meaning="the job completed"),
    OutcomePolicy(Outcome.NODE_FAIL, 0, retry=True, continues=True, meaning="a node failed or did not boot"),
    OutcomePolicy(Outcome.PREEMPTED, 1, retry=True, continues=True, meaning="the scheduler preempted the job"),
    OutcomePolicy(Outcome.OUT_OF_MEMORY, 2, retry=True, continues=False, meaning="the job ran out of memory"),
    OutcomePolicy(Outcome.TIMEOUT, 3, retry=True, continues=True, meaning="the job reached its time limit"),
    OutcomePolicy(Outcome.CANCELLED, 4, retry=False, continues=False, meaning="someone cancelled the job"),
    OutcomePolicy(Outcome.FAILED, 5, retry=True, continues=False, meaning="the program exited non-zero"),
    OutcomePolicy(Outcome.LOST, 6, retry=True, continues=False,
                  meaning="the job left the queue and no accounting source knows it"),
)}

# Outcomes a Slurm task retries after, in severity order.
DEFAULT_RETRY_ON: tuple[str, ...] = tuple(p.outcome.value for p in sorted(POLICY.values(), key=lambda p: p.severity)
                                          if p.retry)
# Ends after which a training chain submits a continuation job.
CONTINUE_AFTER: frozenset[Outcome] = frozenset(o for o, p in POLICY.items() if p.continues)
# A training task retries only real failures; the ends a continuation handles are not retried.
TRAINING_RETRY_ON: tuple[str, ...] = tuple(o for o in DEFAULT_RETRY_ON if Outcome(o) not in CONTINUE_AFTER)


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The most severe of ``outcomes`` (see :class:`OutcomePolicy`); ValueError when empty."""
    present = set(outcomes)
    if not present:
        raise ValueError("no outcome to judge")
    return min(present, key=lambda o: POLICY[o].severity)


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


class EventStatus(str, enum.Enum):
    """Why the trigger fired."""

    DONE = "done"  # every element of the job is terminal
    LOST = "lost"  # the job is in neither squeue nor accounting
    ERROR = "error"  # the cluster could not be reached for too long
    WAKE = "wake"  # the job still runs; the task does periodic work and waits again


@dataclass(frozen=True)
class JobEvent:
    """What :class:`operators.slurm.trigger.SlurmJobTrigger` hands the operator. It travels as the
    dict of :meth:`to_dict` (Airflow stores trigger events as JSON); those keys never change, so
    an event written by an older triggerer is still read."""

    status: EventStatus
    job_id: str
    states: tuple[JobState, ...] = ()
    log_path: str | None = None
    log_offset: int = 0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "job_id": self.job_id, "states": [asdict(s) for s in self.states],
                "log_path": self.log_path, "log_offset": self.log_offset, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobEvent":
        return cls(status=EventStatus(data["status"]), job_id=data.get("job_id"),
                   states=tuple(JobState(**s) for s in data.get("states") or ()), log_path=data.get("log_path"),
                   log_offset=int(data.get("log_offset") or 0), message=data.get("message") or "")
