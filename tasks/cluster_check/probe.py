"""What a ``cluster_check`` job runs where real jobs run: inside the image, on a compute node.

``skillflow cluster-probe`` (or ``python -m tasks.cluster_check.probe`` with skillflow's own
interpreter) reads its instructions from ``$SKILLFLOW_CLUSTER_PROBE``
(JSON written by :mod:`tasks.cluster_check.probes`), runs each check, prints the rows and writes
them to the result file. It exits 0 whenever it could write the result: a failed check is data for
the table, not a failed job. Only the standard library is imported at the top, so the probe runs
in any image that has Python and skillflow (boto3 is imported by the S3 check alone).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from tasks.cluster_check.table import FAIL, PASS, SKIP, Row, passed

ENV_VAR = "SKILLFLOW_CLUSTER_PROBE"

# Sent to the sandbox's /execute: it tries to reach the sandbox's own port on the node and an
# outside address; a sandbox that refuses network reaches neither. Its last line is the JSON
# reply the /execute protocol expects ({"result", "error_message"}).
NETWORK_PROGRAM = """\
import json, socket
out = {}
for host, port in %r:
    try:
        socket.create_connection((host, port), timeout=3).close()
        out[f"{host}:{port}"] = "connected"
    except OSError as exc:
        out[f"{host}:{port}"] = type(exc).__name__ + ": " + str(exc)
