"""A warm sandbox worker: one long-lived Python process that forks a child per execution.

Why fork from a warm interpreter: starting Python costs tens of milliseconds (and importing
sympy hundreds); a fork of an interpreter that is already up costs about one. The pool
(:mod:`tasks.sandbox.pool`) starts the worker, normally as PID 1 of fresh PID, network, IPC and
mount namespaces (``unshare``), and sends it one execution at a time over its stdin/stdout in
the framing of :mod:`tasks.sandbox.wire`.

Start-up: join the worker's cgroups (:mod:`tasks.sandbox.cgroups`), import the preloaded modules
(while the host's paths, the project's included, are still there), then replace ``/`` with the
minimal root (:mod:`tasks.sandbox.rootfs`).

Per execution the worker never holds the program's code, stdin or output in its own memory,
because the next execution is forked from that memory: the bodies go from the control pipe into
anonymous files (memfd) and back out with splice/sendfile. It mounts a fresh scratch tmpfs,
forks, and the child (before running any untrusted code) starts a new session and a new IPC
namespace (SysV objects and POSIX queues die with the execution), reads its code, points fds
0/1/2 at the stdin and two output files, closes every other fd (the control pipes, the cgroup
files), sets rlimits, drops to the worker's own uid when the worker is root, clears the
environment and ``exec``s the code as ``__main__``. The worker waits on a pidfd with the
wall-clock deadline, checks the group's CPU time (and moves a program of several processes into
the one-CPU group) while it waits, and afterwards kills every
process the execution left behind:

* as PID 1 of its own PID namespace, ``kill(-1, SIGKILL)`` reaches exactly the processes in that
  namespace, i.e. everything the execution spawned, even ones that called ``setsid`` or
  double-forked; ``waitpid(-1)`` failing with ECHILD then proves nothing is left, because every
  surviving process would have PID 1 as an ancestor;
* without namespaces it kills the child's process group and (when it dropped privileges) sweeps
  the dedicated uid with a helper that runs ``kill(-1)`` as that uid.

Then it unmounts the scratch tmpfs and sends the capped outputs back. This module is run as
``python -m tasks.sandbox.worker CONFIG_JSON``.
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

from tasks.sandbox import rootfs
from tasks.sandbox.cgroups import WATCH_S, WorkerGroups
from tasks.sandbox.wire import header_frame, read_header, send_body, splice_body, write_all

_MAXFD = 65536
_CLONE_NEWIPC = 0x08000000
_CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"


#: Distributions whose versions change what model code prints; reported in ``/health``.
_REPORTED = ("numpy", "sympy", "pandas", "ipython", "antlr4-python3-runtime")


def _interpreter() -> dict[str, Any]:
    """The worker's Python version and the versions of :data:`_REPORTED` (None: not installed)."""
    from importlib import metadata

    packages: dict[str, str | None] = {}
    for name in _REPORTED:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"version": ".".join(map(str, sys.version_info[:3])), "packages": packages}


