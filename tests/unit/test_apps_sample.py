"""``skillflow apps sample``: request fields, output format, order, resume, errors.

The chat server here is a TEST DOUBLE for the model: a loopback HTTP server that answers
``POST /v1/chat/completions`` with a text made from the problem and the request's seed, so every
assertion about which requests were sent and what was written is exact. A real small model could
not be made to answer deterministically per seed and in parallel. It keeps the OpenAI server
behaviour the sampler relies on: ``choices[0].message.content``, ``finish_reason``, 4xx for a bad
request, 5xx for a transient failure.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.apps.evaluate import load_problems, load_samples
from tasks.apps.prepare import prepare_split
from tasks.apps.sample import (ChatClient, GenerationError, SamplingConfig, load_prompts, prompts_from_problems,
                               read_complete, sample_file)
from tasks.cli import main


class ScriptedChatServer(ThreadingHTTPServer):
    """Test double: answers with ``pid=<problem tag> seed=<seed>`` inside a python block."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.reject_tags: set[str] = set()   # answer HTTP 400 for these problems
        self.fail_first: int = 0             # answer HTTP 503 to this many requests first
        self.delay_for: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _tag(body: dict) -> str:
    text = body["messages"][-1]["content"]
    return text.split("QUESTION:\n", 1)[-1].split()[0]


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedChatServer

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.requests.append(body)
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            transient = srv.fail_first > 0
            srv.fail_first -= 1 if transient else 0
        try:
            tag = _tag(body)
            time.sleep(srv.delay_for.get(tag, 0.01))
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": self.path})
            if transient:
                return self._send(503, {"error": "busy"})
            if tag in srv.reject_tags:
                return self._send(400, {"error": "prompt too long"})
            text = f"Here:\n```python\nprint('pid={tag} seed={body['seed']}')\n```\n"
            self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop" if body["seed"] % 2 == 0 else "length"}]})
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ScriptedChatServer()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _problem(pid: int, tag: str, difficulty: str = "interview", fn_name: str | None = None) -> dict:
    io = {"inputs": ["1\n"], "outputs": [f"pid={tag} seed=42\n"]}
    if fn_name:
        io = {"fn_name": fn_name, "inputs": [[1]], "outputs": [1]}
    return {"id": pid, "question": f"{tag} is the problem.", "solutions": json.dumps(["print(1)"]),
            "difficulty": difficulty, "input_output": json.dumps(io),
            "starter_code": f"def {fn_name}(x):\n" if fn_name else "", "url": ""}


PROBLEMS = [_problem(10, "alpha"), _problem(11, "beta", "introductory", fn_name="f"), _problem(12, "gamma"),
            _problem(13, "delta", "competition")]


def _prepared(tmp_path: Path, rows=PROBLEMS) -> Path:
    raw = tmp_path / "test.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare_split(raw, tmp_path / "data", "test")
    return tmp_path / "data" / "test_prompts.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_requests_carry_seed_settings_and_output_is_seed_format(tmp_path, server):
    prompts = load_prompts(_prepared(tmp_path))
    out = tmp_path / "samples.jsonl"
    cfg = SamplingConfig(n_sample=3, extra={"top_k": 0})
    report = sample_file(prompts, out, ChatClient(server.url), "served", cfg, concurrency=4, progress=False)

    assert report["sampled_now"] == 4 and report["samples_now"] == 12
    assert report["finish_reasons"] == {"length": 4, "stop": 8}
    assert len(server.requests) == 12
    for body in server.requests:
        assert body["model"] == "served" and body["temperature"] == 0.6 and body["top_p"] == 0.95
        assert body["max_tokens"] == 2048 and body["n"] == 1 and body["top_k"] == 0
        assert body["messages"][0]["role"] == "user" and len(body["messages"]) == 1
    assert sorted(b["seed"] for b in server.requests if _tag(b) == "beta") == [42, 43, 44]

    rows = _lines(out)
    # n consecutive lines per problem, problems in prompt order, samples in seed order
    assert [r["problem_id"] for r in rows] == [10] * 3 + [11] * 3 + [12] * 3 + [13] * 3
    assert set(rows[0]) == {"question", "problem_id", "response"}
    assert rows[3]["question"] == prompts[1].question
    assert "Use Call-Based format" in rows[3]["question"][0]["content"]
    assert [r["response"][0]["content"].split("seed=")[1][:2] for r in rows[3:6]] == ["42", "43", "44"]
    assert rows[0]["response"][0]["role"] == "assistant"
    assert json.loads(Path(f"{out}.done").read_text())["problems"] == 4

    # `apps eval` reads the file as it is and extracts the program of each sample
    raw = tmp_path / "test.jsonl"
    samples = load_samples(out, load_problems(raw))
    assert samples[0].code == "print('pid=alpha seed=42')" and samples[5].index == 2


def test_requests_run_in_parallel_but_a_slow_problem_keeps_the_order(tmp_path, server):
    server.delay_for["alpha"] = 0.4
    prompts = load_prompts(_prepared(tmp_path))
    out = tmp_path / "samples.jsonl"
    sample_file(prompts, out, ChatClient(server.url), "m", SamplingConfig(n_sample=2), concurrency=4,
                progress=False)
    assert server.max_in_flight > 1
    assert [r["problem_id"] for r in _lines(out)] == [10, 10, 11, 11, 12, 12, 13, 13]