print(json.dumps({"result": json.dumps(out), "error_message": ""}))
"""


def _run(cmd: list[str], timeout: float = 60) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        return 127, str(exc)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_container(cfg: dict[str, Any]) -> tuple[str, str, str]:
    if cfg["runtime"] == "none":
        return SKIP, (f"container.runtime is none: the step ran on the node itself ({sys.executable}); "
                      "there is no container to start"), ""
    release = ""
    if os.path.exists("/etc/os-release"):
        info = dict(line.split("=", 1) for line in open("/etc/os-release").read().splitlines() if "=" in line)
        release = info.get("PRETTY_NAME", "").strip('"')
    return PASS, (f"the step started in {cfg['image']} through {cfg['runtime']} ({release or 'unknown OS'}, "
                  f"Python {sys.version.split()[0]})"), ""


def check_cli(cfg: dict[str, Any]) -> tuple[str, str, str]:
    cli = os.environ.get("SKILLFLOW_CLI", "skillflow")
    rc, out = _run([cli, "--version"])
    return passed(PASS if rc == 0 else FAIL, f"`{cli} --version`: {out or f'exit {rc}'}"[:300],
                  "install skillflow in this image (docker/build.sh builds it in) or point paths.skillflow of "
                  "the profile at the CLI as it is named inside the image")


def check_gpu_allocation(cfg: dict[str, Any]) -> tuple[str, str, str]:
    want = cfg["gpus"]
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return passed(PASS if len(visible) == want else FAIL,
                  f"asked Slurm for {want} GPU(s); CUDA_VISIBLE_DEVICES={','.join(visible) or '(unset)'}",
                  f"Slurm did not hand the job its GPUs: check that partition '{cfg['partition']}' has GPU GRES "
                  "(gres.conf, GresTypes=gpu) and that --gpus-per-node works there")


def check_gpu_devices(cfg: dict[str, Any]) -> tuple[str, str, str]:
    want = cfg["gpus"]
    if cfg.get("accelerator") == "cpu":
        return SKIP, ("slurm.accelerator is cpu: the profile's GPUs are GRES device files without a driver "
                      "(the local stack), so there is no device to list, only Slurm's allocation"), ""
    smi = shutil.which("nvidia-smi")
    if not smi:
        if cfg["runtime"] == "none":
            return SKIP, ("nvidia-smi is not on this node and container.runtime is none, so no image brings "
                          "it: devices were not queried, only Slurm's allocation (the local profile's GPUs are "
                          "GRES device files without a driver)"), ""
        return FAIL, "nvidia-smi is not on PATH inside the step", (
            "the image must see the node's driver: with pyxis, enroot's NVIDIA hook mounts nvidia-smi and the "
            "libraries when NVIDIA_VISIBLE_DEVICES is set (Slurm's GPU GRES sets it); use a CUDA base image")
    rc, out = _run([smi, "-L"])
    gpus = [line for line in out.splitlines() if line.startswith("GPU ")]
    ok = rc == 0 and len(gpus) == want
    return passed(PASS if ok else FAIL, f"nvidia-smi -L lists {len(gpus)} GPU(s), {want} asked: "
                                        + ("; ".join(gpus) or out)[:300],
                  "the container must see exactly the GPUs Slurm allocated: check the node's driver and "
                  "enroot's NVIDIA hook (NVIDIA_VISIBLE_DEVICES)")


def check_folder(path: str, writable: bool, what: str) -> tuple[str, str, str]:
    """Readable (list it) and, when ``writable``, a file written, read back and removed; a file
    mounted read-only (a model) is read."""
    if not writable and os.path.isfile(path):
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            return FAIL, f"cannot read {path}: {exc}", f"give the job's user read access to {path}"
        return PASS, f"{path} readable (a file); mounted read-only, not written", ""
    if not os.path.isdir(path):
        return FAIL, f"{path} is not a folder inside the step", (
            f"create {path} on the cluster's shared filesystem, or fix {what} in the profile "
            "(container.mounts maps SRC:DST into the image)")
    try:
        entries = len(os.listdir(path))
    except OSError as exc:
        return FAIL, f"cannot list {path}: {exc}", f"give the job's user read access to {path}"
    if not writable:
        return PASS, f"{path} readable ({entries} entries); mounted read-only, not written", ""
    try:
        with tempfile.NamedTemporaryFile("w+", dir=path, prefix=".skillflow-cluster-check-") as fh:
            fh.write("ok")
            fh.flush()
            fh.seek(0)
            if fh.read() != "ok":
                raise OSError("read back something else than was written")
    except OSError as exc:
        return FAIL, f"{path} is readable but not writable: {exc}", (
            f"give the job's user write access to {path}, or mount it without ':ro'")
    return PASS, f"{path} readable ({entries} entries) and writable", ""


def check_model(alias: str, path: str) -> tuple[str, str, str]:
    if os.path.isfile(path):
        return PASS, f"{path} ({os.path.getsize(path) / 1e6:.1f} MB)", ""
    if os.path.isdir(path):
        return PASS, f"{path} (folder, {len(os.listdir(path))} entries)", ""
    return FAIL, f"{path} does not exist inside the step", (
        f"copy the model to {path} on the cluster (a mounted path), or change models.{alias} in the profile")


def check_s3(cfg: dict[str, Any]) -> tuple[str, str, str]:
    """head-bucket with whatever credentials the job finds through ``storage.cluster_env``."""
    bucket = cfg["bucket"]
    names = ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in cfg.get("storage_env_names", []))
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return FAIL, "boto3 is not importable inside the step", "install skillflow's dependencies in the image"
    session = boto3.session.Session()
    creds = session.get_credentials()
    if creds is None:
        return FAIL, f"no S3 credentials found ({names or 'storage.cluster_env is empty'})", (
            "set storage.cluster_env in the profile: AWS_SHARED_CREDENTIALS_FILE (mode 0600, on a mounted path), "
            "AWS_CONFIG_FILE (with endpoint_url for an S3-compatible store) and AWS_PROFILE")
    if creds.method == "env":
        return FAIL, "the job's environment holds AWS keys (credentials method 'env')", (
            "keep keys out of job environments: put them in the credentials file that storage.cluster_env names")
    client = session.client("s3")
    where = f"endpoint {client.meta.endpoint_url}, credentials from {creds.method} ({names})"
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        fix = (f"create bucket {bucket} or fix storage.bucket" if code in ("404", "NoSuchBucket") else
               f"grant the credentials of AWS_PROFILE s3:ListBucket on {bucket}")
        return FAIL, f"head-bucket {bucket}: {code} ({where})", fix
    except BotoCoreError as exc:
        return FAIL, f"head-bucket {bucket}: {exc} ({where})", (
            "make the S3 endpoint reachable from compute nodes and name it as endpoint_url in AWS_CONFIG_FILE")
    return PASS, f"head-bucket {bucket} answered ({where})", ""


def _http(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def check_sandbox_health(cfg: dict[str, Any], base: str) -> tuple[str, str, str]:
    deadline = time.monotonic() + cfg.get("sandbox_wait_s", 120)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            health = _http(f"{base}/health", timeout=5)
            return passed(PASS if health.get("status") == "ok" else FAIL, f"GET {base}/health: {json.dumps(health)}",
                          "the sandbox answered but not with status ok: see its log in the job log")
        except (OSError, ValueError) as exc:
            last = str(exc)
            time.sleep(2)
    return FAIL, f"GET {base}/health did not answer within {cfg.get('sandbox_wait_s', 120)} s ({last})", (
        "the sandbox image must start with `/entrypoint.sh && /start.sh` and listen on the sandbox port; "
        "see the sidecar's lines in the job log")


def check_sandbox_network(cfg: dict[str, Any], base: str, port: int) -> tuple[str, str, str]:
    targets = [("127.0.0.1", port), *[tuple(t) for t in cfg.get("outside", [])]]
    try:
        reply = _http(f"{base}/execute", {"generated_code": NETWORK_PROGRAM % (targets,), "timeout": 30}, timeout=60)
        outcome = json.loads(reply.get("result") or "{}")
    except (OSError, ValueError) as exc:
        return FAIL, f"POST {base}/execute failed: {exc}", "the sandbox must answer /execute; see the job log"
    if not outcome:
        return FAIL, f"/execute gave no result: {json.dumps(reply)[:300]}", "see the sandbox's lines in the job log"
    reached = [t for t, r in outcome.items() if r == "connected"]
    detail = "; ".join(f"{t}: {r}" for t, r in outcome.items())
    return passed(FAIL if reached else PASS, f"code run in the sandbox tried {detail}"[:400],
                  "model-written code must not reach the network: run the sandbox where util-linux `unshare` "
                  "can make a network namespace (the image has it; the runtime must allow user namespaces)")


def run_checks(cfg: dict[str, Any]) -> list[Row]:
    """Every check this probe was asked for, in a fixed order."""
    target = cfg["target"]
    rows: list[Row] = []

    def add(check: str, fn: Callable[[], tuple[str, str, str]]) -> None:
        try:
            status, detail, fix = fn()
        except Exception as exc:  # a crashing check is a failed check, and the others still run
            status, detail, fix = FAIL, f"the check crashed: {type(exc).__name__}: {exc}", "see the job log"
        rows.append(Row(check, target, status, detail, fix))
        print(f"cluster_check: {status} {check}: {detail}" + (f" -> fix: {fix}" if fix else ""), flush=True)

    add("container starts", lambda: check_container(cfg))
    add("skillflow --version", lambda: check_cli(cfg))
    if cfg["kind"] == "sandbox":
        port = int(os.environ["SKILLFLOW_SANDBOX_PORT"])  # set by the job (tasks.cluster_check.probes)
        base = f"http://127.0.0.1:{port}"
        add("sandbox answers /health", lambda: check_sandbox_health(cfg, base))
        add("sandbox refuses network", lambda: check_sandbox_network(cfg, base, port))
        return rows
    if cfg["gpus"]:
        add("GPUs allocated", lambda: check_gpu_allocation(cfg))
        add("GPUs visible", lambda: check_gpu_devices(cfg))
    add("workdir writable", lambda: check_folder(cfg["workdir"], True, "paths.workdir"))
    for mount in cfg.get("mounts", []):
        add(f"mount {mount['path']}", lambda m=mount: check_folder(m["path"], m["writable"], "container.mounts"))
    for alias, path in sorted(cfg.get("models", {}).items()):
        add(f"model '{alias}'", lambda a=alias, p=path: check_model(a, p))
    add("S3 reachable with cluster credentials", lambda: check_s3(cfg))
    return rows


def write_result(path: str, cfg: dict[str, Any], rows: list[Row]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = {"probe": cfg["name"], "target": cfg["target"], "host": os.uname().nodename,
               "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "rows": [r.as_dict() for r in rows]}
    with open(path + ".tmp", "w") as fh:
        json.dump(payload, fh, indent=1)
    os.replace(path + ".tmp", path)


def register(subparsers) -> None:
    """The probe as a ``skillflow`` sub-command: inside a cluster image skillflow lives in its own
    venv (docker/common/install-skillflow.sh), so the image's ``python`` (the profile's
    ``paths.python``, which must stay the image's for vLLM and the hub download) cannot import it;
    the CLI always can."""
    p = subparsers.add_parser("cluster-probe", help=f"run the checks a cluster_check job names in ${ENV_VAR} "
                                                    "(started by cluster_check's Slurm jobs)")
    p.set_defaults(handler=lambda args: main())


def main() -> int:
    cfg = json.loads(os.environ[ENV_VAR])
    rows = run_checks(cfg)
    write_result(cfg["result"], cfg, rows)
    print(f"cluster_check: wrote {len(rows)} row(s) to {cfg['result']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