class Worker:
    """State of one worker process; see the module docstring. Holds nothing of any execution."""

    def __init__(self, config: dict[str, Any]):
        self.base: str = config["base"]
        self.uid: int | None = config.get("uid")
        self.namespaces: bool = bool(config.get("namespaces"))
        self.tmpfs_mb = int(config.get("tmpfs_mb", 256))
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.info: dict[str, Any] = {"pid": os.getpid(), "namespaces": self.namespaces, "uid": self.uid,
                                     "minimal_root": False, "ipc_per_execution": self.namespaces}
        if self.namespaces and os.getpid() != 1:
            raise RuntimeError(f"namespaced worker must be PID 1, is {os.getpid()}")
        self.groups = WorkerGroups(config["cgroups"]) if config.get("cgroups") else None
        self.info["cgroups"] = self.groups is not None
        self.info["preloaded"] = self._preload(config.get("preload") or [])
        self.info["python"] = _interpreter()
        if self.namespaces:
            self.info.update(rootfs.build(self.base, config["project_root"]))
            self.info["interfaces"] = [name for _, name in socket.if_nameindex()]
            # The import system caches folder listings (e.g. of the checkout, for the preloads);
            # drop those of folders the minimal root does not have, so no child inherits them.
            for key in [k for k in sys.path_importer_cache if not (isinstance(k, str) and os.path.isdir(k))]:
                del sys.path_importer_cache[key]
        else:
            _PR_SET_CHILD_SUBREAPER = 36
            self.libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

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

    def _scratch(self, limits: dict[str, Any]) -> str:
        if self.namespaces:
            owner = self.uid if self.uid is not None else os.getuid()
            return rootfs.mount_scratch(owner, self.tmpfs_mb, int(limits["max_files"]))
        path = tempfile.mkdtemp(prefix="run-", dir=self.base)
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        return path

    def _drop_scratch(self, path: str) -> None:
        if path == rootfs.SCRATCH:
            rootfs.unmount(path)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def execute(self, request: dict[str, Any], ctrl_in: int, ctrl_out: int) -> None:
        """Run one execution; its bodies are read from ``ctrl_in`` and its reply written to ``ctrl_out``."""
        limits = request["limits"]
        code_len, stdin_len = request["bodies"]
        files = {name: os.memfd_create(name, os.MFD_CLOEXEC) for name in ("code", "stdin", "stdout", "stderr")}
        try:
            splice_body(ctrl_in, files["code"], code_len)
            splice_body(ctrl_in, files["stdin"], stdin_len)
            os.lseek(files["stdin"], 0, os.SEEK_SET)
            try:
                reply = self._run(files, limits)
            except Exception:
                message = traceback.format_exc().encode("utf-8", "replace")
                write_all(ctrl_out, header_frame({"status": "sandbox_error", "exit_code": None, "signal": None,
                                                  "duration_s": 0.0, "truncated": False,
                                                  "bodies": [0, len(message)]}))
                write_all(ctrl_out, message)
                return
            cap = int(limits["max_output_bytes"])
            # A stream's size is its last byte's offset: holes count like written bytes.
            sizes = [os.fstat(files[name]).st_size for name in ("stdout", "stderr")]
            bodies = [min(size, cap) for size in sizes]
            if reply["status"] != "timeout" and any(size > cap for size in sizes):
                reply["status"] = "output_limit"
            reply["truncated"] = any(size > cap for size in sizes)
            write_all(ctrl_out, header_frame({**reply, "bodies": bodies}))
            send_body(ctrl_out, files["stdout"], bodies[0])
            send_body(ctrl_out, files["stderr"], bodies[1])
        finally:
            for fd in files.values():
                os.close(fd)

    def _run(self, files: dict[str, int], limits: dict[str, Any]) -> dict[str, Any]:
        scratch = self._scratch(limits)
        try:
            if self.groups is not None:
                self.groups.start(int(limits["max_processes"]))
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, reports through its exit status
                _child(files, scratch, limits, self.uid, self.namespaces, self.libc)
            status, exit_code, sig = self._wait(pid, float(limits["timeout_s"]), float(limits["cpu_s"]))
            duration = time.monotonic() - started
            self._kill_leftovers(pid)
        finally:
            self._drop_scratch(scratch)
        if sig == signal.SIGXFSZ and status != "timeout":
            status = "output_limit"
        if sig == signal.SIGXCPU:
            status = "timeout"
        return {"status": status, "exit_code": exit_code, "signal": sig, "duration_s": round(duration, 6)}

    def _wait(self, pid: int, timeout: float, cpu_s: float) -> tuple[str, int | None, int | None]:
        pidfd = os.pidfd_open(pid)
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                step = left if self.groups is None else min(left, WATCH_S)
                if poller.poll(max(step, 0.0) * 1000):
                    break
                if self.groups is not None:
                    self.groups.watch()
                over_cpu = self.groups is not None and self.groups.cpu_seconds() > cpu_s
                if over_cpu or time.monotonic() >= deadline:
                    self._kill_leftovers(pid)
                    try:
                        os.waitpid(pid, 0)
                    except ChildProcessError:  # already reaped by the namespace sweep
                        pass
                    return "timeout", None, signal.SIGXCPU if over_cpu else signal.SIGKILL
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

    def serve(self, ctrl_in: int, ctrl_out: int) -> int:
        write_all(ctrl_out, header_frame({"ready": True, **self.info}))
        while True:
            request = read_header(ctrl_in)
            if request is None:
                return 0
            self.execute(request, ctrl_in, ctrl_out)


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


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _child(files: dict[str, int], workdir: str, limits: dict[str, Any], uid: int | None, namespaces: bool,
           libc: Any) -> None:  # pragma: no cover - child
    exit_code = 1
    try:
        os.setsid()
        if namespaces and libc.unshare(_CLONE_NEWIPC) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWIPC) failed")
        code = _read_fd(files["code"]).decode("utf-8", "surrogatepass")
        os.dup2(files["stdin"], 0)
        os.dup2(files["stdout"], 1)
        os.dup2(files["stderr"], 2)
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
    ctrl_in, ctrl_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = Worker(config)
    except Exception:
        write_all(ctrl_out, header_frame({"ready": False, "error": traceback.format_exc()}))
        return 1
    return worker.serve(ctrl_in, ctrl_out)


if __name__ == "__main__":
    sys.exit(main())
