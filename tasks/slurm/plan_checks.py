"""Plan-time checks of a DAG run's jobs against the cluster profile, before any job is submitted.

A job that asks for more walltime than the partition allows, or more GPUs per node than a node
has, is refused by Slurm only after everything before it has run (or, worse, pends forever). An
image key the profile lacks fails deep inside a recipe. These checks turn each into one error at
the ``plan`` step that names the form's param to change and the limit it hit, and they report
every violation at once.

They read plain data: job specs as dicts of :class:`~tasks.slurm.spec.JobSpec` fields, found
wherever they sit in a plan (:func:`check_plan`), so they need no knowledge of a plan's layout.
:func:`profile_limit_errors` and :func:`missing_image_message` are the two entry points for
``skillflow plan``'s ``plan_dag`` (``tasks/plan.py``), which the DAGs' ``plan`` tasks call: the
first is a plan-time check (a plan in, messages out), the second explains the ``ProfileError`` a
recipe raises when it asks the profile for an image key it lacks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from tasks.profiles import ClusterProfile, ProfileError
from tasks.slurm.durations import format_seconds, slurm_time_seconds
from tasks.slurm.spec import JobSpec

_SPEC_FIELDS = frozenset(f.name for f in fields(JobSpec))
_MISSING_IMAGE = re.compile(r"container\.images has no '([^']+)'|container\.images\.([A-Za-z0-9_-]+) is empty")
T = TypeVar("T")


@dataclass(frozen=True)
class FormParams:
    """Which params of a DAG's form decide the resources the checks look at.

    ``time``: the param that sets the walltime; ``gpus``: the params that set GPUs per node (a
    DAG may have several, e.g. training and sampling); ``images``: the params that choose the
    engine or server and with it the image.
    """

    time: str | None = "time_limit"
    gpus: tuple[str, ...] = ()
    images: tuple[str, ...] = ()


# The params of each DAG's form (dags/*.py) that set walltime, GPUs and images.
FORMS: dict[str, FormParams] = {
    "openmath_eval": FormParams(gpus=("num_gpus",), images=("engine", "server")),
    "openmath_datagen": FormParams(gpus=("num_gpus",), images=("engine", "server")),
    "openmath_sft": FormParams(gpus=("gpus_per_node",), images=("base_model",)),
    "apps_sft": FormParams(gpus=("gpus_per_node", "sampling_gpus"), images=("train",)),
}


@dataclass(frozen=True)
class Violation:
    """One limit broken by one or more jobs; ``problem`` is the same text for all of them."""

    jobs: tuple[str, ...]
    problem: str

    @property
    def message(self) -> str:
        names = ", ".join(f"'{j}'" for j in self.jobs[:5]) + (f" and {len(self.jobs) - 5} more"
                                                              if len(self.jobs) > 5 else "")
        if not self.jobs:
            return self.problem
        if len(self.jobs) > 1:
            return f"jobs {names} {self.problem}"
        verb, _, rest = self.problem.partition(" ")  # problems start with a plural verb: ask, run
        return f"job {names} {verb}s {rest}"


class PlanCheckError(ValueError):
    """One or more jobs of a plan exceed the profile; the message lists them all."""

    def __init__(self, violations: Sequence[Violation]):
        self.violations = list(violations)
        lines = [f"- {v.message}" for v in self.violations]
        super().__init__(f"the plan breaks {len(self.violations)} limit(s) of the cluster profile:\n" + "\n".join(lines))


def iter_job_specs(plan: Any, where: str = "plan") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every job spec dict in ``plan`` (nested dicts and lists), with where it sits."""
    if isinstance(plan, Mapping):
        keys = set(plan)
        if {"name", "command"} <= keys and keys <= _SPEC_FIELDS:
            yield where, dict(plan)
            return
        for key, value in plan.items():
            yield from iter_job_specs(value, f"{where}.{key}")
    elif isinstance(plan, (list, tuple)):
        for i, value in enumerate(plan):
            yield from iter_job_specs(value, f"{where}[{i}]")


def _param_hint(names: Sequence[str], params: Mapping[str, Any], value: Any) -> str:
    """The params to change: those whose form value is the offending one, else all candidates."""
    named = [n for n in names if n in params]
    matching = [n for n in named if params.get(n) == value]
    chosen = matching or named
    if not chosen:
        return ""
    return " or ".join(f"param '{n}' (now {params.get(n)!r})" for n in chosen)


def check_time(spec: Mapping[str, Any], profile: ClusterProfile, params: Mapping[str, Any],
               form: FormParams) -> Violation | None:
    """The job's ``--time`` (its own or the profile's default) within the partition's ``max_time``."""
    if not profile.max_time:
        return None
    partition = spec.get("partition") or profile.partition
    if partition != profile.partition:
        return None  # the profile states the limit of its own partition only
    asked = spec.get("time") or profile.default_time
    if not asked:
        return None
    limit = slurm_time_seconds(profile.max_time)
    seconds = slurm_time_seconds(asked)
    if limit is None or (seconds is not None and seconds <= limit):
        return None
    hint = _param_hint([form.time] if form.time else [], params, asked) or "the job's time request"
    origin = "" if spec.get("time") else " (the profile's slurm.default_time)"
    return Violation((spec["name"],), (
        f"ask --time={asked}{origin}, over the partition '{partition}' limit "
        f"max_time={format_seconds(limit)} (slurm.max_time of {profile.source}); set {hint} to at most "
        f"{format_seconds(limit)}, or raise slurm.max_time if the partition really allows more"))


