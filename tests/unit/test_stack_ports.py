"""Stacks started side by side (other SKILLFLOW_*_PORT values) must not share a port, Airflow's
log servers included."""
from __future__ import annotations

from pathlib import Path

from devtools.stack.config import render_slurm_conf, stack_env
from devtools.stack.layout import Layout, Ports


def _env(tmp_path: Path, airflow: int) -> dict[str, str]:
    return stack_env(Layout(root=Path.cwd(), var=tmp_path / str(airflow), ports=Ports(airflow=airflow)))


def test_log_server_ports_follow_the_api_port(tmp_path):
    default = _env(tmp_path, 8080)
    assert (default["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"],
            default["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]) == ("8793", "8794")  # Airflow's defaults
    other = _env(tmp_path, 8280)
    assert {other["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], other["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]} \
        .isdisjoint({"8793", "8794"})


def test_bench_partition_oversubscribes_and_is_never_the_default(tmp_path):
    conf = render_slurm_conf(Layout(root=Path.cwd(), var=tmp_path, ports=Ports()))
    bench = next(line for line in conf.splitlines() if line.startswith("PartitionName=bench "))
    assert "OverSubscribe=FORCE" in bench and "Default=NO" in bench
