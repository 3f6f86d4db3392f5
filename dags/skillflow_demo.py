"""skillflow_demo: the smallest end-to-end proof of the stack.

One real Slurm job over SSH (asking for an emulated GPU), awaited in the triggerer, whose result
is logged to MLflow with an artifact stored in S3. ``make demo`` runs it until the OpenMath
evaluation DAG takes its place.
"""
from __future__ import annotations

from airflow.sdk import task

from operators.dag_steps import PROFILE_TEMPLATE, skillflow_dag
from operators.slurm.operator import SlurmJobOperator

DEMO_STEP = r'''
"$SKILLFLOW_PYTHON" - <<'PY'
import json, math, os, platform, time
t0 = time.time()
n = int(os.environ["DEMO_N"])
# A little real work: the partial sum of the Basel series, whose limit is pi^2/6.
total = math.fsum(1.0 / (k * k) for k in range(1, n + 1))
result = {
    "n": n,
    "basel_partial_sum": total,
    "abs_error": abs(math.pi ** 2 / 6 - total),
    "host": platform.node(),
    "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "seconds": time.time() - t0,
}
out = os.environ["DEMO_OUT"]
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out + ".tmp", "w") as fh:
    json.dump(result, fh, indent=2)
os.replace(out + ".tmp", out)
print(json.dumps(result))
PY
'''


@skillflow_dag(
    "skillflow_demo",
    max_active_runs=2,
    tags=["demo"],
    doc_md=__doc__,
)
def skillflow_demo():
    job = SlurmJobOperator(
        task_id="slurm_job",
        profile=PROFILE_TEMPLATE,
        job={
            "name": "skillflow-demo",
            "command": DEMO_STEP,
            "gpus_per_node": 1,
            "time": "00:10:00",
            "env": {
                "DEMO_N": "{{ params.n }}",
                "DEMO_OUT": "{{ ti.run_id | replace(':', '-') | replace('+', '-') }}/result.json",
            },
        },
        expected_outputs=[],
        # In the image of the skillflow CLI on a profile with containers, as every product step.
        image_key="nemo_skills",
    )

    @task
    def record(job_result: dict, params: dict | None = None, dag_run=None, ti=None) -> dict:
        """Log the job's result to MLflow (params, metrics, artifacts in S3) and verify the object."""
        import json
        import tempfile
        from pathlib import Path

        from operators.dag_steps import profile_of, read_job_json, slurm_hook
        from operators.tracking import mlflow_runs

        profile = profile_of(params)
        hook = slurm_hook(profile)
        safe_run = dag_run.run_id.replace(":", "-").replace("+", "-")
        result = read_job_json(hook, f"{profile.workdir.rstrip('/')}/{safe_run}/result.json", "slurm_job")
        log_text = hook.last_lines(job_result["log"], 200)

        mlc = mlflow_runs.client(profile.mlflow_conn_id)
        run_id = mlflow_runs.run_for_dag_run(mlc, params["experiment"], dag_run.dag_id, dag_run.run_id,
                                            tags={"skillflow.profile": profile.name,
                                                  "slurm.job_id": str(job_result["job_id"])},
                                            run_name=f"demo {dag_run.run_id}")
        mlflow_runs.log_params_once(mlc, run_id, {"n": params["n"], "profile": profile.name,
                                                  "slurm_job_id": job_result["job_id"]})
        mlflow_runs.log_metrics(mlc, run_id, {"basel_abs_error": result["abs_error"],
                                              "job_elapsed_s": float(job_result["elapsed_s"]),
                                              "gpu_hours": float(job_result["gpu_hours"])})
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "result.json").write_text(json.dumps(result, indent=2))
            Path(tmp, "slurm.log").write_text(log_text)
            mlc.log_artifacts(run_id, tmp, artifact_path="demo")
        artifact_uri = mlc.get_run(run_id).info.artifact_uri
        mlc.set_terminated(run_id, "FINISHED")
        return {"mlflow_run_id": run_id, "artifact_uri": artifact_uri, "result": result,
                "mlflow_url": mlflow_runs.run_url(mlc, run_id)}

    record(job.output)


dag = skillflow_demo()
