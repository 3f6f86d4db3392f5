"""``skillflow generate``: the code-execution loop of docs/recipes/openmath.md §5.2, output files, resume, seeds.

The completions server here is a TEST DOUBLE for model behaviour: a loopback HTTP server that
returns predetermined texts, because a real small model (135M parameters) cannot be made to write
code blocks, errors and answers deterministically. It keeps OpenAI-server behaviour that matters
to the loop: it cuts the text at the first stop string, leaves that string out, and reports
``finish_reason: "stop"`` -- with ``stop_reason`` like vLLM, or without it like llama.cpp.
The sandbox is real (a local pool).
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.generation.client import CompletionsClient, Sampling
from tasks.generation.code_loop import CodeExecutionConfig, cut_at_stop_phrases, generate_with_code
from tasks.generation.runner import GenerationSettings, generate_file, valid_prefix
from tasks.prompts import load_prompt, render_prompt
from tasks.sandbox import Limits, LocalSandbox, SandboxPool
from tasks.sandbox.session import PROGRAM_PRELOAD

CODE_42 = "Let me compute.\n<llm-code>\nx = 6 * 7\nx\n</llm-code>\nSo the answer is \\boxed{42}."
SCRIPTS = {
    # question tag -> the text the "model" writes on its k-th call for that question
    "Q-simple": [CODE_42, "So the answer is \\boxed{42}."],
    "Q-session": ["<llm-code>\ny = 5\nprint(y)\n</llm-code>", "Then\n<llm-code>\nprint(y * 2)\n</llm-code>",
                  "Answer \\boxed{10}."],
    "Q-error": ["<llm-code>\nprint(1/0)\n</llm-code>", "Fixed:\n<llm-code>\nprint(3)\n</llm-code>", "\\boxed{3}"],
    "Q-loop": ["<llm-code>\nprint(1)\n</llm-code>"] * 10,
    "Q-text": ["No code here, \\boxed{7}."],
}


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, report_stop_reason: bool):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.report_stop_reason = report_stop_reason
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(body)
        prompt = body["prompt"]
        tag = next(t for t in SCRIPTS if t in prompt)
        call = prompt.split("Assistant:\n", 1)[1].count("</llm-code>")
        text = SCRIPTS[tag][call]
        hits = [(text.find(s), s) for s in body.get("stop", []) if s in text]
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
        if hits:
            at, stop = min(hits)
            choice["text"] = text[:at]
            if self.server.report_stop_reason:
                choice["stop_reason"] = stop
        data = json.dumps({"choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sandbox():
    with SandboxPool(workers=2, limits=Limits(timeout_s=30), preload=PROGRAM_PRELOAD) as pool:
        yield LocalSandbox(pool)


@pytest.fixture(params=[True, False], ids=["vllm-like", "llamacpp-like"])
def server(request):
    srv = ScriptedServer(report_stop_reason=request.param)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def run_one(server, sandbox, tag, **config):
    client = CompletionsClient(server.url, "scripted")

    def complete(text, stop):
        return client.complete(text, max_tokens=64, sampling=Sampling.greedy(), stop=stop)

    prompt = render_prompt("openmathinstruct/sft", {"question": tag})
    return generate_with_code(prompt, complete, sandbox, CodeExecutionConfig(**config))


def test_code_block_runs_and_its_output_is_appended(server, sandbox):
    out = run_one(server, sandbox, "Q-simple")
    assert out == {"generation": "Let me compute.\n<llm-code>\nx = 6 * 7\nx\n</llm-code>\n<llm-code-output>\n42\n"
                                 "</llm-code-output>\nSo the answer is \\boxed{42}.",
                   "error_message": ""}
    first, second = server.requests
    assert first["stop"] == ["</llm-code>"] and first["temperature"] == 0.0 and first["top_k"] == 1
    assert second["prompt"].endswith("</llm-code-output>\n")


def test_later_blocks_see_earlier_state(server, sandbox):
    out = run_one(server, sandbox, "Q-session", max_code_executions=6)
    assert "<llm-code-output>\n5\n</llm-code-output>" in out["generation"]
    assert "<llm-code-output>\n10\n</llm-code-output>\nAnswer \\boxed{10}." in out["generation"]
    assert out["error_message"] == ""


def test_error_stops_generation_when_asked(server, sandbox):
    out = run_one(server, sandbox, "Q-error", stop_on_code_error=True)
    assert out == {"generation": "<llm-code>\nprint(1/0)\n</llm-code>",
                   "error_message": "Execution error: division by zero"}
    assert len(server.requests) == 1


def test_error_output_is_shown_and_a_later_success_resets_the_message(server, sandbox):
    out = run_one(server, sandbox, "Q-error", stop_on_code_error=False, max_code_executions=6)
    gen = out["generation"]
    # The model sees IPython's coloured traceback, as from upstream's sandbox (test_sandbox_fidelity.py).
    plain = re.sub(r"\x1b\[[0-9;]*m", "", gen)
    assert "</llm-code>\n<llm-code-output>\n" + "-" * 75 + "\nZeroDivisionError" in plain
    assert "Traceback (most recent call last)" in plain
    assert "ZeroDivisionError: division by zero\n</llm-code-output>\nFixed:" in plain
    assert gen.endswith("<llm-code-output>\n3\n</llm-code-output>\n\\boxed{3}")
    assert out["error_message"] == ""


def test_max_code_executions_stops_after_the_last_output(server, sandbox):
    out = run_one(server, sandbox, "Q-loop", max_code_executions=2, stop_on_code_error=False)
    assert out["error_message"] == "Max code executions reached"
    assert out["generation"].count("<llm-code-output>\n1\n</llm-code-output>\n") == 2
    assert out["generation"].endswith("</llm-code-output>\n")
    assert len(server.requests) == 2


def test_no_code_keeps_not_executed(server, sandbox):
    assert run_one(server, sandbox, "Q-text") == {"generation": "No code here, \\boxed{7}.",
                                                  "error_message": "<not_executed>"}


def test_prompt_stop_phrases_cut_the_final_generation():
    assert cut_at_stop_phrases("a\n\n\n\n\n\nQuestion: b", ["\n\n\n\n\n\n"]) == "a"
    assert cut_at_stop_phrases("abc", []) == "abc"


@pytest.fixture()
def vllm_server():
    srv = ScriptedServer(report_stop_reason=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


ROWS = [{"question": tag, "expected_answer": ans, "id": i}
        for i, (tag, ans) in enumerate([("Q-simple", "42"), ("Q-session", "10"), ("Q-text", "7"), ("Q-error", "3")])]


def _generate(server, sandbox, path, sampling, skip_filled=False, concurrency=4):
    settings = GenerationSettings(prompt=load_prompt("openmathinstruct/sft"), concurrency=concurrency,
                                  code=CodeExecutionConfig(max_code_executions=6, stop_on_code_error=False))
    prompts = [settings.prompt.render(r) for r in ROWS]
    client = CompletionsClient(server.url, "scripted")
    return generate_file(ROWS, prompts, path, client, sampling, sandbox, settings, skip_filled=skip_filled)


def test_output_lines_keep_input_order_and_fields(vllm_server, sandbox, tmp_path):
    out = tmp_path / "output-greedy.jsonl"
    assert _generate(vllm_server, sandbox, out, Sampling.greedy()) == 4
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [0, 1, 2, 3]
    assert [line["predicted_answer"] for line in lines] == ["42", "10", "7", "3"]
    assert set(lines[0]) == {"question", "expected_answer", "id", "generation", "error_message", "predicted_answer"}
    assert lines[2]["error_message"] == "<not_executed>"
    assert json.loads((tmp_path / "output-greedy.jsonl.done").read_text())["lines"] == 4


def test_resume_rewrites_a_truncated_last_line(vllm_server, sandbox, tmp_path):
    out = tmp_path / "output-rs3.jsonl"
    _generate(vllm_server, sandbox, out, Sampling.random(3))
    full = out.read_bytes()
    lines = full.splitlines(keepends=True)
    out.write_bytes(lines[0] + lines[1] + lines[2][:15])  # crash in the middle of line 3
    (tmp_path / "output-rs3.jsonl.done").unlink()
    assert valid_prefix(out) == (2, len(lines[0] + lines[1]))
    vllm_server.requests.clear()
    assert _generate(vllm_server, sandbox, out, Sampling.random(3), skip_filled=True) == 2
    assert out.read_bytes() == full
    assert {r["prompt"].split("User:\n")[1].split("\n")[0] for r in vllm_server.requests} == {"Q-text", "Q-error"}
    assert all(r["seed"] == 3 and r["temperature"] == 0.7 and r["top_p"] == 0.95 and "top_k" not in r
               for r in vllm_server.requests)
    vllm_server.requests.clear()
    assert _generate(vllm_server, sandbox, out, Sampling.random(3), skip_filled=True) == 0
    assert vllm_server.requests == []


def test_cli_writes_one_file_per_seed(vllm_server, tmp_path, capsys):
    from tasks.cli import main

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]))
    rc = main(["generate", "--server-url", vllm_server.url + "/v1", "--model", "m", "--input", str(data),
               "--output-dir", str(tmp_path / "out"), "--seeds", "0-1", "--temperature", "1.0",
               "--max-code-executions", "6", "--no-stop-on-code-error", "--sandbox-workers", "1",
               "--sandbox-preload", "", "--concurrency", "2", "--progress-interval", "0"])
    assert rc == 0
    for seed in (0, 1):
        path = tmp_path / "out" / f"output-rs{seed}.jsonl"
        assert len(path.read_text().splitlines()) == 3 and (tmp_path / "out" / f"output-rs{seed}.jsonl.done").exists()
    assert {r["seed"] for r in vllm_server.requests} == {0, 1}
    assert all(r["temperature"] == 1.0 for r in vllm_server.requests)
    err = capsys.readouterr().err
    assert "generate output-rs0.jsonl: 3/3 done" in err


def test_cli_reports_bad_input_line(tmp_path, capsys):
    from tasks.cli import main

    data = tmp_path / "in.jsonl"
    data.write_text('{"question": "a"}\n{"problem": "b"}\n')
    rc = main(["generate", "--server-url", "http://127.0.0.1:9", "--model", "m", "--input", str(data),
               "--output-dir", str(tmp_path / "out")])
    assert rc == 2
    assert f"{data}:2: question for prompt openmathinstruct/sft lacks field 'question'" in capsys.readouterr().err
