"""Exceptions of a finished Slurm job, one class per outcome so retry policy can tell them apart."""
from __future__ import annotations

from airflow.sdk.exceptions import AirflowException

from tasks.slurm.states import Outcome


class SlurmJobError(AirflowException):
    """A Slurm job ended without success; ``outcome`` says how, the message shows the log tail."""

    outcome = Outcome.FAILED

    def __init__(self, message: str, *, job_id: str | None = None, outcome: Outcome | None = None,
                 failed_indices: list[str] | None = None):
        super().__init__(message)
        self.job_id = job_id
        if outcome is not None:
            self.outcome = outcome
        self.failed_indices = failed_indices or []


class SlurmJobTimeout(SlurmJobError):
    outcome = Outcome.TIMEOUT


class SlurmNodeFailure(SlurmJobError):
    outcome = Outcome.NODE_FAIL


class SlurmOutOfMemory(SlurmJobError):
    outcome = Outcome.OUT_OF_MEMORY


class SlurmJobPreempted(SlurmJobError):
    outcome = Outcome.PREEMPTED


class SlurmJobCancelled(SlurmJobError):
    outcome = Outcome.CANCELLED


class SlurmJobLost(SlurmJobError):
    outcome = Outcome.LOST


BY_OUTCOME: dict[Outcome, type[SlurmJobError]] = {
    Outcome.FAILED: SlurmJobError,
    Outcome.TIMEOUT: SlurmJobTimeout,
    Outcome.NODE_FAIL: SlurmNodeFailure,
    Outcome.OUT_OF_MEMORY: SlurmOutOfMemory,
    Outcome.PREEMPTED: SlurmJobPreempted,
    Outcome.CANCELLED: SlurmJobCancelled,
    Outcome.LOST: SlurmJobLost,
}
