"""What a DAG run would submit, before it submits anything: the plan as data, its checks, its files.

Every DAG that runs Slurm jobs has a ``build_plan`` of its own (:mod:`tasks.openmath.evaluation`,
:mod:`tasks.openmath.sft`, :mod:`tasks.openmath.datagen`, :mod:`tasks.apps.plan`); each returns,
beside the keys its DAG wires, ``planned`` (every job in submission order, with the Airflow task
that submits it, what it reads and what it writes) and ``declared_inputs`` (the cluster paths the
form or the profile vouch for). :func:`plan_dag` calls that same ``build_plan`` -- the DAG's
``plan`` task calls :func:`plan_dag` too, so the plan a user reads is the plan that runs -- and
:func:`check_plan` runs every plan-time check over it. :func:`write_plan` renders one sbatch file
per job and ``plan.json``; ``skillflow plan`` (:mod:`operators.plan_cli`) is its command line.

A job whose task is mapped (sampling chunks, labeling arrays, greedy decoding per benchmark)
appears once per map entry, with ``key`` telling them apart. Jobs that a run submits only when
their outputs are missing are all listed: the plan is the run from scratch.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tasks.forms import PlanError
from tasks.profiles import ClusterProfile, ProfileError
from tasks.steps.engines import NativeServer, NemoSkillsServer
from tasks.slurm.plan_checks import missing_image_message, profile_limit_errors

PLAN_FORMAT = 1

__all__ = ["PlanError", "PlanCheckError", "Plan", "PlannedJob", "plan_dag", "output_dir", "spec_dict",
           "planned_entry", "servers", "write_plan"]


# ----------------------------------------------------------------------------- plan basics

def safe_run_id(run_id: str) -> str:
    """A DAG run id as a folder name (``manual__2026-01-01T00:00:00+00:00`` has ``:`` and ``+``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def output_dir(profile: ClusterProfile, dag_id: str, run_id: str) -> str:
    """The run's folder on the cluster: ``<workdir>/<dag_id>/<run id made safe>``."""
    return f"{profile.workdir.rstrip('/')}/{dag_id}/{safe_run_id(run_id)}"


def spec_dict(spec) -> dict[str, Any]:
    """A JobSpec as the JSON-able dict ``SlurmJobOperator`` takes; empty optional fields left out."""
    data = asdict(spec)
    return {k: v for k, v in data.items() if v not in (None, (), [], {}) or k in ("command", "name")}


def planned_entry(task_id: str, spec, inputs: list[str], outputs: list[str],
                  dirs: list[str] | None = None) -> dict[str, Any]:
    """One ``planned`` entry of a ``build_plan`` result (see :class:`PlannedJob`)."""
    return {"task_id": task_id, "job": spec_dict(spec), "inputs": inputs, "outputs": outputs, "dirs": dirs or []}


def servers(engine: str, server: str, num_gpus: int) -> tuple[NemoSkillsServer, NativeServer]:
    """The model servers of the ``engine``/``server``/``num_gpus`` params (the eval and datagen forms):
    ``auto`` is TensorRT-LLM for nemo_skills and the profile's choice for native."""
    if engine == "nemo_skills":
        server_type = "tensorrt_llm" if server in ("auto", "tensorrt_llm") else server
        if server_type not in ("tensorrt_llm", "vllm", "nemo"):
            raise PlanError(f"param 'server': {server!r} cannot serve the nemo_skills engine "
                            "(tensorrt_llm, vllm or nemo)")
        return NemoSkillsServer(server_type=server_type, num_gpus=num_gpus), NativeServer()
    kind = None if server == "auto" else server
    if kind not in (None, "vllm", "llama_cpp"):
        raise PlanError(f"param 'server': {server!r} cannot serve the native engine (vllm or llama_cpp)")
    return NemoSkillsServer(), NativeServer(kind=kind, num_gpus=num_gpus)


class PlanCheckError(ValueError):
    """The plan cannot run as planned; the message lists every problem, each naming job and path."""


@dataclass(frozen=True)
class PlannedJob:
    """One Slurm job of the plan: the Airflow task that submits it and the job it submits."""

    task_id: str
    job: dict[str, Any]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    # Tells the entries of a mapped task apart (benchmark, seed chunk, labeling configuration).
    key: str | None = None

    @property
    def label(self) -> str:
        """``task_id`` or ``task_id[key]``: how messages name the job."""
        return self.task_id if self.key is None else f"{self.task_id}[{self.key}]"

    @property
    def file_name(self) -> str:
        """The sbatch file's name: the task id, plus the map key for mapped tasks."""
        stem = self.task_id if self.key is None else f"{self.task_id}.{self.key}"
        return re.sub(r"[^A-Za-z0-9._+-]+", "-", stem) + ".sbatch"

    @property
    def images(self) -> tuple[str, ...]:
        """The container images the job starts: the main step's, then each sidecar's."""
        found = [self.job.get("image")] + [s.get("image") for s in self.job.get("sidecars") or ()]
        return tuple(i for i in found if i)


@dataclass
class Plan:
    """A DAG run's jobs on one profile, plus what the DAG's own tasks need (``details``)."""

    dag_id: str
    profile: ClusterProfile
    params: dict[str, Any]
    jobs: list[PlannedJob]
    # Cluster path -> where it comes from ("param 'model'", "profile models.smollm2"...).
    declared_inputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _planned_jobs(details: dict[str, Any]) -> list[PlannedJob]:
    out = []
    for entry in details.get("planned") or ():
        if not entry.get("job"):
            continue
        out.append(PlannedJob(task_id=entry["task_id"], job=entry["job"], inputs=tuple(entry.get("inputs") or ()),
                              outputs=tuple(entry.get("outputs") or ()), dirs=tuple(entry.get("dirs") or ()),
                              key=entry.get("key")))
    return out


def from_details(dag_id: str, profile: ClusterProfile, params: dict[str, Any], details: dict[str, Any]) -> Plan:
    """A :class:`Plan` over the dict a ``build_plan`` returned; ``planned`` and ``declared_inputs``
    are taken out of it, so what reaches XCom is the DAG's own plan without the duplicate."""
    details = dict(details)
    jobs = _planned_jobs({"planned": details.pop("planned", [])})
    declared = {path: f"param '{param}'" for param, path in (details.pop("declared_inputs", {}) or {}).items()
                if path}
    return Plan(dag_id=dag_id, profile=profile, params=dict(params), jobs=jobs, declared_inputs=declared,
                details=details)


# ----------------------------------------------------------------------------- the DAGs' planners

def _run_dir(profile: ClusterProfile, dag_id: str, run_id: str) -> str:
    return output_dir(profile, dag_id, run_id)


def _eval(params: dict[str, Any], profile: ClusterProfile, run_id: str, **_: Any) -> dict[str, Any]:
    from tasks.openmath.evaluation import EvalRequest, build_plan

    return build_plan(EvalRequest.from_params(params), profile, _run_dir(profile, "openmath_eval", run_id))


def _datagen(params: dict[str, Any], profile: ClusterProfile, run_id: str, **_: Any) -> dict[str, Any]:
    from tasks.openmath.datagen import DatagenRequest, build_plan

    return build_plan(DatagenRequest.from_params(params), profile, _run_dir(profile, "openmath_datagen", run_id))


def _apps(params: dict[str, Any], profile: ClusterProfile, run_id: str, s3_prefix: str | None = None,
          **_: Any) -> dict[str, Any]:
    from tasks.apps.plan import AppsSftRequest, build_plan

    prefix = s3_prefix or f"s3://{profile.bucket}/apps_sft/{safe_run_id(run_id)}"
    return build_plan(AppsSftRequest.from_params(params), profile, _run_dir(profile, "apps_sft", run_id),
                      s3_prefix=prefix)


def _sft(params: dict[str, Any], profile: ClusterProfile, run_id: str, data_path: str | None = "",
         s3_prefix: str | None = None, **_: Any) -> dict[str, Any]:
    from tasks.openmath.sft import SftRequest, build_plan, planned_data_path

    exp = _run_dir(profile, "openmath_sft", run_id)
    if data_path == "":  # not resolved by the DAG (the CLI): where the form's data would be
        data_path = planned_data_path(params.get("data", "asset"), f"{exp}/data")
    prefix = s3_prefix or f"s3://{profile.bucket}/openmath_sft/{run_id}"
    return build_plan(SftRequest.from_params(params), profile, exp, data_path, s3_prefix=prefix)


PLANNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "openmath_eval": _eval,
    "openmath_sft": _sft,
    "openmath_datagen": _datagen,
    "apps_sft": _apps,
}


