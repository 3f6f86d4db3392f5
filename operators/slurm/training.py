"""A Slurm training task that outlives the partition's walltime: continuation jobs until done.

Training for days does not fit a 4-hour partition. The job saves before walltime (the trainer's
own time budget, and a signal from Slurm) and ends; this operator then reads where training
stands on the cluster and, if it is not done, submits the same script again, which resumes from
the newest checkpoint. Whether training is done is read from the cluster, never from Slurm's
state: a job that stopped for walltime after saving ends COMPLETED, and one that Slurm killed
at the limit ends TIMEOUT although its checkpoint is good.

While a job runs, the task wakes every ``curves_every_s`` on a worker to copy the TensorBoard
curves into MLflow, then defers again, so users watch loss and learning rate during the run.

Every job of the chain has its own record on the cluster (``.c0``, ``.c1``, ...): a restarted
worker or a retried task finds the newest one and reconnects to it instead of submitting again.
"""
from __future__ import annotations

import json
import shlex
import time
from typing import Any, Sequence

from airflow.sdk.exceptions import AirflowFailException

from operators.slurm.operator import SlurmJobOperator
from tasks.slurm.states import (ACTIVE, CONTINUE_AFTER, TRAINING_RETRY_ON, EventStatus, JobEvent, JobState, Outcome,
                                worst)


