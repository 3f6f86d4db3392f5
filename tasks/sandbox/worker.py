"""A warm sandbox worker: one long-lived Python process that forks a child per execution.

Why fork from a warm interpreter: starting Python costs tens of milliseconds (and importing
sympy hundreds); a fork of an interpreter that is already up costs about one. The pool
(:mod:`tasks.sandbox.pool`) starts the worker, normally as PID 1 of fresh PID, network and mount
namespaces (``unshare``), talks to it over stdin/stdout with one JSON object per line, and sends
it one execution at a time.

Per execution the worker makes a private working directory, forks, and the child (before running
any untrusted code) starts a new session, points fds 0/1/2 at a stdin file and two output files,
closes every other fd (so the code cannot reach the worker's control pipe), sets rlimits, drops to
the worker's own uid when the worker is root, clears the environment and ``exec``s the code as
``__main__``. The worker waits on a pidfd with the wall-clock deadline and afterwards kills every
process the execution left behind:

* as PID 1 of its own PID namespace, ``kill(-1, SIGKILL)`` reaches exactly the processes in that
  namespace, i.e. everything the execution spawned, even ones that called ``setsid`` or
  double-forked; ``waitpid(-1)`` failing with ECHILD then proves nothing is left, because every
  surviving process would have PID 1 as an ancestor;
* without namespaces it kills the child's process group and (when it dropped privileges) sweeps
  the dedicated uid with a helper that runs ``kill(-1)`` as that uid.

This module is run as ``python -m tasks.sandbox.worker CONFIG_JSON`` and imports only the
standard library, so that the fork carries as little state as possible.
"""
from __future__ import annotations

import builtins
import ctypes
import json
import linecache
import os
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile  # imported here, not in the child: an import per execution costs milliseconds
import time
import traceback
import types
from typing import Any

