"""The two ways a generation step runs: ``nemo_skills`` (upstream) and ``native`` (ours).

``nemo_skills`` reproduces NeMo-Skills main@9b7f9d57: every task starts the inference server
(TensorRT-LLM wants one task per GPU), task 0 waits for the server's ready line, runs the chained
``generate_solutions.py`` / ``evaluate_results.py`` commands, then stops the servers; the code
sandbox image runs beside it as a sidecar on every node (docs/recipes/openmath.md §1.3-§1.4).

``native`` starts one OpenAI-compatible server (vLLM on a GPU cluster, llama-cpp-python's
server on the local profile, or uses an ``external`` one), waits until it answers,
runs ``skillflow generate`` against it with ``skillflow sandbox serve`` as the sidecar, and stops
the server when the step ends, whatever the outcome.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tasks.profiles import ClusterProfile
from tasks.slurm.spec import Sidecar
from tasks.steps.base import (SANDBOX_PORT_EXPR, SERVER_PORT_EXPR, WAIT_HTTP_FUNCTION, RecipeError, positive, q,
                              words)

ENGINES = ("nemo_skills", "native")
NEMO_SKILLS_SERVER_TYPES = {"tensorrt_llm": "trtllm", "vllm": "vllm", "nemo": "nemo"}  # -> profile image key
NATIVE_SERVER_KINDS = ("vllm", "llama_cpp", "external")
# Where the NeMo-Skills client looks for its sandbox when nothing overrides it (docs/recipes/openmath.md §1.1).
NEMO_SKILLS_SANDBOX_PORT = 6000


@dataclass(frozen=True)
class NemoSkillsServer:
    """Upstream inference server settings (``--server_type``, ``--num_gpus``, ``--num_nodes``)."""

    server_type: str = "tensorrt_llm"
    num_gpus: int = 8
    num_nodes: int = 1
    # Seconds to wait for the server's ready line before giving up.
    startup_timeout_s: int = 3600


@dataclass(frozen=True)
class NativeServer:
    """The server the native engine talks to.

    ``kind`` None picks ``llama_cpp`` on a profile of CPU stand-ins (``slurm.accelerator: cpu``,
    the local one) and ``vllm`` elsewhere; ``external`` uses ``url`` and starts nothing.
    """

    kind: str | None = None
    served_model_name: str = "model"
    num_gpus: int = 1
    url: str | None = None
    # llama-cpp-python's server (``python -m llama_cpp.server``) serves one request at a time.
    parallel: int = 1
    ctx_size: int = 4096
    startup_timeout_s: int = 1800
    extra_args: tuple[str, ...] = ()

    def resolved_kind(self, profile: ClusterProfile) -> str:
        kind = self.kind or ("llama_cpp" if profile.cpu_stand_ins else "vllm")
        if kind not in NATIVE_SERVER_KINDS:
            raise RecipeError(f"server.kind={kind!r} must be one of {', '.join(NATIVE_SERVER_KINDS)}")
        if kind == "external" and not self.url:
            raise RecipeError("server.url is required when server.kind is 'external'")
        return kind


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise RecipeError(f"engine={engine!r} must be one of {', '.join(ENGINES)}")
    return engine


# --------------------------------------------------------------------------- nemo_skills engine

def nemo_skills_server(server: NemoSkillsServer, model: str, code: str, model_name: str) -> tuple[str, int, str]:
    """(server start command, tasks per node, ready line) as upstream ``get_server_command``."""
    n = positive("server.num_gpus", server.num_gpus)
    nodes = positive("server.num_nodes", server.num_nodes)
    if server.server_type == "tensorrt_llm":
        # The env flag is upstream's, needed for stable large deployments.
        cmd = f"FORCE_NCCL_ALL_REDUCE_STRATEGY=1 python {q(code + '/nemo_skills/inference/server/serve_trt.py')} " \
              f"--model_path {q(model)}"
        return cmd, n, "Running on all addresses"
    if server.server_type == "vllm":
        cmd = (f"NUM_GPUS={n} bash {q(code + '/nemo_skills/inference/server/serve_vllm.sh')} "
               f"{q(model + '/')} {q(model_name)} 0 openai 5000")
        return cmd, 1, "Uvicorn running"
    if server.server_type == "nemo":
        cmd = (f"python {q(code + '/nemo_skills/inference/server/serve_nemo.py')} {q('gpt_model_file=' + model)} "
               f"trainer.devices={n} trainer.num_nodes={nodes} tensor_model_parallel_size={n} "
               f"pipeline_model_parallel_size={nodes}")
        return cmd, n, "Running on all addresses"
    raise RecipeError(f"server.server_type={server.server_type!r} must be one of "
                      f"{', '.join(NEMO_SKILLS_SERVER_TYPES)}")


def nemo_skills_image(profile: ClusterProfile, server: NemoSkillsServer) -> str | None:
    return profile.image(NEMO_SKILLS_SERVER_TYPES[server.server_type])


def nemo_skills_step(server_cmd: str, ready_line: str, code: str, work: Sequence[str], timeout_s: int,
                     mkdirs: Sequence[str] = ()) -> str:
    """The per-task script: all tasks serve, task 0 also waits, works and stops the servers.

    Differences from upstream are listed in ``openmath.KNOWN_FIXES``: the wait polls the log with
    a time limit instead of ``tail -n0 -f | sed q``, and the servers are stopped and task 0's
    status kept even when a command fails.
    """
    log = '"/tmp/server_logs-${SLURM_JOB_ID}.txt"'
    mk = f"mkdir -p {words(*mkdirs)}\n  " if mkdirs else ""
    chain = " && \\\n    ".join(work)
    return (
        "nvidia-smi || true\n"
        f"cd {q(code)} || exit 1\n"
        f'export PYTHONPATH="${{PYTHONPATH:-}}:"{q(code)}\n'
        'if [ "$SLURM_PROCID" -eq 0 ]; then\n'
        f"  {mk}{{ {server_cmd} 2>&1 | tee {log} & }}\n"
        "  SKILLFLOW_SERVER_PID=$!\n"
        '  echo "Waiting for the server to start"\n'
        f"  deadline=$((SECONDS + {int(timeout_s)}))\n"
        f"  until grep -q {q(ready_line)} {log} 2>/dev/null; do\n"
        '    if ! kill -0 "$SKILLFLOW_SERVER_PID" 2>/dev/null; then echo "skillflow: server exited" >&2; exit 1; fi\n'
        '    if [ "$SECONDS" -ge "$deadline" ]; then\n'
        '      echo "skillflow: server not ready in time" >&2; pkill -f nemo_skills/inference/server; exit 1\n'
        "    fi\n"
        '    sleep "${SKILLFLOW_POLL_S:-5}"\n'
        "  done\n"
        f"  {chain}\n"
        "  SKILLFLOW_RC=$?\n"
        "  pkill -f nemo_skills/inference/server\n"
        '  exit "$SKILLFLOW_RC"\n'
        "else\n"
        # Other tasks only serve; their server is stopped by task 0, which is not a failure.
        f"  {server_cmd} || true\n"
        "fi\n"
    )


def nemo_skills_sandbox(profile: ClusterProfile) -> Sidecar:
    """The code sandbox beside a NeMo-Skills job.

    With containers it is the pinned sandbox image, started as upstream does. Without containers
    there is no image to run, so ``skillflow sandbox serve`` takes its place: it speaks the same
    ``POST /execute`` protocol on the port the NeMo-Skills client expects.
    """
    if profile.runtime != "none":
        return Sidecar(name="sandbox", image=profile.image("sandbox"), command="/entrypoint.sh && /start.sh")
    return Sidecar(name="sandbox", command=(
        f'exec "$SKILLFLOW_CLI" sandbox serve --host 127.0.0.1 --port {NEMO_SKILLS_SANDBOX_PORT}'))


# --------------------------------------------------------------------------------- native engine

def native_sandbox(profile: ClusterProfile) -> Sidecar:
    """``skillflow sandbox serve`` on the job's own port, never on a GPU.

    With a container runtime it runs in the profile's sandbox image (where ``skillflow`` exists,
    and the only place model-written code may run), started through the image's ``/start.sh``,
    which binds loopback inside a Slurm job and reads the port from ``SKILLFLOW_SANDBOX_PORT``.
    Without containers it is the node's own ``skillflow`` (``paths.skillflow``).
    """
    port = f"export SKILLFLOW_SANDBOX_PORT={SANDBOX_PORT_EXPR}\n"
    if profile.runtime != "none":
        return Sidecar(name="sandbox", image=profile.image("sandbox"),
                       command=port + "/entrypoint.sh && exec /start.sh")
    return Sidecar(name="sandbox", command=(
        port + 'exec "$SKILLFLOW_CLI" sandbox serve --host 127.0.0.1 --port "$SKILLFLOW_SANDBOX_PORT"'))


def native_image(profile: ClusterProfile, kind: str, gpu_key: str = "vllm") -> str | None:
    """The image of a native generation step: llama.cpp's server image (``model_server``, which
    also carries ``skillflow``) for ``llama_cpp``, else the GPU server's (``gpu_key``: vLLM's for
    the OpenMath steps, OpenRLHF's for APPS sampling); None on a profile without containers."""
    if profile.runtime == "none":
        return None
    return profile.image("model_server" if kind == "llama_cpp" else gpu_key)


