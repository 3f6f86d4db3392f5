"""The HTTP service end to end on a loopback port, started the way operators start it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tasks.sandbox import CodeSession, HttpSandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service():
    """``python -m tasks.cli sandbox serve --port 0`` in a subprocess; yields its base URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tasks.cli", "sandbox", "serve", "--host", "127.0.0.1",
                             "--port", "0", "--workers", "2", "--timeout", "5"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and url is None:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            pytest.fail(f"sandbox serve exited with {proc.returncode}")
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        url = m.group(1) if m else None
    assert url, "sandbox serve did not report its address"
    yield url
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_execute_protocol(service):
    program = 'import json\nprint(json.dumps({"result": str(2 ** 10), "error_message": ""}))'
    resp = requests.post(f"{service}/execute", json={"generated_code": program, "timeout": 5}, timeout=30)
    assert resp.status_code == 200
    assert resp.json() == {"result": "1024", "error_message": ""}


def test_execute_timeout(service):
    resp = requests.post(f"{service}/execute", json={"generated_code": "while True: pass", "timeout": 1},
                         timeout=30)
    assert resp.json() == {"result": None, "error_message": "timeout"}


def test_http_session_client(service):
    sandbox = HttpSandbox(service)
    session = CodeSession()
    assert session.execute(sandbox, "import sympy as sp\nx = sp.Symbol('x')\nsp.solve(x**2 - 4, x)") == {
        "result": "[-2, 2]", "error_message": ""}
    assert session.execute(sandbox, "x + 1") == {"result": "x + 1", "error_message": ""}


def test_run_endpoint_and_health(service):
    resp = requests.post(f"{service}/run", json={"code": "print(input().upper())", "stdin": "abc\n"}, timeout=30)
    assert resp.json()["stdout"] == "ABC\n" and resp.json()["status"] == "ok"
    health = requests.get(f"{service}/health", timeout=10).json()
    assert health["status"] == "ok" and health["workers"] == 2
    assert set(health["isolation"]) >= {"namespaces", "network", "uid_drop"}


def test_bad_requests_name_the_field(service):
    resp = requests.post(f"{service}/execute", json={"timeout": 1}, timeout=10)
    assert resp.status_code == 400 and "generated_code" in resp.json()["error"]
    resp = requests.post(f"{service}/execute", json={"generated_code": "1", "timeout": "soon"}, timeout=10)
    assert resp.status_code == 400 and "timeout" in resp.json()["error"]
    resp = requests.post(f"{service}/run", json={"code": "1", "memory_gb": 1}, timeout=10)
    assert resp.status_code == 400 and "memory_gb" in resp.json()["error"]


def test_one_caller_finds_nothing_of_another_callers_program(service):
    """Issue 18, class 2 through the service: the warm workers hold nothing of earlier requests."""
    from tests.unit.test_sandbox_adversarial import SCAN_MEMORY

    token = "PREV-" + os.urandom(16).hex()
    first = requests.post(f"{service}/run", json={"code": "print(input())", "stdin": token + "\n"}, timeout=30)
    assert first.json()["stdout"] == token + "\n"
    for _ in range(4):  # every worker of the service, whatever the order they are handed out in
        scan = requests.post(f"{service}/run", json={"code": SCAN_MEMORY, "timeout": 20}, timeout=60).json()
        assert scan["status"] == "ok", scan["stderr"]
        assert token not in scan["stdout"], scan["stdout"]