def plan_dag(dag_id: str, params: dict[str, Any], profile: ClusterProfile, run_id: str = "plan",
             check: bool = True, **context: Any) -> Plan:
    """The plan of one DAG run: ``params`` is the full form (the DAG's defaults filled in).

    ``context`` carries what the DAG resolved before planning (``data_path``, ``s3_prefix``).
    Raises the DAG's own ``PlanError`` for a bad param and :class:`PlanCheckError` when a
    plan-time check fails (unless ``check`` is False).
    """
    if dag_id not in PLANNERS:
        raise ValueError(f"DAG {dag_id!r} submits no planned Slurm jobs (planned DAGs: {', '.join(sorted(PLANNERS))})")
    try:
        details = PLANNERS[dag_id](params, profile, run_id, **context)
    except ProfileError as exc:  # a recipe asked for an image key the profile lacks
        message = missing_image_message(exc, profile, params, dag_id)
        if message is None:
            raise
        raise PlanCheckError(message) from None
    plan = from_details(dag_id, profile, params, details)
    if check:
        check_plan(plan)
    return plan


# ---------------------------------------------------------------------------------- checks

def _covers(made: str, wanted: str) -> bool:
    """Whether writing ``made`` provides ``wanted``: the same path, a file inside a written
    folder, or a folder that a written file lives in."""
    made, wanted = made.rstrip("/"), wanted.rstrip("/")
    return made == wanted or wanted.startswith(made + "/") or made.startswith(wanted + "/")


