"""An authenticated REST client for the running local stack."""
from __future__ import annotations

from devtools.airflow_client import AirflowClient
from devtools.stack.config import load_secrets


def client_for(ctx) -> AirflowClient:
    password = load_secrets(ctx.layout)["admin_password"]
    return AirflowClient(f"http://127.0.0.1:{ctx.layout.ports.airflow}", "admin", password)