_MAXFD = 65536
_MS_NOSUID, _MS_NODEV, _MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC = 2, 4, 1, 32, 4096, 16384
#: World-writable places a dropped uid could still write to; made read-only inside the namespace.
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue")
_CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def _blocked_ancestor(path: str) -> str | None:
    """The first directory on the way to ``path`` that others may not traverse (e.g. ``/root``)."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        try:
            st = os.stat(current)
        except OSError:
            return None
        if not st.st_mode & 0o001:
            return current
    return None


def _expose_interpreter() -> list[str]:
    """Make the Python installation readable by the dropped uid without opening its parents.

    Interpreters often live in a private home (pyenv under ``/root``, mode 0700). For each such
    private directory we mount an empty tmpfs over it, which also hides everything else in it
    (credentials, shell history), and bind the needed installation directories back, read-only.
    """
    wanted = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, *sys.path) if p}
    wanted = sorted(p for p in wanted if os.path.isdir(p))
    chosen: list[str] = []
    for path in wanted:
        if not any(path == c or path.startswith(c + "/") for c in chosen) and _blocked_ancestor(path):
            chosen.append(path)
    by_blocker: dict[str, list[str]] = {}
    for path in chosen:
        by_blocker.setdefault(_blocked_ancestor(path) or "", []).append(path)
    exposed = []
    for blocker, paths in by_blocker.items():
        fds = {path: os.open(path, os.O_PATH) for path in paths}
        _mount("tmpfs", blocker, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
        for path, fd in fds.items():
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC, None)
            _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
            os.close(fd)
            exposed.append(path)
    return exposed


def _setup_namespace(base: str, tmpfs_mb: int, expose: bool) -> dict[str, Any]:
    """Inside fresh namespaces: a private tmpfs for work dirs, shared writable dirs made read-only."""
    exposed = _expose_interpreter() if expose else []
    _mount("tmpfs", base, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={tmpfs_mb}m,mode=0711")
    readonly = []
    for path in _WORLD_WRITABLE:
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        # A recursive bind keeps the tmpfs just mounted on ``base`` (inside /tmp) writable,
        # because read-only is a per-mount flag and only the top of the copy is remounted.
        _mount(path, path, None, _MS_BIND | _MS_REC, None)
        _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
        readonly.append(path)
    return {"readonly_dirs": readonly, "exposed": exposed, "interfaces": [name for _, name in socket.if_nameindex()]}


class Worker:
    """State of one worker process; see the module docstring."""

    def __init__(self, config: dict[str, Any]):
        self.base: str = config["base"]
        self.uid: int | None = config.get("uid")
        self.namespaces: bool = bool(config.get("namespaces"))
        self.counter = 0
        self.info: dict[str, Any] = {"pid": os.getpid(), "namespaces": self.namespaces, "uid": self.uid}
        if self.namespaces:
            if os.getpid() != 1:
                raise RuntimeError(f"namespaced worker must be PID 1, is {os.getpid()}")
            self.info.update(_setup_namespace(self.base, int(config.get("tmpfs_mb", 256)), self.uid is not None))
        else:
            _PR_SET_CHILD_SUBREAPER = 36
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.info["preloaded"] = self._preload(config.get("preload") or [])

    @staticmethod
    def _preload(modules: list[str]) -> dict[str, str]:
        status = {}
        for name in modules:
            try:
                __import__(name)
                status[name] = "ok"
            except Exception as exc:  # a missing optional module must not stop the worker
                status[name] = f"{type(exc).__name__}: {exc}"
        return status

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        limits = request["limits"]
        self.counter += 1
        run_dir = os.path.join(self.base, f"run{self.counter}")
        io_dir = os.path.join(self.base, f"io{self.counter}")
        os.mkdir(io_dir, 0o700)
        os.mkdir(run_dir, 0o700)
        if self.uid is not None:
            os.chown(run_dir, self.uid, self.uid)
        stdin_path = os.path.join(io_dir, "stdin")
        with open(stdin_path, "w", encoding="utf-8") as fh:
            fh.write(request.get("stdin") or "")
        out_fd = os.open(os.path.join(io_dir, "stdout"), os.O_RDWR | os.O_CREAT, 0o600)
        err_fd = os.open(os.path.join(io_dir, "stderr"), os.O_RDWR | os.O_CREAT, 0o600)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reports through its exit status
            _child(request["code"], stdin_path, out_fd, err_fd, run_dir, limits, self.uid)
        try:
            status, exit_code, sig = self._wait(pid, float(limits["timeout_s"]))
            duration = time.monotonic() - started
            self._kill_leftovers(pid)
            max_bytes = int(limits["max_output_bytes"])
            stdout, cut_out = _read_capped(out_fd, max_bytes)
            stderr, cut_err = _read_capped(err_fd, max_bytes)
            if status != "timeout" and (sig == signal.SIGXFSZ or cut_out or cut_err):
                status = "output_limit"
            if sig == signal.SIGXCPU:
                status = "timeout"
            return {
                "status": status, "exit_code": exit_code, "signal": sig, "stdout": stdout,
                "stderr": stderr, "duration_s": round(duration, 6), "truncated": cut_out or cut_err,
            }
        finally:
            os.close(out_fd)
            os.close(err_fd)
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(io_dir, ignore_errors=True)

    def _wait(self, pid: int, timeout: float) -> tuple[str, int | None, int | None]:
        pidfd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(max(timeout, 0.0) * 1000):
                self._kill_leftovers(pid)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:  # already reaped by the namespace sweep
                    pass
                return "timeout", None, signal.SIGKILL
        finally:
            os.close(pidfd)
        _, wstatus = os.waitpid(pid, 0)
        if os.WIFSIGNALED(wstatus):
            return "signal", None, os.WTERMSIG(wstatus)
        code = os.WEXITSTATUS(wstatus)
        return ("ok" if code == 0 else "error"), code, None

    def _kill_leftovers(self, pid: int) -> None:
        if self.namespaces and os.getpid() == 1:
            # Everything else in this PID namespace belongs to the execution that just ran.
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    while os.waitpid(-1, os.WNOHANG) != (0, 0):
                        pass
                except ChildProcessError:
                    return
                time.sleep(0.001)
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.uid is not None:
            _sweep_uid(self.uid)
        _kill_adopted_orphans()

    def serve(self, ctrl_in: Any, ctrl_out: Any) -> int:
        ctrl_out.write(json.dumps({"ready": True, **self.info}) + "\n")
        ctrl_out.flush()
        for line in ctrl_in:
            try:
                reply = self.execute(json.loads(line))
            except Exception:
                reply = {"status": "sandbox_error", "exit_code": None, "signal": None, "stdout": "",
                         "stderr": traceback.format_exc(), "duration_s": 0.0, "truncated": False}
            ctrl_out.write(json.dumps(reply) + "\n")
            ctrl_out.flush()
        return 0


def _kill_adopted_orphans(rounds: int = 100) -> None:
    """Kill and reap our children: as child subreaper we adopt every orphan of an execution.

    Catches processes that left the process group with ``setsid``; killing a parent hands its
    children to us too, hence the rounds.
    """
    me = str(os.getpid())
    for _ in range(rounds):
        try:
            while os.waitpid(-1, os.WNOHANG) != (0, 0):
                pass
        except ChildProcessError:
            return
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = fh.read().rsplit(b")", 1)[1].split()[1].decode()
            except (OSError, IndexError):
                continue
            if ppid == me:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.001)


def _sweep_uid(uid: int) -> None:
    """Kill every process of ``uid`` from a helper running as that uid (it cannot hit anyone else)."""
    helper = os.fork()
    if helper == 0:  # pragma: no cover - child
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                os.kill(-1, signal.SIGKILL)
                time.sleep(0.002)
        except (ProcessLookupError, PermissionError):
            pass
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _read_capped(fd: int, max_bytes: int) -> tuple[str, bool]:
    size = os.fstat(fd).st_size
    data = os.pread(fd, max_bytes, 0)
    return data.decode("utf-8", errors="replace"), size > max_bytes


def _child(code: str, stdin_path: str, out_fd: int, err_fd: int, workdir: str,
           limits: dict[str, Any], uid: int | None) -> None:  # pragma: no cover - child
    exit_code = 1
    try:
        os.setsid()
        in_fd = os.open(stdin_path, os.O_RDONLY)
        os.dup2(in_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, _MAXFD)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        memory = int(limits["memory_mb"]) * 1024 * 1024
        cpu = int(limits["cpu_s"])
        out_cap = int(limits["max_output_bytes"]) + 1
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (out_cap, out_cap))
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(limits["max_open_files"]),) * 2)
        if uid is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["max_processes"]),) * 2)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({
            "PATH": _CHILD_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        })
        tempfile.tempdir = None
        sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.argv = ["<sandbox>"]
        sys.path[0] = workdir
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        linecache.cache["<sandbox>"] = (len(code), None, code.splitlines(True), "<sandbox>")
        exec(compile(code, "<sandbox>", "exec"), main.__dict__)
        exit_code = 0
    except SystemExit as exc:
        if exc.code is None:
            exit_code = 0
        elif isinstance(exc.code, int):
            exit_code = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            exit_code = 1
    except BaseException as exc:
        try:  # skip this frame: the traceback starts at the user's code, like ``python file.py``
            traceback.print_exception(type(exc), exc, exc.__traceback__ and exc.__traceback__.tb_next)
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(exit_code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config = json.loads(args[0])
    # Keep the control channel off fds 0/1 so that nothing printed by a preloaded module can
    # corrupt it; children replace 0/1/2 and close everything else.
    ctrl_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    ctrl_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = Worker(config)
    except Exception:
        ctrl_out.write(json.dumps({"ready": False, "error": traceback.format_exc()}) + "\n")
        ctrl_out.flush()
        return 1
    return worker.serve(ctrl_in, ctrl_out)


if __name__ == "__main__":
    sys.exit(main())
