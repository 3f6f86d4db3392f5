"""Where the stack keeps its state, and which loopback ports it uses.

Everything lives under one folder (``$SKILLFLOW_VAR``, default ``<repo>/var``) so that
``rm -rf var`` is a full reset and nothing is written elsewhere on the machine. Ports can be
moved with environment variables when another program already holds one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def repo_root() -> Path:
    """The checkout this package was installed from (editable install) or the cwd's checkout."""
    env = os.environ.get("SKILLFLOW_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


@dataclass(frozen=True)
class Ports:
    ssh: int = 2222
    s3: int = 9000
    mlflow: int = 5000
    airflow: int = 8080
    slurmctld: int = 6817
    slurmd: int = 6818
    model: int = 8001
    sandbox: int = 6000
    # The team topology's (devtools/stack/team.py); off Debian's defaults (5432, 6379) so that a
    # packaged server started by apt on the same machine does not collide.
    postgres: int = 5433
    redis: int = 6380

    @property
    def airflow_execution(self) -> int:
        """The default topology's second API server, which serves only the execution API (the
        workers' and triggerer's calls); it moves with the main API port, like the log servers."""
        return self.airflow + 1

    @classmethod
    def from_env(cls) -> "Ports":
        values = {}
        for name in cls.__dataclass_fields__:
            env = os.environ.get(f"SKILLFLOW_{name.upper()}_PORT")
            if env:
                values[name] = int(env)
        return cls(**values)


@dataclass(frozen=True)
class Layout:
    root: Path
    var: Path
    ports: Ports

    @classmethod
    def discover(cls) -> "Layout":
        root = repo_root()
        var = Path(os.environ.get("SKILLFLOW_VAR") or root / "var").resolve()
        return cls(root=root, var=var, ports=Ports.from_env())

    # Folders ------------------------------------------------------------------------------
    @property
    def run(self) -> Path:
        return self.var / "run"

    @property
    def logs(self) -> Path:
        return self.var / "logs"

    @property
    def munge(self) -> Path:
        return self.var / "munge"

    @property
    def slurm(self) -> Path:
        return self.var / "slurm"

    @property
    def ssh(self) -> Path:
        return self.var / "ssh"

    @property
    def s3(self) -> Path:
        return self.var / "s3"

    @property
    def mlflow(self) -> Path:
        return self.var / "mlflow"

    @property
    def airflow_home(self) -> Path:
        return self.var / "airflow"

    @property
    def cluster(self) -> Path:
        return self.var / "cluster"

    @property
    def postgres(self) -> Path:
        return self.var / "postgres"

    @property
    def redis(self) -> Path:
        return self.var / "redis"

    @property
    def topology_file(self) -> Path:
        return self.run / "topology"

    def topology(self) -> str:
        """The topology the stack was last brought up as (``local`` until one is chosen)."""
        try:
            return self.topology_file.read_text().strip() or "local"
        except FileNotFoundError:
            return "local"

    @property
    def venv_bin(self) -> Path:
        return self.root / ".venv" / "bin"

    def pidfile(self, service: str) -> Path:
        return self.run / f"{service}.pid"

    def logfile(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def env_file(self) -> Path:
        return self.var / "env.sh"

    def make_dirs(self) -> None:
        for d in (self.run, self.logs, self.munge, self.slurm, self.ssh, self.s3, self.mlflow,
                  self.airflow_home, self.cluster / "work"):
            d.mkdir(parents=True, exist_ok=True)