def test_failure_keeps_finished_problems_and_rerun_samples_only_the_rest(tmp_path, server):
    prompts = load_prompts(_prepared(tmp_path))
    out = tmp_path / "samples.jsonl"
    server.reject_tags.add("gamma")
    with pytest.raises(GenerationError, match=r"problem 12 sample \d.*HTTP 400"):
        sample_file(prompts, out, ChatClient(server.url), "m", SamplingConfig(n_sample=2), concurrency=1,
                    progress=False)
    assert [r["problem_id"] for r in _lines(out)] == [10, 10, 11, 11]
    assert not Path(f"{out}.done").exists()
    first = out.read_bytes()

    server.reject_tags.clear()
    server.requests.clear()
    report = sample_file(prompts, out, ChatClient(server.url), "m", SamplingConfig(n_sample=2), concurrency=1,
                         progress=False)
    assert report["reused"] == 2 and report["sampled_now"] == 2
    assert sorted({_tag(b) for b in server.requests}) == ["delta", "gamma"]
    assert out.read_bytes().startswith(first)
    assert [r["problem_id"] for r in _lines(out)] == [10, 10, 11, 11, 12, 12, 13, 13]

    server.requests.clear()
    assert sample_file(prompts, out, ChatClient(server.url), "m", SamplingConfig(n_sample=2),
                       progress=False)["sampled_now"] == 0
    assert server.requests == []


def test_partial_problem_and_torn_line_are_dropped_on_resume(tmp_path):
    out = tmp_path / "s.jsonl"
    line = lambda pid, k: json.dumps({"question": [], "problem_id": pid, "response": [{"content": str(k)}]}) + "\n"
    out.write_text(line(1, 0) + line(1, 1) + line(2, 0) + '{"question": [], "problem_id": 2, "resp')
    assert read_complete(out, 2) == {"1"}
    assert out.read_text() == line(1, 0) + line(1, 1)
    with pytest.raises(ValueError, match="more than 1 samples for problem.* 1"):
        read_complete(out, 1)


def test_transient_server_errors_are_retried(tmp_path, server):
    server.fail_first = 2
    prompts = load_prompts(_prepared(tmp_path))[:1]
    out = tmp_path / "s.jsonl"
    client = ChatClient(server.url + "/v1", backoff_s=0.01)
    sample_file(prompts, out, client, "m", SamplingConfig(n_sample=1), concurrency=1, progress=False)
    assert len(_lines(out)) == 1 and len(server.requests) == 3


def test_problems_mode_builds_the_prepare_prompts_and_keeps_problems_without_solutions(tmp_path):
    rows = [dict(PROBLEMS[0], solutions=""), PROBLEMS[1], dict(PROBLEMS[2], input_output="")]
    prompts_file = _prepared(tmp_path, rows)
    from_prepare = load_prompts(prompts_file)
    from_rows = prompts_from_problems(tmp_path / "test.jsonl")
    assert [p.problem_id for p in from_prepare] == [11]  # the seed filter drops 10 (no solutions) and 12
    assert [p.problem_id for p in from_rows] == [10, 11]  # 12 has no tests, so it cannot be evaluated
    assert from_rows[1].question == from_prepare[0].question
    assert [p.problem_id for p in prompts_from_problems(tmp_path / "test.jsonl", limit=1)] == [10]


def test_prompt_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"problem_id": 1, "question": "q"}) + "\n" + json.dumps({"problem_id": 1,
                                                                                        "question": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:2: problem_id 1 already on line 1"):
        load_prompts(bad)
    bad.write_text(json.dumps({"problem_id": 1, "question": [{"role": "user"}]}) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1: 'question' must be"):
        load_prompts(bad)


def test_cli_samples_the_shipped_mapcoder_problems(tmp_path, server, capsys):
    problems = tmp_path / "apps.jsonl"
    assert main(["apps", "samples", "--out", str(problems)]) == 0
    assert len(problems.read_text().splitlines()) == 10
    out = tmp_path / "s.jsonl"
    assert main(["apps", "sample", "--problems", str(problems), "--limit", "3", "--n-sample", "2",
                 "--max-tokens", "64", "--out", str(out), "--server-url", server.url, "--model", "m",
                 "--extra-body", '{"min_p": 0.0}']) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["samples_now"] == 6
    assert [r["problem_id"] for r in _lines(out)] == [4276, 4276, 1647, 1647, 2012, 2012]
    assert all(b["max_tokens"] == 64 and b["min_p"] == 0.0 for b in server.requests)
    # the difficulties of the first three shipped problems cover every APPS group
    assert {p.difficulty for p in load_problems(problems).values() if p.problem_id in (4276, 1647, 2012)} == {
        "introductory", "interview", "competition"}


@pytest.mark.parametrize("args, message", [
    (["--n-sample", "0"], "--n-sample must be at least 1"),
    (["--extra-body", '{"seed": 1}'], "--extra-body may not set seed"),
    (["--extra-body", "[1]"], "must be a JSON object"),
])
def test_cli_rejects_bad_values_naming_the_flag(tmp_path, capsys, args, message):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"problem_id": 1, "question": "q"}) + "\n")
    rc = main(["apps", "sample", "--prompts", str(prompts), "--out", str(tmp_path / "o.jsonl"),
               "--server-url", "http://127.0.0.1:9", "--model", "m", *args])
    assert rc == 2
    assert message in capsys.readouterr().err