def native_server_command(server: NativeServer, kind: str, model: str) -> str:
    ctx = positive("server.ctx_size", server.ctx_size)
    extra = (" " + words(*server.extra_args)) if server.extra_args else ""
    if kind == "vllm":
        return ('"$SKILLFLOW_PYTHON" -m vllm.entrypoints.openai.api_server '
                f"--model {q(model)} --served-model-name {q(server.served_model_name)} "
                '--host 127.0.0.1 --port "$SKILLFLOW_SERVER_PORT" '
                f"--tensor-parallel-size {positive('server.num_gpus', server.num_gpus)} "
                f"--max-model-len {ctx} --disable-log-requests{extra}")
    positive("server.parallel", server.parallel)
    return ('"$SKILLFLOW_PYTHON" -m llama_cpp.server '
            f"--model {q(model)} --model_alias {q(server.served_model_name)} "
            f'--host 127.0.0.1 --port "$SKILLFLOW_SERVER_PORT" --n_ctx {ctx}{extra}')


def health_path(kind: str) -> str:
    """vLLM answers ``/health``; llama-cpp-python's server has no such route, but ``/v1/models``."""
    return "/v1/models" if kind == "llama_cpp" else "/health"


def native_step(server: NativeServer, profile: ClusterProfile, model: str | None, work: Sequence[str],
                mkdirs: Sequence[str] = (), sandbox: bool = True) -> str:
    """Start (or find) the server, wait for it (and, with ``sandbox``, for the code sandbox), run
    ``work``; the server stops on exit."""
    kind = server.resolved_kind(profile)
    ports = f"SKILLFLOW_SERVER_PORT={SERVER_PORT_EXPR}" + (f" SKILLFLOW_SANDBOX_PORT={SANDBOX_PORT_EXPR}" if sandbox else "")
    lines = [f"export {ports}", WAIT_HTTP_FUNCTION.rstrip("\n")]
    if mkdirs:
        lines.append(f"mkdir -p {words(*mkdirs)} || exit 1")
    if kind == "external":
        lines.append(f"export SKILLFLOW_SERVER_URL={q(server.url.rstrip('/'))}")
        lines.append(f'skillflow_wait_http "$SKILLFLOW_SERVER_URL/health" "model server" '
                     f"{int(server.startup_timeout_s)} || exit 1")
    else:
        if model is None:
            raise RecipeError(f"model_path is required to start a {kind} server")
        lines += [
            'export SKILLFLOW_SERVER_URL="http://127.0.0.1:$SKILLFLOW_SERVER_PORT"',
            'SKILLFLOW_SERVER_LOG="$SKILLFLOW_WORKDIR/logs/${SLURM_JOB_NAME}-server-${SLURM_JOB_ID}.log"',
            'mkdir -p "$SKILLFLOW_WORKDIR/logs"',
            f'{native_server_command(server, kind, model)} >"$SKILLFLOW_SERVER_LOG" 2>&1 &',
            "SKILLFLOW_SERVER_PID=$!",
            "trap 'kill \"$SKILLFLOW_SERVER_PID\" 2>/dev/null' EXIT",
            f'skillflow_wait_http "$SKILLFLOW_SERVER_URL{health_path(kind)}" "model server" {int(server.startup_timeout_s)} '
            '"$SKILLFLOW_SERVER_PID" || { tail -n 50 "$SKILLFLOW_SERVER_LOG" >&2; exit 1; }',
        ]
    if sandbox:
        lines.append('skillflow_wait_http "http://127.0.0.1:$SKILLFLOW_SANDBOX_PORT/health" sandbox 300 || exit 1')
    lines.append(" && \\\n  ".join(work))
    return "\n".join(lines) + "\n"


def native_generate(served_model_name: str, input_file: str, output_dir: str, options: Sequence[str],
                    shell_tail: str = "") -> str:
    """One ``skillflow generate`` call against the step's server and sandbox.

    ``shell_tail`` is trusted shell text from this package (e.g. a ``$SKILLFLOW_SEED`` expansion).
    """
    return ('"$SKILLFLOW_CLI" generate --server-url "$SKILLFLOW_SERVER_URL" '
            f"--model {q(served_model_name)} --input {q(input_file)} --output-dir {q(output_dir)} "
            + words(*options) + (f" {shell_tail}" if shell_tail else "")
            + ' --sandbox-url "http://127.0.0.1:$SKILLFLOW_SANDBOX_PORT"')
