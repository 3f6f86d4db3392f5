"""One remote command on a bare SSH channel, and a close that cannot hang the caller.

Why not ``SSHClient.exec_command``: it hands back a stdin file whose finalizer takes the channel's
lock (paramiko issue #2685, open for paramiko 5.x). When that file ends up in a reference cycle,
the garbage collector may run the finalizer on the transport thread while that thread already
holds the same lock (handling the channel's close), and the transport deadlocks: every later
command on the connection waits forever, and so does closing it. CI saw exactly this: a
``cat`` of a job log that never returned, then ``close()`` stuck on the channel lock for 20
minutes. Here no file objects are made, so nothing with a lock-taking finalizer exists.
"""
from __future__ import annotations

import select
import socket
import threading

READ_CHUNK = 65536
CLOSE_WAIT_S = 10.0


def run_command(transport, command: str, idle_timeout: float) -> tuple[int, str, str]:
    """Run ``command``, return (exit status, stdout, stderr). Both streams are read as they come,
    so a command with a lot of stderr cannot stall on a full window while stdout is read.

    Raises ``socket.timeout`` when neither stream has produced a byte for ``idle_timeout``
    seconds (the same limit ``exec_command(timeout=...)`` put on each read). The exit status is
    -1 when the connection closed before the command reported one."""
    channel = transport.open_session(timeout=idle_timeout)
    try:
        channel.exec_command(command)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        wake = channel.fileno()  # readable while either stream has data, and after EOF or close
        while True:
            # Read before draining: every byte arrives before EOF or close, so once either was
            # seen, the drain below takes the last of the output.
            finished = channel.closed or channel.eof_received
            got = False
            while channel.recv_ready():
                out += channel.recv(READ_CHUNK)
                got = True
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(READ_CHUNK)
                got = True
            if finished:
                break
            if not got and not select.select([wake], [], [], idle_timeout)[0]:
                raise socket.timeout(f"no output for {idle_timeout:g} s from '{command[:60]}'")
        # The status follows EOF, or never comes when the connection drops (closing sets the event).
        if not channel.status_event.wait(idle_timeout):
            raise socket.timeout(f"no exit status for {idle_timeout:g} s from '{command[:60]}'")
        return channel.exit_status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    finally:
        channel.close()


def close_within(client, wait_s: float = CLOSE_WAIT_S) -> bool:
    """Close an SSH client from a helper thread and wait at most ``wait_s`` for it.

    A connection is closed here because it already failed; if its transport thread is wedged,
    ``close()`` can block on a lock that is never released. The caller drops the client either
    way, so it must not be held hostage by it. Returns whether the close finished in time."""
    done = threading.Event()

    def close():
        try:
            client.close()
        except Exception:
            pass
        finally:
            done.set()

    threading.Thread(target=close, name="ssh-close", daemon=True).start()
    return done.wait(wait_s)
