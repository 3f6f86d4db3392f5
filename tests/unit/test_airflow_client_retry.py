"""AirflowClient sends a request again after a 500, and only then.

Stand-in server: the 500 this guards against comes from a race in Airflow's API server on SQLite
(see devtools/airflow_client.py) that cannot be brought about on demand; what is tested here is
the client's answer to it.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from devtools.airflow_client import RETRIES_AFTER_SERVER_ERROR, AirflowAPIError, AirflowClient


def _server(codes: list[int]) -> tuple[HTTPServer, list[str]]:
    """Answers each POST /api/v2/x with the next code of ``codes`` (then 200); tokens always."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/auth/token":
                code, body = 201, {"access_token": "t"}
            else:
                seen.append(self.path)
                code = codes.pop(0) if codes else 200
                body = {"detail": "Database error"} if code >= 400 else {"ok": len(seen)}
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def serve():
    servers = []

    def start(codes):
        server, seen = _server(list(codes))
        servers.append(server)
        return AirflowClient(f"http://127.0.0.1:{server.server_port}", "u", "p", timeout=10), seen

    yield start
    for server in servers:
        server.shutdown()


def test_a_500_is_sent_again_and_the_next_answer_returned(serve):
    client, seen = serve([500] * RETRIES_AFTER_SERVER_ERROR)
    assert client._request("POST", "/api/v2/x", {"a": 1}) == {"ok": RETRIES_AFTER_SERVER_ERROR + 1}
    assert len(seen) == RETRIES_AFTER_SERVER_ERROR + 1


def test_500s_past_the_retries_fail_naming_the_request(serve):
    client, seen = serve([500] * (RETRIES_AFTER_SERVER_ERROR + 1))
    with pytest.raises(AirflowAPIError, match=r"POST /api/v2/x: HTTP 500: .*Database error"):
        client._request("POST", "/api/v2/x", {"a": 1})
    assert len(seen) == RETRIES_AFTER_SERVER_ERROR + 1


def test_a_client_error_is_not_sent_again(serve):
    client, seen = serve([409])
    with pytest.raises(AirflowAPIError, match="HTTP 409"):
        client._request("POST", "/api/v2/x", {"a": 1})
    assert len(seen) == 1
