"""DAG parse cost: each file's parse time as ``airflow dags report`` shows it, and the import time of
each ``dags/`` module beyond Airflow's own (measured in a fresh interpreter that has already
imported ``airflow.sdk``). Aim: under 0.2 s per file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib.util, sys, time
import airflow.sdk  # Airflow's own import cost is paid before the clock starts
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_probe", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(time.perf_counter() - t0)
"""


def _seconds(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def main() -> int:
    env = dict(os.environ)
    env.setdefault("SKILLFLOW_ROOT", str(ROOT))
    env.setdefault("SKILLFLOW_VAR", str(ROOT / "var"))
    env.setdefault("SKILLFLOW_AIRFLOW_PORT", "8080")
    env.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "airflow"))
    env.setdefault("AIRFLOW_CONFIG", str(ROOT / "airflow.cfg"))
    files = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    imports = {}
    for f in files:
        runs = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", PROBE, str(f)], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(f"{f.name} failed to import:\n{out.stderr[-2000:]}")
            runs.append(float(out.stdout.strip().splitlines()[-1]))
        imports[f.name] = round(min(runs), 4)
    airflow = str(Path(sys.executable).parent / "airflow")
    report = subprocess.run([airflow, "dags", "report", "-o", "json"], capture_output=True, text=True, env=env)
    parse = {}
    if report.returncode == 0:
        table = next(line for line in report.stdout.splitlines() if line.startswith("[{"))
        for row in json.loads(table):
            if row["file"].endswith(tuple(f.name for f in files)):
                parse[row["file"].rsplit("/", 1)[-1]] = round(_seconds(row["duration"]), 4)
    print(f"{'file':<24} {'dags report (s)':>16} {'import beyond airflow (s)':>26}")
    for f in files:
        print(f"{f.name:<24} {parse.get(f.name, float('nan')):>16.4f} {imports[f.name]:>26.4f}")
    worst = max(list(parse.values()) + list(imports.values()))
    print(json.dumps({"bench": "dag_parse", "files": len(files), "dags_report_s": parse, "import_s": imports,
                      "worst_s": worst, "aim_s": 0.2, "within_aim": worst < 0.2}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