def check_gpus(spec: Mapping[str, Any], profile: ClusterProfile, params: Mapping[str, Any],
               form: FormParams) -> Violation | None:
    """GPUs per node asked by the job within the profile's ``slurm.gpus_per_node``."""
    asked = int(spec.get("gpus_per_node") or 0)
    if asked <= profile.gpus_per_node:
        return None
    hint = _param_hint(form.gpus, params, asked) or "the job's GPUs per node"
    return Violation((spec["name"],), (
        f"ask {asked} GPUs per node, over the limit gpus_per_node={profile.gpus_per_node} "
        f"(slurm.gpus_per_node of {profile.source}); set {hint} to at most {profile.gpus_per_node}"))


def check_images(spec: Mapping[str, Any], profile: ClusterProfile) -> list[Violation]:
    """Each image a job or sidecar runs is one the profile names (no image from anywhere else)."""
    known = {v for v in profile.images.values() if v}
    out = []
    sidecars = [sc if isinstance(sc, Mapping) else vars(sc) for sc in spec.get("sidecars") or ()]
    images = [("", spec.get("image"))] + [(f" in sidecar '{sc.get('name')}'", sc.get("image")) for sc in sidecars]
    for what, image in images:
        if image and image not in known:
            out.append(Violation((spec["name"],), (
                f"run image {image!r}{what}, which no key of container.images in "
                f"{profile.source} names; add it to the profile under a key")))
    return out


def check_plan(plan: Any, profile: ClusterProfile, params: Mapping[str, Any] | None = None,
               form: FormParams = FormParams()) -> list[Violation]:
    """Every violation of every job in ``plan``; an empty list means the plan fits the profile."""
    params = params or {}
    by_problem: dict[str, list[str]] = {}
    for _, spec in iter_job_specs(plan):
        found = [check(spec, profile, params, form) for check in (check_time, check_gpus)]
        for violation in [v for v in found if v] + check_images(spec, profile):
            jobs = by_problem.setdefault(violation.problem, [])
            jobs += [j for j in violation.jobs if j not in jobs]
    return [Violation(tuple(jobs), problem) for problem, jobs in by_problem.items()]


def image_key_error(exc: ProfileError, profile: ClusterProfile, params: Mapping[str, Any],
                    form: FormParams) -> PlanCheckError | None:
    """A plan that needs an image key the profile lacks, as a plan error naming the params that
    chose it; None when ``exc`` is about something else."""
    m = _MISSING_IMAGE.search(str(exc))
    if not m:
        return None
    key = m.group(1) or m.group(2)
    chosen = ", ".join(f"param '{n}'={params[n]!r}" for n in form.images if n in params)
    known = ", ".join(sorted(k for k, v in profile.images.items() if v)) or "none"
    return PlanCheckError([Violation((), (
        f"the form{f' ({chosen})' if chosen else ''} needs the image key '{key}', which container.images of {profile.source} does not define "
        f"(defined: {known}); add container.images.{key} to the profile or choose another value"))])


def checked_plan(build: Callable[[], T], profile: ClusterProfile, params: Mapping[str, Any] | None = None,
                 form: FormParams = FormParams()) -> T:
    """Build a plan and check it against the profile; raises :class:`PlanCheckError` listing
    every violation (an image key the build asked for and the profile lacks included)."""
    params = params or {}
    try:
        plan = build()
    except ProfileError as exc:
        converted = image_key_error(exc, profile, params, form)
        if converted is None:
            raise
        raise converted from None
    violations = check_plan(plan, profile, params, form)
    if violations:
        raise PlanCheckError(violations)
    return plan


def _dag_form(dag_id: str) -> FormParams:
    return FORMS.get(dag_id, FormParams())


def profile_limit_errors(plan: Any) -> list[str]:
    """The plan-time check for ``tasks.plan.PLAN_CHECKS``: ``plan`` has ``dag_id``, ``profile``,
    ``params`` and ``jobs`` (each with ``job``, a JobSpec dict); one message per broken limit."""
    jobs = [planned.job for planned in plan.jobs]
    return [v.message for v in check_plan(jobs, plan.profile, plan.params, _dag_form(plan.dag_id))]


def missing_image_message(exc: ProfileError, profile: ClusterProfile, params: Mapping[str, Any],
                          dag_id: str) -> str | None:
    """What to tell the user when planning ``dag_id`` raised ``exc`` for an image key the profile
    lacks (naming the params that chose it); None when ``exc`` is about something else."""
    error = image_key_error(exc, profile, params, _dag_form(dag_id))
    return None if error is None else error.violations[0].message
