"""A deferrable operator that runs one Slurm job (or job array) over SSH.

Life of a task try:
1. Render the job spec for the cluster profile into an sbatch script.
2. Look for the job record of this task instance on the cluster. If a job from an earlier try
   (or a worker that died) is still queued or running, reconnect to it; if it already finished
   successfully, take its result. Only otherwise submit, and write the record in the same
   remote command as ``sbatch`` so the id is never known only in memory.
3. Defer to :class:`SlurmJobTrigger`; the triggerer streams the log into the task log.
4. Judge the end: success, or a :class:`SlurmJobError` subclass per outcome, with the exit code,
   the reason and the last lines of the log. Expected output files can overrule a failed state
   (NeMo-Skills images end with an MPI error even when the work is done).
"""
from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from operators.links import SlurmJobLogLink
from operators.slurm.errors import BY_OUTCOME, SlurmJobError
from operators.slurm.hook import SlurmHook
from tasks.slurm.states import ACTIVE, DEFAULT_RETRY_ON, EventStatus, JobEvent, JobState, Outcome, worst
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str) -> str:
    return _SAFE.sub("_", str(text))[:120]


class SlurmJobOperator(BaseOperator):
    """Submit a :class:`tasks.slurm.spec.JobSpec` (given as a dict, templated) and wait for it.

    :param job: the job spec as a dict of :class:`JobSpec` fields; templated.
    :param profile: cluster profile name or path; default ``$SKILLFLOW_PROFILE`` or ``local``.
    :param expected_outputs: remote files that must exist and be non-empty for success; when all
        exist, a FAILED state is reported as a warning rather than a failure.
    :param retry_on: outcomes after which Airflow may retry; any other outcome fails the task
        at once (e.g. CANCELLED by a person).
    :param deferrable: wait in the triggerer (default) or poll from the worker.
    :param image_key: the profile's image (a ``container.images`` key) for a job that names none.
    """

    template_fields: Sequence[str] = ("job", "expected_outputs", "profile", "create_dirs")
    template_fields_renderers = {"job": "json"}
    operator_extra_links = (SlurmJobLogLink(),)
    ui_color = "#c9e4ff"

    def __init__(self, *, job: dict[str, Any], profile: str | None = None, ssh_conn_id: str | None = None,
                 expected_outputs: Sequence[str] = (), retry_on: Sequence[str] = DEFAULT_RETRY_ON,
                 poll_interval: float | None = None, deferrable: bool = True, stream_logs: bool = True,
                 wait_timeout: timedelta | None = None, create_dirs: Sequence[str] = (),
                 image_key: str | None = None, **kwargs):
        kwargs.setdefault("retries", 1)
        kwargs.setdefault("retry_delay", timedelta(seconds=5))
        super().__init__(**kwargs)
        self.job = job
        self.profile = profile
        self.ssh_conn_id = ssh_conn_id
        self.expected_outputs = expected_outputs if not isinstance(expected_outputs, (list, tuple)) else list(expected_outputs)
        unknown = set(retry_on) - {o.value for o in Outcome}
        if unknown:
            raise ValueError(f"retry_on has unknown outcome(s) {sorted(unknown)}; valid: {[o.value for o in Outcome]}")
        self.retry_on = tuple(retry_on)
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.stream_logs = stream_logs
        self.wait_timeout = wait_timeout
        # Folders that must exist before sbatch (container runtimes refuse to mount a missing one).
        self.create_dirs = create_dirs
        # A job written in a DAG file names its image by the profile's key (``container.images``),
        # since the profile is known only when the task runs.
        self.image_key = image_key
        self._job_id: str | None = None
        self._loaded_profile = None
        self._slurm_hook: SlurmHook | None = None

    # Set-up -------------------------------------------------------------------------------
    def _profile(self):
        """The cluster profile, read once per operator instance (a try, or its resumption)."""
        if self._loaded_profile is None:
            from tasks.profiles import load_profile

            self._loaded_profile = load_profile(self.profile)
        return self._loaded_profile

    def _spec(self, profile):
        """The job as submitted: ``job``, in the profile's ``image_key`` image unless it names one."""
        import dataclasses

        from tasks.slurm.spec import JobSpec

        spec = JobSpec.from_dict(self.job).validate()
        if self.image_key and not spec.image:
            spec = dataclasses.replace(spec, image=profile.image(self.image_key))
        return spec

    def _hook(self, profile) -> SlurmHook:
        """The profile's Slurm hook, made once per operator instance (its SSH connection is reused)."""
        conn_id = self.ssh_conn_id or profile.ssh_conn_id
        if self._slurm_hook is None or self._slurm_hook.ssh_conn_id != conn_id:
            self._slurm_hook = SlurmHook(conn_id, accounting=profile.accounting)
        return self._slurm_hook

    @staticmethod
    def _check_form(context) -> None:
        """A DAG with a declared form (tasks/forms.py) refuses a run whose conf names a param the
        form lacks before a job is submitted: a misspelt param would otherwise run with the
        default (``skillflow_demo`` has no Python step before its job)."""
        from tasks.forms import FORMS

        dag = context.get("dag")
        if dag is not None and dag.dag_id in FORMS and context.get("params") is not None:
            from operators.dag_steps import check_form

            check_form(dag.dag_id, dict(context["params"]))

    def _identity(self, context) -> str:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        suffix = f".{map_index}" if map_index is not None and map_index >= 0 else ""
        return f"{_safe(ti.dag_id)}/{_safe(ti.run_id)}/{_safe(ti.task_id)}{suffix}"

    def _paths(self, profile, context, script: str) -> dict[str, str]:
        """Where this task instance's job record and scripts live on the cluster.

        The record name carries a digest of the rendered script: a retry of the same job finds
        it, while a mapped task whose index now points at a different job (a re-expansion after
        some chunks finished) does not mistake the old job for its own.
        """
        import hashlib

        base = f"{profile.workdir.rstrip('/')}/.skillflow"
        ident = self._identity(context)
        digest = hashlib.sha256(script.encode()).hexdigest()[:12]
        return {"record": f"{base}/jobs/{ident}.{digest}.jobid", "script_dir": f"{base}/scripts/{ident}"}

    # Execution ----------------------------------------------------------------------------
    def execute(self, context) -> dict[str, Any]:
        if not self.job:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("no Slurm job to run for this task in this DAG run")
        self._check_form(context)
        profile = self._profile()
        hook = self._hook(profile)
        job_id, resolved_log = self._submit_or_reuse(context, profile, hook, f"try{context['ti'].try_number}")

        if not self.deferrable:
            return self._wait_inline(hook, profile, job_id, resolved_log)
        from operators.slurm.trigger import SlurmJobTrigger

        self.defer(
            trigger=SlurmJobTrigger(ssh_conn_id=hook.ssh_conn_id, job_id=job_id,
                                    poll_interval=self.poll_interval or profile.poll_interval_s,
                                    accounting=profile.accounting,
                                    log_path=resolved_log, stream_logs=self.stream_logs, deferred_at=time.time()),
            method_name="execute_complete",
            timeout=self.wait_timeout,
        )

    def _submit_or_reuse(self, context, profile, hook: SlurmHook, script_name: str) -> tuple[str, str]:
        """Render, then reconnect to this task's job from its record or submit; (job id, log path).

        The id and the log are pushed as XComs for the UI's links."""
        from tasks.slurm.render import default_log_path, render_sbatch

        spec = self._spec(profile)
        log_path = spec.output or default_log_path(spec, spec.workdir or profile.workdir)
        script = render_sbatch(spec, profile)
        paths = self._paths(profile, context, script)
        job_id = self._reusable_job(hook, paths["record"])
        if job_id is None:
            script_path = f"{paths['script_dir']}/{script_name}.sbatch"
            if self.create_dirs:
                import shlex

                hook.run("mkdir -p " + " ".join(shlex.quote(d) for d in self.create_dirs))
            job_id = hook.submit_script(script, script_path, log_path.rsplit("/", 1)[0], paths["record"])
            self.log.info("Submitted Slurm job %s (%s); script %s", job_id, spec.name, script_path)
        self._job_id = job_id
        resolved_log = log_path.replace("%j", job_id).replace("%A", job_id)
        context["ti"].xcom_push(key="slurm_job_id", value=job_id)
        context["ti"].xcom_push(key="slurm_log", value=resolved_log)
        return job_id, resolved_log

    def _reusable_job(self, hook: SlurmHook, record_path: str) -> str | None:
        """The job of an earlier try that is still worth waiting for, if any."""
        record = hook.read_record(record_path)
        if not record:
            return None
        job_id = record["job_id"]
        states = hook.states([job_id])
        if not states:
            return None
        if any(s.state in ACTIVE for s in states):
            self.log.info("Reconnecting to Slurm job %s from an earlier try (%s)", job_id,
                          ",".join(sorted({s.state for s in states})))
            return job_id
        if all(s.outcome is Outcome.SUCCESS for s in states):
            self.log.info("Slurm job %s of an earlier try already completed; reusing its result", job_id)
            return job_id
        return None

    def _wait_inline(self, hook: SlurmHook, profile, job_id: str, log_path: str | None) -> dict[str, Any]:
        from operators.slurm.poller import MISSING_POLLS_BEFORE_LOST

        interval = self.poll_interval or profile.poll_interval_s
        give_up_at = time.monotonic() + self.wait_timeout.total_seconds() if self.wait_timeout else None
        missing = 0
        while True:
            states = hook.states([job_id])
            if states and all(s.terminal for s in states):
                return self._judge(hook, job_id, states, log_path)
            missing = missing + 1 if not states else 0
            if missing >= MISSING_POLLS_BEFORE_LOST:
                return self._judge(hook, job_id, [], log_path, lost=True)
            if give_up_at is not None and time.monotonic() >= give_up_at:
                self._give_up(hook, [job_id], f"wait_timeout ({self.wait_timeout}) passed")
                raise SlurmJobError(f"Slurm job {job_id} did not end within wait_timeout {self.wait_timeout}; "
                                    "cancelled it", job_id=job_id, outcome=Outcome.TIMEOUT)
            time.sleep(interval)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context):
        """Airflow resumes a deferral that passed ``wait_timeout`` with ``__fail__`` (the triggerer
        cancels the trigger without calling its ``on_kill``): the task gives up on the job here,
        and a task that gives up on a job cancels it, or the job runs on for nobody."""
        from airflow.sdk.exceptions import TaskDeferralTimeout

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            profile = self._profile()
            hook = self._hook(profile)
            try:
                job_ids = self._recorded_job_ids(context, profile, hook)
            except Exception as exc:  # the timeout is the error to report; say why nothing was cancelled
                self.log.error("Could not read this task's job record to cancel its job: %s", exc)
                raise
            self._give_up(hook, job_ids, f"the deferral passed wait_timeout ({self.wait_timeout})")
            raise

    def _recorded_job_ids(self, context, profile, hook: SlurmHook) -> list[str]:
        """The job this task instance's record names (the operator's memory does not survive a
        deferral; the record on the cluster does)."""
        from tasks.slurm.render import render_sbatch

        if not self.job:
            return []
        script = render_sbatch(self._spec(profile), profile)
        record = hook.read_record(self._paths(profile, context, script)["record"])
        return [record["job_id"]] if record else []

    def _give_up(self, hook: SlurmHook, job_ids: list[str], why: str) -> None:
        if not job_ids:
            self.log.warning("Giving up (%s), but no job of this task is on record", why)
            return
        try:
            hook.cancel(job_ids)
            self.log.warning("Giving up on Slurm job %s (%s): cancelled it", ",".join(job_ids), why)
        except Exception as exc:  # the give-up's own error is the one to raise
            self.log.error("Giving up on Slurm job %s (%s), but could not cancel it: %s", ",".join(job_ids),
                           why, exc)

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        ev = JobEvent.from_dict(event)
        profile = self._profile()
        hook = self._hook(profile)
        self._job_id = ev.job_id
        if ev.status is EventStatus.ERROR:
            raise BY_OUTCOME[Outcome.LOST](f"Lost track of Slurm job {ev.job_id}: {ev.message}", job_id=ev.job_id)
        return self._judge(hook, ev.job_id, list(ev.states), ev.log_path, lost=ev.status is EventStatus.LOST)

    # Judgement ----------------------------------------------------------------------------
    def _judge(self, hook: SlurmHook, job_id: str, states: list[JobState], log_path: str | None,
               lost: bool = False) -> dict[str, Any]:
        failed = [s for s in states if s.outcome is not Outcome.SUCCESS]
        elapsed = sum(s.elapsed_s or 0 for s in states)
        gpu_hours = sum(s.gpu_hours or 0.0 for s in states)
        result = {"job_id": job_id, "states": {s.key: s.state for s in states}, "elapsed_s": elapsed,
                  "gpu_hours": round(gpu_hours, 4), "log": log_path}
        if not failed and not lost:
            self.log.info("Slurm job %s succeeded (%d element(s), %ss, %.3f GPU-hours)", job_id, len(states),
                          elapsed, gpu_hours)
            return result
        if self.expected_outputs:
            complete = hook.files_complete(self.expected_outputs)
            if complete and all(complete.values()):
                self.log.warning("Slurm job %s ended %s, but every expected output exists; counting it as a "
                                 "success", job_id, ",".join(sorted({s.state for s in failed})) or "LOST")
                return result
            missing = [p for p, ok in complete.items() if not ok]
            self.log.error("Expected outputs missing: %s", ", ".join(missing))
        outcome = Outcome.LOST if lost or not failed else worst(s.outcome for s in failed)
        message = self._describe(hook, job_id, failed, log_path, outcome)
        error_cls = BY_OUTCOME[outcome]
        error = error_cls(message, job_id=job_id, outcome=outcome,
                          failed_indices=[s.array_task_id for s in failed if s.array_task_id])
        if outcome.value not in self.retry_on:
            raise AirflowFailException(f"[{outcome.value}, not retried] {message}") from error
        raise error

    def _describe(self, hook: SlurmHook, job_id: str, failed: list[JobState], log_path: str | None,
                  outcome: Outcome) -> str:
        if not failed:
            return f"Slurm job {job_id} is in neither squeue nor accounting (outcome LOST)"
        if any(s.array_task_id for s in failed):
            idx = sorted((s.array_task_id for s in failed if s.array_task_id), key=lambda x: int(x))
            detail = "; ".join(f"[{s.array_task_id}] {s.state} exit {s.exit_code}" for s in failed[:20])
            head = f"Slurm array {job_id}: {len(failed)} element(s) failed, indices {','.join(idx)} ({detail})"
            first = next(s for s in failed if s.array_task_id)
            tail_path = log_path.replace("%a", first.array_task_id) if log_path else None
        else:
            s = failed[0]
            sig = f", signal {s.signal}" if s.signal else ""
            head = (f"Slurm job {job_id} ended {s.state} ({outcome.value}) with exit code {s.exit_code}{sig}, "
                    f"reason {s.reason or 'n/a'}")
            tail_path = log_path
        if tail_path:
            head += f"\nlog: {tail_path}\n--- last lines of the log ---\n{hook.last_lines(tail_path, 30)}"
        return head

    def on_kill(self) -> None:
        """Cancel the job when the task is killed while it runs on the worker."""
        if self._job_id:
            try:
                profile = self._profile()
                self._hook(profile).cancel([self._job_id])
                self.log.info("Cancelled Slurm job %s because the task was killed", self._job_id)
            except Exception as exc:  # on_kill must not raise
                self.log.error("Could not cancel Slurm job %s: %s", self._job_id, exc)