def data_flow_errors(plan: Plan) -> list[str]:
    """Every input of every job must be written by an earlier job or be a declared input."""
    errors = []
    made: list[str] = []
    declared = list(plan.declared_inputs)
    for job in plan.jobs:
        for path in job.inputs:
            if any(_covers(m, path) for m in made) or any(_covers(d, path) for d in declared):
                continue
            later = [j.label for j in plan.jobs if j is not job and any(_covers(o, path) for o in j.outputs)]
            why = f"it is written only later, by {', '.join(later)}" if later else "nothing writes it"
            errors.append(f"job {job.label} reads {path}, but {why} (and no param or profile declares it)")
        made += job.outputs
    return errors


# Plan-time checks: each takes the plan and returns messages (empty when it passes). Other checks
# (profile limits, images) register here; check_plan reports all failures at once.
PLAN_CHECKS: list[Callable[[Plan], list[str]]] = [data_flow_errors, profile_limit_errors]


def plan_errors(plan: Plan) -> list[str]:
    return [message for check in PLAN_CHECKS for message in check(plan)]


def check_plan(plan: Plan) -> None:
    errors = plan_errors(plan)
    if errors:
        raise PlanCheckError(f"plan of {plan.dag_id} on profile {plan.profile.name!r} fails {len(errors)} check(s):\n- "
                             + "\n- ".join(errors))


# ---------------------------------------------------------------------------------- output

def job_summary(job: PlannedJob, profile: ClusterProfile) -> dict[str, Any]:
    spec = job.job
    return {
        "task_id": job.task_id,
        "key": job.key,
        "file": job.file_name,
        "job_name": spec.get("name"),
        "images": list(job.images),
        "time": spec.get("time") or profile.default_time,
        "partition": spec.get("partition") or profile.partition,
        "nodes": spec.get("nodes", 1),
        "ntasks_per_node": spec.get("ntasks_per_node", 1),
        "gpus_per_node": spec.get("gpus_per_node", 0),
        "array": spec.get("array"),
        "inputs": list(job.inputs),
        "outputs": list(job.outputs),
        "dirs": list(job.dirs),
        "spec": spec,
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """``plan.json``: the form, the profile, the declared inputs and every job."""
    return {
        "format": PLAN_FORMAT,
        "dag_id": plan.dag_id,
        "profile": plan.profile.name,
        "params": plan.params,
        "declared_inputs": [{"path": p, "from": why} for p, why in plan.declared_inputs.items()],
        "jobs": [job_summary(j, plan.profile) for j in plan.jobs],
        "errors": plan_errors(plan),
    }


def render_job(job: PlannedJob, profile: ClusterProfile) -> str:
    from tasks.slurm.render import render_sbatch
    from tasks.slurm.spec import JobSpec

    return render_sbatch(JobSpec.from_dict(job.job), profile)


def write_plan(plan: Plan, out_dir: str | Path) -> list[Path]:
    """One ``<task>.sbatch`` per job and ``plan.json`` into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    names = [j.file_name for j in plan.jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # pragma: no cover - a planner bug, not a user error
        raise ValueError(f"two jobs of the plan would share the file name(s) {duplicates}")
    for job in plan.jobs:
        path = out / job.file_name
        path.write_text(render_job(job, plan.profile))
        written.append(path)
    index = out / "plan.json"
    index.write_text(json.dumps(plan_json(plan), indent=2, sort_keys=False, default=str) + "\n")
    written.append(index)
    return written
