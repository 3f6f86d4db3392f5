"""A small client of Airflow 3's REST API (v2), for the command line and the tests.

It uses plain HTTP so the CLI can drive a deployment without importing Airflow.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from operators.local_sqlite import CONNECT_ARGS as _SQLITE_CONNECT_ARGS

#: Seconds one request may take. The local stack's API server may wait up to SQLite's lock timeout
#: for the database before it answers (a fresh stack's dag-processor holds the lock while it
#: serialises every DAG), so a client that gave up sooner would call a slow answer a dead server.
REQUEST_TIMEOUT = _SQLITE_CONNECT_ARGS["timeout"] + 30.0

#: A 500 means the API server rolled the request's transaction back, so sending it again is safe.
#: On the local stack's SQLite one such 500 is a wait that only a timeout ends: Airflow's audit-log
#: dependency (``action_logging``) commits synchronously on the API server's event loop, and when a
#: request that already holds the write lock needs that loop to reach its own commit, both wait
#: until SQLite's lock timeout. Seen on a fresh stack: POST dagRuns failed with 500 after 60 s
#: while a worker's rendered-fields update held the lock; the next try went through at once.
RETRIES_AFTER_SERVER_ERROR = 2


class AirflowAPIError(RuntimeError):
    pass


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = REQUEST_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True, _tries: int = 0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            if exc.code == 401 and auth and self._token:
                self._token = None
                return self._request(method, path, body, auth, _tries)
            if exc.code == 500 and _tries < RETRIES_AFTER_SERVER_ERROR:
                time.sleep(1.0)
                return self._request(method, path, body, auth, _tries + 1)
            raise AirflowAPIError(f"{method} {path}: HTTP {exc.code}: {detail[:2000]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise AirflowAPIError(f"{method} {path}: {exc}") from None
        return json.loads(text) if text else None

    def token(self) -> str:
        if self._token is None:
            out = self._request("POST", "/auth/token", {"username": self.username, "password": self.password},
                                auth=False)
            self._token = out["access_token"]
        return self._token

    def get_dag(self, dag_id: str) -> dict | None:
        try:
            return self._request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}")
        except AirflowAPIError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0, unpause: bool = True) -> dict:
        """The dag-processor parses new files on its own schedule; wait until the DAG is known."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None:
                if unpause and dag.get("is_paused"):
                    self.set_paused(dag_id, False)
                return dag
            if time.monotonic() > deadline:
                errors = self.import_errors()
                raise AirflowAPIError(f"DAG {dag_id} did not appear within {timeout:.0f}s; import errors: {errors}")
            time.sleep(2)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id)}", {"is_paused": paused})

    def clear_queued_asset_events(self, dag_id: str) -> None:
        """Forget asset events waiting to start runs of ``dag_id`` (e.g. before unpausing it)."""
        try:
            self._request("DELETE", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/assets/queuedEvents")
        except AirflowAPIError as exc:
            if "HTTP 404" not in str(exc):  # nothing queued
                raise

    def dag_runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        path = f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns?limit={int(limit)}&order_by=-start_date"
        return self._request("GET", path).get("dag_runs", [])

    def import_errors(self) -> list[dict]:
        return self._request("GET", "/api/v2/importErrors").get("import_errors", [])

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> dict:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._request("POST", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns", body)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
        return self._request("GET", path).get("task_instances", [])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        path = (f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/"
                f"{urllib.parse.quote(task_id)}/xcomEntries/{urllib.parse.quote(key)}?map_index={map_index}")
        value = self._request("GET", path).get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 1800.0,
                     progress: Callable[[dict, list[dict]], None] | None = None, interval: float = 3.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            tis = self.task_instances(dag_id, run_id) if progress else []
            if progress:
                progress(run, tis)
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"DAG run {dag_id}/{run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(interval)
