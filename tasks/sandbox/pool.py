"""A pool of warm sandbox workers: the library entry point for running untrusted Python.

Usage (the APPS evaluator and the code-execution loop both call it this way)::

    with SandboxPool(workers=4) as pool:
        res = pool.run("print(input()[::-1])", stdin="abc\\n", timeout=4)
        res.status, res.stdout   # ("ok", "cba\\n")

``run`` is thread-safe and blocks until a worker is free; each worker runs one execution at a
time, so ``workers`` is the parallelism. See :mod:`tasks.sandbox.worker` for what a worker
does per execution and :class:`tasks.sandbox.limits.Limits` for the limits.

Isolation modes (``isolation=``):

* ``"namespaces"``: every worker is PID 1 of its own PID, network, IPC and mount namespaces, made
  by ``unshare`` (util-linux), and replaces ``/`` with a minimal root (:mod:`tasks.sandbox.rootfs`):
  the interpreter and its libraries, a fresh scratch tmpfs per execution, nothing of the host's
  project, data, var or sockets. Code sees only a loopback interface that is down (no network at
  all), its own processes, and its own IPC namespace per execution; leftovers are killed with
  ``kill(-1)``. Needs root (or unprivileged user namespaces, which we do not use).
* ``"none"``: plain processes. Leftovers are killed by process group and uid sweep; the network
  and the host's files are reachable. Only for machines without ``unshare``;
  :attr:`SandboxPool.isolation` says which mode is in force.
* ``"auto"`` (default): namespaces when ``unshare`` works here, else none.

When the pool runs as root each worker's children drop to a uid of their own
(``uid_base + index``), which makes RLIMIT_NPROC (``max_processes``) effective against fork
bombs and leaves the code unable to write anywhere but its working directory. Where the machine
has cgroup v1 controllers (:mod:`tasks.sandbox.cgroups`) each worker also gets its own groups:
one CPU, ``cpu_s`` and ``max_processes`` for the whole program, not per process.
"""
from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Sequence

from tasks.sandbox import cgroups
from tasks.sandbox.limits import ExecResult, Limits
from tasks.sandbox.wire import FrameReader, WireError, header_frame, write_all

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
#: The interpreter that runs model code (and the workers), unless ``SandboxPool(python=...)`` says:
#: ``$SKILLFLOW_SANDBOX_PYTHON``, else the checkout's sandbox environment built by ``make install``
#: (``.venv-sandbox``: the package versions of upstream's sandbox image, docker/sandbox/requirements.txt),
#: else the interpreter running skillflow.
SANDBOX_PYTHON_ENV = "SKILLFLOW_SANDBOX_PYTHON"
_CHECKOUT_SANDBOX_PYTHON = Path(_PROJECT_ROOT) / ".venv-sandbox" / "bin" / "python"
_UNSHARE_ARGS = ("--fork", "--pid", "--mount-proc", "--net", "--ipc", "--mount", "--kill-child")
#: Slack the pool gives a worker beyond the execution timeout before declaring it hung.
_WORKER_GRACE_S = 30.0


