"""The tiny Slurm jobs of ``cluster_check``, planned from the profile alone.

One job per distinct image (keys that name the same image share a job) and one for the sandbox,
on the profile's partition. Each job runs :mod:`tasks.cluster_check.probe` (``skillflow
cluster-probe``) inside its image with what to check in ``$SKILLFLOW_CLUSTER_PROBE`` and the
profile's ``storage.cluster_env`` (names of credential files, never keys), and writes its rows to
a result file the report reads back.

On a profile without a container runtime every image key runs on the node itself, so there is a
single node job. The sandbox job starts its sidecar the way the native engine does, on the job's
own port (:func:`sandbox_probe` says why). Facts that can be judged without the cluster (an image
key left empty, a model alias whose variable is unset) become rows here, before any job is
submitted.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tasks.cluster_check.table import FAIL, Row
from tasks.plan import spec_dict
from tasks.profiles import ClusterProfile, ProfileError
from tasks.slurm.spec import JobSpec
from tasks.steps.base import SANDBOX_PORT_EXPR
from tasks.steps.engines import native_sandbox

PROBE_TIME = "00:10:00"
SANDBOX_KEY = "sandbox"
# An address outside the cluster that sandboxed code must not reach (besides the node itself).
OUTSIDE = (("1.1.1.1", 443),)
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
# Through the CLI, not "$SKILLFLOW_PYTHON": that is the image's own interpreter, without skillflow.
PROBE_COMMAND = '"$SKILLFLOW_CLI" cluster-probe\n'


@dataclass(frozen=True)
class Probe:
    """One probe job: its spec, where it writes its rows and its log, and what it stands for."""

    name: str
    target: str
    job: dict[str, Any]
    result: str
    log: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "job": self.job, "result": self.result, "log": self.log}


def parse_mount(mount: str) -> dict[str, Any]:
    """``SRC[:DST[:FLAGS]]`` -> the path inside the container and whether jobs may write there."""
    parts = mount.split(":")
    path = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    flags = parts[2].split("+") if len(parts) > 2 else []
    return {"spec": mount, "path": path, "writable": "ro" not in flags}


def model_paths(profile: ClusterProfile) -> tuple[dict[str, str], list[Row]]:
    """Every model alias of the profile expanded, and a failed row for each that cannot be."""
    paths, rows = {}, []
    for alias in sorted(profile.models):
        try:
            paths[alias] = profile.model_path(alias)
        except ProfileError as exc:
            rows.append(Row(f"model '{alias}'", "profile", FAIL, str(exc),
                            f"set the variable models.{alias} uses wherever the workers load the profile, "
                            "or write the path out"))
    return paths, rows


def sandbox_probe(profile: ClusterProfile, out_dir: str, target: str) -> Probe:
    """The sandbox job: the sidecar starts as the native engine starts it, on the job's own port
    (:data:`tasks.steps.base.SANDBOX_PORT_EXPR`), in the sandbox image or, without containers, as
    the node's ``skillflow sandbox serve``.

    Not on the NeMo-Skills client's fixed port 6000: that launch assumes a node to itself
    (``--exclusive`` in the profile's ``extra_sbatch_args``), and a probe may share its node. On
    the local profile's one node two cluster_check runs at once each started a sandbox on 6000;
    the second could not bind, its probe asked the first run's sandbox, and that sandbox was
    stopped mid-request when its job ended ("Remote end closed connection").
    """
    sidecar = native_sandbox(profile)
    return _probe(profile, out_dir, "sandbox", target, {"kind": "sandbox", "image": sidecar.image, "outside": OUTSIDE},
                  command=f"export SKILLFLOW_SANDBOX_PORT={SANDBOX_PORT_EXPR}\n{PROBE_COMMAND}", image=sidecar.image,
                  sidecars=(sidecar,))


def _slug(text: str) -> str:
    return _SLUG.sub("-", text).strip("-")[:60] or "probe"


def _probe(profile: ClusterProfile, out_dir: str, name: str, target: str, cfg: dict[str, Any],
           **job: Any) -> Probe:
    result, log = f"{out_dir}/{name}.json", f"{out_dir}/{name}.log"
    cfg = {"name": name, "target": target, "runtime": profile.runtime, "accelerator": profile.accelerator,
           "partition": profile.partition, "result": result, **cfg}
    env = {**job.pop("env", {}), "SKILLFLOW_CLUSTER_PROBE": json.dumps(cfg, sort_keys=True)}
    spec = JobSpec(name=f"cluster-check-{name}", time=PROBE_TIME, output=log, env=env, **job).validate()
    return Probe(name, target, spec_dict(spec), result, log)


def plan_probes(profile: ClusterProfile, out_dir: str) -> tuple[list[Probe], list[Row]]:
    """The probe jobs for ``profile`` and the rows already decided without the cluster."""
    out_dir = out_dir.rstrip("/")
    partition = profile.partition or "(default partition)"
    models, rows = model_paths(profile)
    mounts = [parse_mount(m) for m in profile.mounts] if profile.runtime != "none" else []
    # One GPU is enough to see that Slurm hands GPUs to the container; the node's count comes
    # from scontrol (tasks.cluster_check.partition).
    gpus = 1 if profile.gpus_per_node else 0
    common = {"workdir": profile.workdir, "mounts": mounts, "models": models, "bucket": profile.bucket,
              "storage_env_names": sorted(profile.storage_env), "gpus": gpus}
    probes = []
    if profile.runtime == "none":
        probes.append(_probe(profile, out_dir, "node", f"node (runtime none) / {partition}",
                             {"kind": "image", "image": None, **common}, command=PROBE_COMMAND,
                             gpus_per_node=gpus, env=dict(profile.storage_env)))
        probes.append(sandbox_probe(profile, out_dir, f"sandbox (skillflow sandbox serve) / {partition}"))
        return probes, rows
    by_image: dict[str, list[str]] = {}
    for key, image in sorted(profile.images.items()):
        if not image:
            rows.append(Row(f"image '{key}'", "profile", FAIL, f"container.images.{key} is empty",
                            f"set container.images.{key} to the image jobs of that kind run in, or remove the key"))
        elif key != SANDBOX_KEY:
            by_image.setdefault(image, []).append(key)
    for image, keys in by_image.items():
        name = _slug(keys[0])
        probes.append(_probe(profile, out_dir, name, f"{image} [{', '.join(keys)}] / {partition}",
                             {"kind": "image", "image": image, **common}, command=PROBE_COMMAND, image=image,
                             gpus_per_node=gpus, env=dict(profile.storage_env)))
    if profile.images.get(SANDBOX_KEY):
        probes.append(sandbox_probe(profile, out_dir, f"{profile.images[SANDBOX_KEY]} [sandbox] / {partition}"))
    elif SANDBOX_KEY not in profile.images:
        rows.append(Row("image 'sandbox'", "profile", FAIL, "container.images has no 'sandbox'",
                        "add container.images.sandbox (docker/sandbox): model-written code runs only there"))
    return probes, rows


def missing_result_row(probe: dict[str, Any], log_tail: str, job_error: str | None = None) -> Row:
    """The row of a probe that wrote no result: its job could not start or the probe crashed."""
    # The job's own lines, without skillflow's start/end markers: the first error is the cause.
    lines = [ln.strip() for ln in log_tail.strip().splitlines() if ln.strip() and not ln.startswith("skillflow: ")]
    tail = " / ".join(lines[:8])
    detail = f"no result at {probe['result']}" + (f"; {job_error}" if job_error else "") + (
        f"; log {probe['log']}: {tail}" if tail else f"; no log at {probe['log']}")
    return Row("probe job ran", probe["target"], FAIL, detail[:800],
               "read the job log: a container that cannot start (image name, registry credentials, "
               "enroot/pyxis on the node) or Python/skillflow missing in the image ends the job before the checks")
