"""``skillflow demo``: bring the stack up, run a DAG through Airflow's REST API, show the outcome.

What a new user sees at the end: the DAG run's state, where the MLflow run is, which objects
the run stored in S3 (checked in the bucket, not assumed), and how to log into the UIs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="start the local stack and run the demo DAG end to end")
    p.add_argument("--dag", default="openmath_eval", help="DAG to run (default: %(default)s)")
    p.add_argument("--conf", default=None,
                   help="JSON params for the run (default for openmath_eval: a smoke run of SmolLM2 on 3 "
                        "problems of each benchmark, 2 samples on GSM8K and MATH)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the run")
    p.add_argument("--no-stack", action="store_true", help="do not start the stack (it must be up)")
    p.set_defaults(handler=run)


# `make demo`: the seed's eight benchmarks greedy plus majority voting on GSM8K and MATH, shrunk to
# a few problems so SmolLM2 on two CPU cores finishes in minutes, from the samples shipped offline.
DEMO_CONF = {
    "openmath_eval": {"model": "smollm2", "engine": "native", "data": "samples", "limit": 3,
                      "benchmarks": ["gsm8k:2", "asdiv:0", "gsm-hard:0", "mawps:0", "svamp:0", "tabmwp:0",
                                     "algebra222:0", "math:2"],
                      "seed_chunk_size": 1, "batch_size": 4, "experiment": "openmath-eval-demo"},
}


def _progress_printer():
    last = {"line": None}
    t0 = time.monotonic()

    def show(run: dict, tis: list[dict]) -> None:
        parts = [f"{ti['task_id']}{'[' + str(ti['map_index']) + ']' if ti.get('map_index', -1) >= 0 else ''}="
                 f"{ti.get('state') or 'none'}" for ti in sorted(tis, key=lambda t: (t['task_id'], t.get('map_index', -1)))]
        line = f"run {run['state']}: " + ", ".join(parts)
        if line != last["line"]:
            print(f"  [{time.monotonic() - t0:6.1f}s] {line}", flush=True)
            last["line"] = line

    return show


def s3_objects_under(uri: str, env: dict[str, str]) -> list[tuple[str, int]]:
    """(key, size) of objects in the bucket under an ``s3://`` or ``mlflow-artifacts:/`` URI."""
    from tasks.storage.checkpoints import split_uri
    from tasks.storage.s3 import client

    bucket, prefix = split_uri(uri)
    s3 = client(env)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [(f"s3://{bucket}/{o['Key']}", o["Size"]) for o in page.get("Contents", [])]
    return out


def run(args: argparse.Namespace) -> int:
    from devtools.airflow_client import AirflowClient
    from devtools.stack import control
    from devtools.stack.config import load_secrets
    from tasks.cli import UserError

    try:
        conf = json.loads(args.conf) if args.conf is not None else DEMO_CONF.get(args.dag, {})
    except ValueError as exc:
        raise UserError(f"--conf is not valid JSON: {exc}") from None
    if not args.no_stack:
        print("Bringing the local stack up ...", flush=True)
        control.up()
    ctx = control.context()
    port = ctx.layout.ports.airflow
    password = load_secrets(ctx.layout)["admin_password"]
    client = AirflowClient(f"http://127.0.0.1:{port}", "admin", password)
    client.wait_for_dag(args.dag)
    run = client.trigger(args.dag, conf)
    run_id = run["dag_run_id"]
    print(f"Triggered {args.dag} run {run_id}; waiting (Ctrl-C stops waiting, not the run) ...", flush=True)
    t0 = time.monotonic()
    final = client.wait_for_run(args.dag, run_id, timeout=args.timeout, progress=_progress_printer())
    wall = time.monotonic() - t0
    print()
    print(f"DAG run {args.dag}/{run_id}: {final['state'].upper()} in {wall:.1f}s")
    ok = final["state"] == "success"
    result = None
    if ok:
        tis = client.task_instances(args.dag, run_id)
        reporters = [t["task_id"] for t in tis if t["task_id"] in ("record", "report")]
        if reporters:
            result = client.xcom(args.dag, run_id, reporters[0])
    if isinstance(result, dict):
        if result.get("summary_table"):
            print()
            print(result["summary_table"])
        if result.get("result"):
            print(f"Job result: {json.dumps(result['result'])}")
        if result.get("mlflow_url"):
            print(f"MLflow run: {result['mlflow_url']}")
        uris = [u for u in (result.get("artifact_uri"), result.get("predictions_uri")) if u]
        for uri in uris:
            objects = s3_objects_under(uri, ctx.env)
            if not objects:
                print(f"S3: no object under {uri}")
                ok = False
            for key, size in objects:
                print(f"S3 object: {key} ({size} bytes)")
        if result.get("predictions_sha256"):
            from tasks.storage.s3 import sha256_of_object

            stored = sha256_of_object(result["predictions_uri"], ctx.env)
            same = "matches" if stored == result["predictions_sha256"] else f"DIFFERS (stored {stored})"
            print(f"Predictions SHA-256 logged in MLflow: {result['predictions_sha256']} - the S3 object {same}")
            ok = ok and stored == result["predictions_sha256"]
    print()
    print(f"Airflow UI: http://127.0.0.1:{port}  (login admin / {password})")
    print(f"MLflow UI:  http://127.0.0.1:{ctx.layout.ports.mlflow}")
    if not ok:
        print("The run did not succeed; task logs are in the Airflow UI and under var/airflow/logs.", file=sys.stderr)
    return 0 if ok else 1
