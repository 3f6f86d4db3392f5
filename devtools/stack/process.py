"""Pid files and process liveness for daemons started without systemd.

This machine's init reaps slowly, so a stopped daemon lingers as a zombie for a second or two
and ``kill -0`` still succeeds; liveness therefore reads the process state and treats ``Z`` as
dead. Services we launch ourselves get their own session so that stopping one takes its
children (LocalExecutor workers, uvicorn workers) with it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
        return int(text.split()[0]) if text else None
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def pid_alive(pidfile: Path) -> int | None:
    pid = read_pid(pidfile)
    return pid if alive(pid) else None


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn(cmd: list[str], *, env: dict[str, str], log: Path, pidfile: Path, cwd: Path | None = None) -> int:
    """Start a foreground program in its own session, logging to ``log``; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) == pgid and alive(int(entry)):
                members.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return members


def stop(pidfile: Path, *, group: bool, timeout: float = 20.0) -> str:
    """SIGTERM, wait, then SIGKILL; returns a word for the status line."""
    pid = read_pid(pidfile)
    if not alive(pid):
        pidfile.unlink(missing_ok=True)
        return "not running"
    assert pid is not None
    try:
        pgid = os.getpgid(pid) if group else None
    except ProcessLookupError:
        pgid = None
    # Only signal a group that this service leads, never our own.
    if pgid is not None and pgid != pid:
        pgid = None
    sig_target = (lambda s: os.killpg(pgid, s)) if pgid else (lambda s: os.kill(pid, s))
    try:
        sig_target(signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid) and (not pgid or not _group_members(pgid)):
            pidfile.unlink(missing_ok=True)
            return "stopped"
        time.sleep(0.2)
    try:
        sig_target(signal.SIGKILL)
    except ProcessLookupError:
        pass
    time.sleep(0.5)
    pidfile.unlink(missing_ok=True)
    return "killed"


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
