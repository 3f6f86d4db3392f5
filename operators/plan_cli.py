"""``skillflow plan DAG_ID --profile P [--conf JSON_OR_FILE] --out DIR``: every Slurm job a DAG run
would submit, rendered as sbatch files named after the tasks plus ``plan.json``, without touching
the cluster.

The form is the DAG's own: its param defaults (read from the DAG file, so they are the ones the UI
shows), overridden by ``--conf`` and checked against the DAG's schema, then planned by
:func:`tasks.plan.plan_dag`, the function the DAG's ``plan`` task calls. It lives here, not in
``tasks/``, because reading a DAG file imports Airflow; the import happens only when the command
runs, so ``skillflow --help`` stays light.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def register(sub) -> None:
    p = sub.add_parser("plan", help="render every Slurm job a DAG run would submit (sbatch files + plan.json)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("dag_id", help="openmath_eval, openmath_sft, openmath_datagen or apps_sft")
    p.add_argument("--profile", required=True, help="cluster profile: a built-in name or a YAML file")
    p.add_argument("--conf", default=None, help="the run's conf: a JSON object or a file holding one")
    p.add_argument("--out", required=True, help="folder for <task>.sbatch files and plan.json")
    p.add_argument("--run-id", default="plan", help="run id the output folders are named after (default: plan)")
    p.add_argument("--dags-dir", default=None,
                   help="folder of the DAG files (default: $AIRFLOW__CORE__DAGS_FOLDER, else this checkout's dags/)")
    p.set_defaults(handler=_handle)


def _handle(args) -> int:
    from tasks.cli import UserError
    from tasks.plan import PlanCheckError, plan_dag, write_plan
    from tasks.profiles import ProfileError, load_profile

    conf = read_conf(args.conf)
    try:
        params = dag_form(args.dag_id, conf, _dags_dir(args.dags_dir))
        params["profile"] = args.profile
        profile = load_profile(args.profile)
        plan = plan_dag(args.dag_id, params, profile, run_id=args.run_id, check=False)
    except (ProfileError, ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    written = write_plan(plan, args.out)
    print(f"{args.dag_id} on profile {profile.name}: {len(plan.jobs)} job(s) -> {args.out}")
    for job in plan.jobs:
        spec = job.job
        print(f"  {job.file_name:40s} time={spec.get('time') or profile.default_time} nodes={spec.get('nodes', 1)} "
              f"gpus/node={spec.get('gpus_per_node', 0)} images={','.join(job.images) or '-'}")
    print(f"wrote {len(written)} file(s)")
    try:
        from tasks.plan import check_plan

        check_plan(plan)
    except PlanCheckError as exc:
        raise UserError(str(exc)) from None
    return 0


def read_conf(value: str | None) -> dict[str, Any]:
    from tasks.cli import UserError

    if not value:
        return {}
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise UserError(f"--conf {value!r} is neither a JSON object nor a file")
        text = path.read_text()
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--conf is not valid JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise UserError("--conf must be a JSON object (param name -> value)")
    return conf


def _dags_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    env = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "dags"


def dag_form(dag_id: str, conf: dict[str, Any], dags_dir: Path) -> dict[str, Any]:
    """The DAG's param defaults with ``conf`` applied, each value checked against its schema."""
    import importlib.util

    import jsonschema

    path = dags_dir / f"{dag_id}.py"
    if not path.is_file():
        known = sorted(p.stem for p in dags_dir.glob("*.py")) if dags_dir.is_dir() else []
        raise FileNotFoundError(f"no DAG file {path} (DAG files there: {', '.join(known) or 'none'})")
    spec = importlib.util.spec_from_file_location(f"skillflow_plan_{dag_id}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG

    dags = [v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == dag_id]
    if not dags:
        raise ValueError(f"{path} defines no DAG with id {dag_id!r}")
    dag = dags[0]
    defaults = dag.params.dump()
    unknown = sorted(set(conf) - set(defaults))
    if unknown:
        raise ValueError(f"--conf names unknown param(s) {', '.join(unknown)} of {dag_id} "
                         f"(valid: {', '.join(sorted(defaults))})")
    form = {**defaults, **conf}
    for key, value in form.items():
        try:
            jsonschema.validate(value, dag.params.get_param(key).schema)
        except jsonschema.ValidationError as exc:
            raise ValueError(f"param '{key}': {exc.message}") from None
    return form