class SlurmTrainingOperator(SlurmJobOperator):
    """:param progress: how to read progress on the cluster, as a recipe's plan gives it
        (:mod:`tasks.openmath.sft`, :mod:`tasks.apps.plan`; read with :mod:`tasks.sft.progress`):
        ``kind`` ``local``: the trainer's ``status.json``; ``nemo``: checkpoint names against the
        steps the data gives; ``files``: done when these files exist, for trainers that write
        their model only at the end.
    :param max_jobs: at most this many jobs in the chain (the first included).
    :param curves: ``{"tensorboard": folder, "mlflow_run_id": id, "mlflow_conn_id": conn}`` or empty.
    """

    template_fields: Sequence[str] = (*SlurmJobOperator.template_fields, "progress", "curves", "max_jobs",
                                      "curves_every_s")
    ui_color = "#b5dcff"

    def __init__(self, *, progress: dict[str, Any], max_jobs: int = 20, curves: dict[str, Any] | None = None,
                 curves_every_s: float = 300.0, **kwargs):
        # Ends after which a continuation helps (CONTINUE_AFTER: the job stopped for time, or the
        # node went away) are handled by the chain, not retried; the policy is tasks.slurm.states.POLICY.
        kwargs.setdefault("retry_on", TRAINING_RETRY_ON)
        super().__init__(**kwargs)
        self.progress = progress
        self.max_jobs = max_jobs
        self.curves = curves or {}
        self.curves_every_s = curves_every_s
        self._link: int = 0

    # One record per job of the chain --------------------------------------------------------
    def _identity(self, context) -> str:
        return f"{super()._identity(context)}.c{self._link}"

    def execute(self, context) -> dict[str, Any]:
        if not self.job:
            return super().execute(context)
        profile = self._profile()
        hook = self._hook(profile)
        # Find the newest link a previous try or worker got to; its jobs count in the result.
        chain = self._recorded_chain(context, profile, hook)
        if chain:
            self._link = len(chain) - 1
            states = hook.states([chain[-1]])
            if states and any(s.state in ACTIVE for s in states):
                self.log.info("Reconnecting to training job %s (link %d of the chain)", chain[-1], self._link)
                return self._defer_on(context, profile, chain[-1], chain[:-1], log_offset=0)
            if states:
                # A newer try of the task: Airflow retried it after the newest link failed, so a
                # retryable failure of that link gets a new link (resuming from the last checkpoint)
                # rather than the same verdict again.
                return self._after_job(context, chain[-1], states, chain[:-1], retrying=True)
        self._link = len(chain)
        return self._submit_link(context, chain)

    def _recorded_chain(self, context, profile, hook) -> list[str]:
        """Job ids of the chain's links, from their records on the cluster, oldest first."""
        from tasks.slurm.render import render_sbatch
        from tasks.slurm.spec import JobSpec

        script = render_sbatch(JobSpec.from_dict(self.job).validate(), profile)
        link, chain = 0, []
        while link < int(self.max_jobs):
            self._link = link
            record = hook.read_record(self._paths(profile, context, script)["record"])
            if not record:
                break
            chain.append(record["job_id"])
            link += 1
        return chain

    def _recorded_job_ids(self, context, profile, hook) -> list[str]:
        """The newest link of the chain is the job a timed-out wait gives up on."""
        if not self.job:
            return []
        return self._recorded_chain(context, profile, hook)[-1:]

    def _submit_link(self, context, earlier: list[str]) -> dict[str, Any]:
        if self._link >= int(self.max_jobs):
            raise AirflowFailException(f"training is not done after {self.max_jobs} job(s) ({', '.join(earlier)}); "
                                       "raise max_sft_jobs or the time limit")
        self.log.info("Submitting training job %d of at most %s", self._link + 1, self.max_jobs)
        return self._submit_and_defer(context, earlier)

    def _submit_and_defer(self, context, earlier: list[str]) -> dict[str, Any]:
        profile = self._profile()
        job_id, _ = self._submit_or_reuse(context, profile, self._hook(profile),
                                          f"try{context['ti'].try_number}.c{self._link}")
        return self._defer_on(context, profile, job_id, earlier, log_offset=0)

    def _defer_on(self, context, profile, job_id: str, earlier: list[str], log_offset: int) -> dict[str, Any]:
        from operators.slurm.trigger import SlurmJobTrigger

        log_path = self._log_of(profile, job_id)
        self._job_id = job_id
        context["ti"].xcom_push(key="slurm_job_id", value=job_id)
        context["ti"].xcom_push(key="slurm_log", value=log_path)
        hook = self._hook(profile)
        self.defer(
            trigger=SlurmJobTrigger(ssh_conn_id=hook.ssh_conn_id, job_id=job_id,
                                    poll_interval=self.poll_interval or profile.poll_interval_s,
                                    accounting=profile.accounting, log_path=log_path, log_offset=log_offset,
                                    stream_logs=self.stream_logs,
                                    wake_after_s=float(self.curves_every_s) if self.curves else None,
                                    deferred_at=time.time()),
            method_name="execute_complete",
            kwargs={"link": self._link, "earlier": earlier},
            timeout=self.wait_timeout,
        )

    def _log_of(self, profile, job_id: str) -> str:
        from tasks.slurm.render import default_log_path
        from tasks.slurm.spec import JobSpec

        spec = JobSpec.from_dict(self.job).validate()
        return (spec.output or default_log_path(spec, spec.workdir or profile.workdir)).replace("%j", job_id)

    def execute_complete(self, context, event: dict[str, Any], link: int = 0,
                         earlier: list[str] | None = None) -> dict[str, Any]:
        self._link = link
        earlier = list(earlier or [])
        ev = JobEvent.from_dict(event)
        self._sync_curves()
        if ev.status is EventStatus.WAKE:
            return self._defer_on(context, self._profile(), ev.job_id, earlier, ev.log_offset)
        if ev.status in (EventStatus.ERROR, EventStatus.LOST):
            return super().execute_complete(context, event)
        return self._after_job(context, ev.job_id, list(ev.states), earlier)

    # After each job of the chain -------------------------------------------------------------
    def _after_job(self, context, job_id: str, states: list[JobState], earlier: list[str],
                   retrying: bool = False) -> dict[str, Any]:
        profile = self._profile()
        hook = self._hook(profile)
        outcome = Outcome.SUCCESS if all(s.outcome is Outcome.SUCCESS for s in states) else worst(
            s.outcome for s in states if s.outcome is not Outcome.SUCCESS)
        step, max_steps, detail = self._read_progress(hook)
        chain = [*earlier, job_id]
        self.log.info("Training job %s ended %s; progress %s/%s steps (%s)", job_id, outcome.value, step, max_steps,
                      detail)
        if max_steps and step >= max_steps:
            self._sync_curves()
            states_all = self._chain_states(hook, chain)
            gpu_hours = round(sum(s.gpu_hours or 0.0 for s in states_all), 4)
            elapsed = sum(s.elapsed_s or 0 for s in states_all)
            return {"job_id": job_id, "job_ids": chain, "jobs": len(chain), "steps": step, "max_steps": max_steps,
                    "gpu_hours": gpu_hours, "elapsed_s": elapsed,
                    "states": {s.job_id: s.state for s in states_all}}
        if outcome not in CONTINUE_AFTER:
            if retrying and outcome.value in self.retry_on:
                self.log.info("Training job %s ended %s in an earlier try; this try submits the chain's next "
                              "link, which resumes from the newest checkpoint", job_id, outcome.value)
                self._link = len(chain)
                return self._submit_link(context, chain)
            # A real failure: judged (and retried) like any Slurm job, log tail included.
            return self._judge(hook, job_id, states, self._log_of(profile, job_id))
        if outcome is Outcome.SUCCESS and not max_steps:
            # The job exited 0 yet left no progress to read: the trainer never started, or wrote
            # its status elsewhere. The same script would do the same again, so submitting it
            # up to max_jobs times only burns allocations; fail now and say where we looked.
            raise AirflowFailException(
                f"training job {job_id} ended COMPLETED but left no progress to read ({detail}); not "
                f"submitting a continuation. Check the job's log and where the trainer writes its status.")
        self._link = len(chain)
        return self._submit_link(context, chain)

    def _chain_states(self, hook, chain: list[str]) -> list[JobState]:
        try:
            return hook.states(chain)
        except Exception as exc:  # accounting is a nicety here; the training is done
            self.log.warning("Could not read the chain's accounting: %s", exc)
            return []

    def _read_progress(self, hook) -> tuple[int, int, str]:
        """(steps done, steps to do, how it was read) from the cluster's files."""
        from tasks.sft.progress import nemo_progress, steps_per_epoch

        p = self.progress
        if p.get("kind") == "files":  # done when the trainer's final outputs exist (OpenRLHF)
            complete = hook.files_complete(list(p["files"]))
            done = bool(complete) and all(complete.values())
            return int(done), 1, "final outputs " + ("present" if done else "missing")
        if p.get("kind") == "local":
            text = hook.read_text(p["status"])
            if not text:
                return 0, 0, f"{p['status']} not written yet"
            status = json.loads(text)
            return int(status["global_step"]), int(status["max_steps"]), f"stopped by {status.get('stopped_by')}"
        _, out, _ = hook.run(f"ls -1 {shlex.quote(p['checkpoints'])} 2>/dev/null; "
                             f"wc -l < {shlex.quote(p['train_data'])}", check=False)
        lines = out.strip().splitlines()
        count = int(lines[-1]) if lines and lines[-1].strip().isdigit() else 0
        step = nemo_progress(lines[:-1])
        max_steps = int(p.get("max_steps") or 0) or int(p["epochs"]) * steps_per_epoch(count, int(p["global_batch_size"]))
        return step, max_steps, f"{count} training lines"

    def _sync_curves(self) -> None:
        if not self.curves:
            return
        from operators.tracking import curves, mlflow_runs

        try:
            mlc = mlflow_runs.client(self.curves.get("mlflow_conn_id"))
            curves.sync(self._hook(self._profile()), self.curves["tensorboard"], mlc, self.curves["mlflow_run_id"],
                        log=self.log)
        except Exception as exc:  # curves are for people watching; they never fail the training
            self.log.warning("Could not copy training curves to MLflow: %s", exc)
