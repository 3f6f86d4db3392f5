"""skillflow generate against the real local model server, with code running in the sandbox
service, then skillflow grade: every line complete and graded. SmolLM2's accuracy is near zero;
what is checked is that the whole chain is real and consistent."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.stack.config import smollm2_gguf
from devtools.stack.layout import Layout

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture()
def servers(tmp_path):
    gguf = smollm2_gguf(Layout.discover())
    if not gguf:
        pytest.fail("the SmolLM2 GGUF file is missing: run `make model`")
    model_port, sandbox_port = _free_port(), _free_port()
    bin_dir = Path(sys.executable).parent
    procs = [
        subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "smollm2",
                          "--host", "127.0.0.1", "--port", str(model_port), "--n_ctx", "4096"],
                         stdout=open(tmp_path / "model.log", "w"), stderr=subprocess.STDOUT),
        subprocess.Popen([str(bin_dir / "skillflow"), "sandbox", "serve", "--host", "127.0.0.1", "--port",
                          str(sandbox_port)], stdout=open(tmp_path / "sandbox.log", "w"), stderr=subprocess.STDOUT),
    ]
    try:
        _wait(f"http://127.0.0.1:{model_port}/v1/models", procs[0])
        _wait(f"http://127.0.0.1:{sandbox_port}/health", procs[1])
        yield f"http://127.0.0.1:{model_port}", f"http://127.0.0.1:{sandbox_port}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_generate_with_code_execution_then_grade(servers, tmp_path):
    model_url, sandbox_url = servers
    cli = str(Path(sys.executable).parent / "skillflow")
    data = tmp_path / "data"
    subprocess.run([cli, "data", "samples", "gsm8k", "--out", str(data)], check=True, capture_output=True)
    out_dir = tmp_path / "out"
    gen = subprocess.run([cli, "generate", "--server-url", model_url, "--model", "smollm2",
                          "--input", str(data / "gsm8k" / "test.jsonl"), "--output-dir", str(out_dir),
                          # Five code-only solutions as examples: SmolLM2 then writes code blocks
                          # (greedy decoding, so the same ones on every run), which the sandbox runs.
                          "--prompt", "openmathinstruct/base", "--num-few-shots", "5",
                          "--examples-type", "gsm8k_only_code", "--greedy", "--limit", "5",
                          "--max-code-executions", "6", "--no-stop-on-code-error", "--sandbox-url", sandbox_url,
                          "--concurrency", "2", "--tokens-to-generate", "256"],
                         capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert gen.returncode == 0, gen.stderr[-3000:]
    output = out_dir / "output-greedy.jsonl"
    assert Path(str(output) + ".done").exists()
    graded = subprocess.run([cli, "grade", str(output)], capture_output=True, text=True, timeout=300)
    assert graded.returncode == 0, graded.stderr[-2000:]
    lines = [json.loads(x) for x in output.read_text().splitlines()]
    assert len(lines) == 5
    for line in lines:
        assert {"question", "expected_answer", "generation", "error_message", "predicted_answer",
                "is_correct"} <= set(line)
        assert isinstance(line["is_correct"], bool) and line["generation"]
    executed = [x for x in lines if "<llm-code-output>" in x["generation"]]
    # The examples make the model write code; a run in which no line ran any would test nothing.
    assert executed, "no generation ran code in the sandbox: " + repr([x["generation"][:200] for x in lines])
    for line in executed:
        # The output block came from the sandbox: error_message is no longer the not-executed marker.
        assert line["error_message"] != "<not_executed>"