def sandbox_python() -> str:
    """The default interpreter of the workers; see :data:`SANDBOX_PYTHON_ENV`."""
    configured = os.environ.get(SANDBOX_PYTHON_ENV, "").strip()
    if configured:
        return configured
    if os.access(_CHECKOUT_SANDBOX_PYTHON, os.X_OK):
        return str(_CHECKOUT_SANDBOX_PYTHON)
    return sys.executable


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be provided on this machine; the message says why."""


@functools.lru_cache(maxsize=1)
def namespaces_available() -> tuple[bool, str]:
    """Whether ``unshare`` can create the namespaces the workers need, and if not, why."""
    exe = shutil.which("unshare")
    if exe is None:
        return False, "unshare (util-linux) is not installed"
    try:
        proc = subprocess.run([exe, *_UNSHARE_ARGS, "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"unshare failed to run: {exc}"
    if proc.returncode != 0:
        return False, f"unshare exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}"
    return True, exe


def _default_uid_base() -> int:
    # Distinct per pool so two pools on one host do not share RLIMIT_NPROC counters.
    return 200_000 + (os.getpid() % 4096) * 64


class _WorkerProcess:
    """One worker subprocess, its control pipes and its cgroups."""

    def __init__(self, index: int, namespaces: bool, uid: int | None, preload: Sequence[str], tmpfs_mb: int,
                 use_cgroups: bool, python: str, pythonpath: str):
        self.index = index
        self.base = tempfile.mkdtemp(prefix="skillflow-sandbox-")
        os.chmod(self.base, 0o711)
        self.groups = cgroups.create(index) if use_cgroups else {}
        config = {"base": self.base, "uid": uid, "namespaces": namespaces, "preload": list(preload),
                  "tmpfs_mb": tmpfs_mb, "project_root": _PROJECT_ROOT, "cgroups": self.groups or None}
        cmd = [python, "-m", "tasks.sandbox.worker", json.dumps(config)]
        if namespaces:
            cmd = [shutil.which("unshare") or "unshare", *_UNSHARE_ARGS, *cmd]
        # Preloaded libraries initialise in the worker, so thread counts must be set here too.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": pythonpath,
               "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     env=env, cwd="/", start_new_session=True, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.reader = FrameReader(self.proc.stdout.fileno())
        self.info: dict[str, Any] = {}

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        try:
            hello = self.reader.header(time.monotonic() + timeout)
        except (WireError, ValueError, OSError):
            hello = {"ready": False, "error": self.stderr_tail()}
        if not hello.get("ready"):
            self.kill()
            raise SandboxUnavailable(f"sandbox worker {self.index} failed to start: {hello.get('error')}")
        self.info = hello
        return hello

    def request(self, limits: dict[str, Any], code: bytes, stdin: bytes, timeout: float) -> ExecResult | None:
        """Send one execution and read its result; ``None`` when the worker died or hung."""
        assert self.proc.stdin is not None
        try:
            fd = self.proc.stdin.fileno()
            write_all(fd, header_frame({"limits": limits, "bodies": [len(code), len(stdin)]}))
            write_all(fd, code)
            write_all(fd, stdin)
        except (BrokenPipeError, OSError):
            return None
        deadline = time.monotonic() + timeout
        try:
            reply = self.reader.header(deadline)
            out_len, err_len = reply.pop("bodies")
            stdout = self.reader.text(out_len, deadline)
            stderr = self.reader.text(err_len, deadline)
        except (WireError, ValueError, OSError):
            return None
        return ExecResult(reply["status"], reply["exit_code"], reply["signal"], stdout, stderr,
                          reply["duration_s"], bool(reply.get("truncated")))

    def stderr_tail(self, limit: int = 4000) -> str:
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - limit))
        return self.stderr.read().decode("utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, wait: float = 2.0) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=wait)
        except (subprocess.TimeoutExpired, OSError):
            self.kill()
        finally:
            self._cleanup()

    def kill(self) -> None:
        try:
            # unshare --kill-child takes PID 1 of the namespace, and with it everything inside.
            self.proc.kill()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        for stream in (self.proc.stdout, self.proc.stdin):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self.stderr.close()
        shutil.rmtree(self.base, ignore_errors=True)
        if self.groups:
            cgroups.remove(self.groups)


def _tasks_only_path() -> str:
    """A folder holding only a link to skillflow's ``tasks`` package, the workers' ``PYTHONPATH``.

    Installed from a wheel, ``tasks`` sits in skillflow's site-packages beside its own sympy;
    putting that folder on the sandbox interpreter's path would hand model code skillflow's
    packages instead of the sandbox's pinned ones.
    """
    folder = tempfile.mkdtemp(prefix="skillflow-sandbox-path-")
    os.chmod(folder, 0o755)
    os.symlink(os.path.join(_PROJECT_ROOT, "tasks"), os.path.join(folder, "tasks"))
    return folder


class SandboxPool:
    """Warm workers that run untrusted Python under :class:`Limits`; see the module docstring."""

    def __init__(self, workers: int | None = None, limits: Limits | None = None, *, isolation: str = "auto",
                 preload: Sequence[str] = (), uid_base: int | None = None, tmpfs_mb: int = 256,
                 start_timeout: float = 60.0, python: str | None = None):
        if isolation not in ("auto", "namespaces", "none"):
            raise ValueError(f"isolation must be 'auto', 'namespaces' or 'none', got {isolation!r}")
        self.limits = limits or Limits()
        size = workers or max(1, os.cpu_count() or 1)
        if size < 1:
            raise ValueError(f"workers must be >= 1, got {size}")
        ok, why = namespaces_available() if isolation != "none" else (False, "isolation='none' requested")
        if isolation == "namespaces" and not ok:
            raise SandboxUnavailable(f"isolation='namespaces' requested but {why}")
        self._namespaces = ok
        self._why_not_namespaces = None if ok else why
        self._root = os.geteuid() == 0
        self._cgroups, why_not = cgroups.available() if isolation != "none" else (False, "isolation='none' requested")
        self._why_not_cgroups = None if self._cgroups else why_not
        self._uid_base = uid_base if uid_base is not None else _default_uid_base()
        self._preload = tuple(preload)
        self._python = python or sandbox_python()
        if not (os.path.isfile(self._python) and os.access(self._python, os.X_OK)):
            where = "python=" if python else (f"${SANDBOX_PYTHON_ENV}" if os.environ.get(SANDBOX_PYTHON_ENV, "").strip()
                                             else "the default")
            raise SandboxUnavailable(f"sandbox interpreter {self._python!r} ({where}) is not an executable file")
        self._tmpfs_mb = tmpfs_mb
        self._pythonpath = _tasks_only_path()
        self._idle: queue.Queue[_WorkerProcess] = queue.Queue()
        self._all: list[_WorkerProcess] = []
        self._lock = threading.Lock()
        self._closed = False
        started = [self._spawn(i) for i in range(size)]
        try:
            for w in started:
                w.wait_ready(start_timeout)
        except BaseException:
            for w in started:
                w.kill()
            shutil.rmtree(self._pythonpath, ignore_errors=True)
            raise
        for w in started:
            self._idle.put(w)
        self._finalizer = weakref.finalize(self, SandboxPool._close_all, self._all, self._pythonpath)

    def _spawn(self, index: int) -> _WorkerProcess:
        # Dropping privileges needs the namespace set-up that keeps the interpreter readable.
        uid = self._uid_base + index if self._root and self._namespaces else None
        w = _WorkerProcess(index, self._namespaces, uid, self._preload, self._tmpfs_mb, self._cgroups, self._python,
                           self._pythonpath)
        with self._lock:
            self._all.append(w)
        return w

    @property
    def size(self) -> int:
        return len([w for w in self._all if w.alive()])

    @property
    def uids(self) -> list[int]:
        """The uids executions run as (empty when privileges are not dropped); for audits and tests."""
        return [w.info["uid"] for w in self._all if w.info.get("uid") is not None]

    @property
    def isolation(self) -> dict[str, Any]:
        """What containment is in force, for logs and the service's ``/health``."""
        sample = self._all[0].info if self._all else {}
        whole_program = self._cgroups and bool(sample.get("cgroups"))
        return {
            "namespaces": self._namespaces,
            "network": "none (empty network namespace)" if self._namespaces else "host network reachable",
            "why_no_namespaces": self._why_not_namespaces,
            "uid_drop": self._root and self._namespaces,
            "minimal_root": bool(sample.get("minimal_root")),
            "ipc": ("a new IPC namespace per execution" if sample.get("ipc_per_execution")
                    else "host IPC namespace"),
            "cgroups": whole_program,
            "why_no_cgroups": self._why_not_cgroups,
            "cpu_limit": ("one CPU and cpu_s for all processes of a program (cgroup)" if whole_program
                          else "cpu_s per process (RLIMIT_CPU)"),
            "process_limit": ("max_processes per program (pids cgroup) and per worker uid (RLIMIT_NPROC)"
                              if whole_program and self._root and self._namespaces
                              else "max_processes per program (pids cgroup)" if whole_program
                              else "RLIMIT_NPROC per worker uid" if self._root and self._namespaces
                              else "not enforced (needs root and namespaces, or cgroups)"),
            "inode_limit": ("max_files per execution (scratch tmpfs)" if sample.get("minimal_root")
                            else "not enforced (needs namespaces)"),
            "exposed": sample.get("exposed", []),
            "preloaded": sample.get("preloaded", {}),
            "python": {"executable": self._python, **sample.get("python", {})},
        }

    def run(self, code: str, *, stdin: str | None = None, timeout: float | None = None,
            limits: Limits | None = None) -> ExecResult:
        """Run ``code`` as ``__main__`` in a fresh forked child and return its :class:`ExecResult`.

        ``timeout`` overrides ``limits.timeout_s`` (and the CPU backstop with it, unless
        ``limits.cpu_s`` is set). ``stdin`` is what the program reads from standard input.
        Never raises for anything the code does; raises ``RuntimeError`` after :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("SandboxPool.run called after close()")
        lim = (limits or self.limits).replace(timeout_s=timeout)
        wire_limits = {**lim.to_dict(), "cpu_s": lim.effective_cpu_s}
        # surrogatepass: any str survives the trip, as it did as JSON text.
        code_bytes = code.encode("utf-8", "surrogatepass")
        stdin_bytes = (stdin or "").encode("utf-8", "surrogatepass")
        worker = self._idle.get()
        result = None
        try:
            result = worker.request(wire_limits, code_bytes, stdin_bytes, lim.timeout_s + _WORKER_GRACE_S)
        finally:
            if result is None or not worker.alive():
                worker = self._replace(worker)
            if worker is not None:
                self._idle.put(worker)
        if result is None:
            return ExecResult("sandbox_error", None, None, "", "sandbox worker died or hung; it was restarted",
                              0.0, False)
        return result

    def _replace(self, worker: _WorkerProcess) -> _WorkerProcess | None:
        tail = worker.stderr_tail() if not worker.stderr.closed else ""
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        if self._closed:
            return None
        fresh = self._spawn(worker.index)
        try:
            fresh.wait_ready(60.0)
        except SandboxUnavailable as exc:
            print(f"sandbox: could not restart worker {worker.index}: {exc}; last stderr: {tail}", file=sys.stderr)
            return None
        return fresh

    def close(self) -> None:
        """Stop all workers; every process they started dies with them."""
        self._closed = True
        self._finalizer()

    @staticmethod
    def _close_all(workers: list[_WorkerProcess], pythonpath: str) -> None:
        for w in list(workers):
            w.close()
        workers.clear()
        shutil.rmtree(pythonpath, ignore_errors=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_once(code: str, *, stdin: str | None = None, limits: Limits | None = None) -> ExecResult:
    """Run one program in a single-worker pool; convenient for scripts, slow for loops."""
    with SandboxPool(workers=1, limits=limits) as pool:
        return pool.run(code, stdin=stdin)

