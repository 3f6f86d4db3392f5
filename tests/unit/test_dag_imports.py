"""Every DAG file imports cleanly, fast, and without heavy libraries at top level."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = ("mlflow", "boto3", "sympy", "torch", "pandas")

PROBE = r"""
import importlib.util, json, sys, time
path = sys.argv[1]
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
elapsed = time.perf_counter() - t0
from airflow.sdk import DAG
dags = [v.dag_id for v in vars(mod).values() if isinstance(v, DAG)]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print(json.dumps({"dags": dags, "heavy": heavy, "seconds": elapsed}))
""" % (HEAVY,)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_heavy_modules(dag_file):
    out = subprocess.run([sys.executable, "-c", PROBE, str(dag_file)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["dags"], f"{dag_file.name} defines no DAG"
    assert info["heavy"] == [], f"{dag_file.name} imports {info['heavy']} at top level"


def test_dagbag_has_no_import_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert "skillflow_demo" in bag.dag_ids


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _slurm_profile_fields(dag) -> dict[str, str]:
    """task id -> the (unrendered) ``profile`` field of every Slurm operator, mapped ones included."""
    from operators.slurm.operator import SlurmJobOperator

    fields = {}
    for task in dag.tasks:
        kwargs = getattr(task, "partial_kwargs", None)
        if kwargs is not None and issubclass(task.operator_class, SlurmJobOperator):
            fields[task.task_id] = kwargs["profile"]
        elif isinstance(task, SlurmJobOperator):
            fields[task.task_id] = task.profile
    return fields


def test_every_dag_runs_on_the_deployments_profile_by_default(dagbag, tmp_path, monkeypatch):
    """A scheduled or asset-triggered run takes the form's defaults: they must lead to the profile
    the deployment names in $SKILLFLOW_PROFILE (docker/compose.yaml sets a file), in the Python
    steps and in every Slurm operator; a form cleared in the UI (None) too."""
    from importlib import resources

    from operators.dag_steps import profile_of
    from tasks.profiles import load_profile

    team = tmp_path / "team.yaml"
    example = (resources.files("tasks") / "cluster_profiles" / "example-pyxis.yaml").read_text()
    team.write_text(example.replace("name: example-pyxis", "name: team-cluster", 1))
    monkeypatch.setenv("SKILLFLOW_PROFILE", str(team))
    for var in ("SKILLFLOW_ROOT", "SKILLFLOW_VAR"):  # so that a fall back to `local` loads, and fails below
        monkeypatch.setenv(var, str(tmp_path / var))
    slurm_tasks = 0
    for dag_id, dag in sorted(dagbag.dags.items()):
        assert "profile" in dag.params, f"{dag_id} has no profile param"
        for form in (dag.params.dump(), {**dag.params.dump(), "profile": None}):
            dag.params.get_param("profile").resolve(form["profile"])  # the form validates
            assert profile_of(form).name == "team-cluster", f"{dag_id}: the Python steps use {profile_of(form).name}"
            env = dag.get_template_env()
            for task_id, field in _slurm_profile_fields(dag).items():
                rendered = env.from_string(field).render(params=form)
                assert load_profile(rendered or None).name == "team-cluster", \
                    f"{dag_id}.{task_id}: profile renders to {rendered!r}"
                slurm_tasks += 1
    assert slurm_tasks > 20  # every recipe DAG's Slurm steps were looked at
    # A form that names a profile still wins over the deployment's.
    assert profile_of({"profile": "example-pyxis"}).name == "example-pyxis"
