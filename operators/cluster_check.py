"""The Airflow-side steps of ``cluster_check`` that are not Slurm jobs.

The probe jobs themselves run through :class:`~operators.slurm.operator.SlurmJobOperator`; these
steps plan them, read the partition's limits over the profile's SSH connection, and gather every
row into the one table that goes to the task log and to MLflow.
"""
from __future__ import annotations

import json
import re
from typing import Any

from operators.dag_steps import profile_of as _profile, slurm_hook as _hook

DAG_ID = "cluster_check"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def out_dir(profile, run_id: str) -> str:
    return f"{profile.workdir.rstrip('/')}/{DAG_ID}/{_SAFE.sub('-', run_id)}"


def _planned(profile, dag_run):
    from tasks.cluster_check.probes import plan_probes

    # Planned from the profile and the run id alone, so the report plans the same probes again
    # instead of carrying them through XCom.
    return plan_probes(profile, out_dir(profile, dag_run.run_id))


def plan(params: dict[str, Any], dag_run) -> list[dict[str, Any]]:
    """The probe jobs of the profile (one mapped SlurmJobOperator task each)."""
    from operators.dag_steps import form_profile

    profile = form_profile("cluster_check", params)
    probes, rows = _planned(profile, dag_run)
    for probe in probes:
        print(f"probe {probe.name}: {probe.target} (job {probe.job['name']}, log {probe.log})")
    for row in rows:
        print(f"decided without the cluster: {row.status} {row.check}: {row.detail}")
    return [p.job for p in probes]


def partition_limits(params: dict[str, Any]) -> list[dict[str, str]]:
    """``scontrol`` on the login node, held against the profile's Slurm section."""
    from tasks.cluster_check.partition import limits_command, partition_rows

    profile = _profile(params)
    _, out, err = _hook(profile).run(limits_command(profile.partition or ""), check=False)
    return [r.as_dict() for r in partition_rows(profile, out + err)]


def report(partition_rows: list[dict[str, str]] | None, params: dict[str, Any], dag_run) -> dict[str, Any]:
    """Every row in one table: printed, logged to MLflow, and the task fails when any check failed."""
    from airflow.sdk.exceptions import AirflowFailException

    from operators.dag_steps import open_tracked_run
    from tasks.cluster_check.probes import missing_result_row
    from tasks.cluster_check.table import FAIL, Row, failures, markdown, summary

    profile = _profile(params)
    hook = _hook(profile)
    probes, rows = _planned(profile, dag_run)
    if partition_rows is None:
        rows.append(Row("partition limits read", f"partition {profile.partition}", FAIL,
                        "the partition_limits task did not finish", "see that task's log (SSH to the login node)"))
    rows += [Row.from_dict(r) for r in partition_rows or []]
    for probe in probes:
        text = hook.read_text(probe.result)
        if text is None:
            rows.append(missing_result_row(probe.as_dict(), hook.last_lines(probe.log, 20)))
            continue
        rows += [Row.from_dict(r) for r in json.loads(text)["rows"]]
    title = f"cluster_check of profile {profile.name} ({profile.source}), run {dag_run.run_id}"
    table = markdown(rows, title)
    print(table)

    mlc, run_id = open_tracked_run(profile, params, dag_run, run_name=f"cluster_check {profile.name}",
                                   tags={"skillflow.cluster_check": summary(rows)})
    mlc.log_text(run_id, table, "cluster_check/table.md")
    mlc.log_dict(run_id, {"profile": profile.source, "rows": [r.as_dict() for r in rows]}, "cluster_check/rows.json")
    failed = failures(rows)
    mlc.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    if failed:
        lines = "\n".join(f"- {r.check} ({r.target}): {r.detail} -> fix: {r.fix}" for r in failed)
        raise AirflowFailException(f"{len(failed)} check(s) of profile {profile.name} failed:\n{lines}")
    return {"rows": [r.as_dict() for r in rows], "summary": summary(rows), "mlflow_run_id": run_id}
