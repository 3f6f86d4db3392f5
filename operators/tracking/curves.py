"""Training curves from a job's TensorBoard files into MLflow, while the job runs.

Called every time a training task wakes up (and once at the end). It is idempotent: for each
tag only the points with a step beyond the last one MLflow already has are logged, so a retried
task, a restarted worker or two wake-ups reading the same file never log a point twice. A
continuation job's points follow on from where the previous job's stopped; steps a killed job
logged after its last checkpoint and the continuation repeats keep their first value.
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

# Event files larger than this are not copied each wake-up (a scalar-only file stays far below).
MAX_EVENT_FILE_BYTES = 256 << 20


def list_event_files(hook, folder: str) -> list[tuple[str, int]]:
    """(path, size) of every TensorBoard event file under ``folder`` on the cluster."""
    cmd = (f"test -d {shlex.quote(folder)} && find {shlex.quote(folder)} -type f -name 'events.out.tfevents.*' "
           "-printf '%s %p\\n' || true")
    _, out, _ = hook.run(cmd, check=False)
    files = []
    for line in out.splitlines():
        size, _, path = line.partition(" ")
        if path and size.isdigit():
            files.append((path, int(size)))
    return sorted(files)


def metric_key(tag: str) -> str:
    """MLflow keys allow ``/``; anything else odd (spaces, ``:``) becomes ``_``."""
    return "".join(c if c.isalnum() or c in "._-/ " else "_" for c in tag).replace(" ", "_")


def sync(hook, folder: str, mlc, run_id: str, log=None) -> dict[str, Any]:
    """Copy the event files, parse them, log the new points. Returns counts for the task log."""
    from mlflow.entities import Metric

    from tasks.sft.tensorboard_events import read_scalars

    points: dict[str, dict[int, tuple[float, float]]] = {}
    files = list_event_files(hook, folder)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, size) in enumerate(files):
            if size == 0 or size > MAX_EVENT_FILE_BYTES:
                continue
            local = Path(tmp, f"{i}.tfevents")
            hook.download(path, str(local))
            scalars, _ = read_scalars(local.read_bytes())
            for s in scalars:
                # The first value of a step wins (see the module docstring).
                points.setdefault(metric_key(s.tag), {}).setdefault(int(s.step), (float(s.value), float(s.wall_time)))
    new: list[Any] = []
    for key, by_step in points.items():
        history = mlc.get_metric_history(run_id, key)
        last = max((m.step for m in history), default=-1)
        for step in sorted(by_step):
            if step > last:
                value, wall = by_step[step]
                new.append(Metric(key=key, value=value, timestamp=int(wall * 1000), step=step))
    for start in range(0, len(new), 900):  # MLflow accepts at most 1000 metrics per batch
        mlc.log_batch(run_id, metrics=new[start:start + 900])
    result = {"event_files": len(files), "tags": len(points), "logged": len(new)}
    if log is not None:
        log.info("TensorBoard -> MLflow: %(logged)d new point(s) from %(event_files)d file(s), %(tags)d tag(s)", result)
    return result
