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
