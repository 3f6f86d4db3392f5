"""Remote commands over the real local sshd: both output streams whole, the exit status, the idle
limit, no lock-taking file objects (paramiko issue #2685), and a close of a wedged connection that
hands control back."""
from __future__ import annotations

import socket
import threading
import time

import paramiko
import pytest

from operators.slurm.hook import SlurmHook
from operators.slurm.ssh_exec import close_within, run_command

pytestmark = pytest.mark.integration


@pytest.fixture
def hook(stack):
    return SlurmHook("slurm_local", accounting="jobcomp")


def test_large_stdout_and_stderr_both_come_back_whole(hook):
    """3 MB on each stream, stderr first: reading stdout to its end before stderr would stall,
    because the unread stderr fills the 2 MB channel window and the command blocks writing it."""
    command = ("python3 -c \"import sys; sys.stderr.write('e' * 3_000_000); sys.stderr.flush(); "
               "sys.stdout.write('o' * 3_000_000); sys.exit(3)\"")
    rc, out, err = run_command(hook.get_conn().get_transport(), command, idle_timeout=30)
    assert (rc, len(out), len(err)) == (3, 3_000_000, 3_000_000)
    assert set(out) == {"o"} and set(err) == {"e"}


def test_a_silent_command_hits_the_idle_limit(hook):
    started = time.monotonic()
    with pytest.raises(socket.timeout, match="no output for 1 s"):
        run_command(hook.get_conn().get_transport(), "sleep 20", idle_timeout=1)
    assert time.monotonic() - started < 15


def test_a_command_makes_no_file_objects(hook, monkeypatch):
    """A ChannelStdinFile's finalizer takes the channel lock; run by the garbage collector on the
    transport thread while that thread holds the lock, it deadlocks the connection (paramiko
    #2685). So no ChannelFile may be made at all. (A spy on paramiko's constructor: the deadlock
    itself depends on when the collector runs, which a test cannot choose.)"""
    made = []
    original = paramiko.channel.ChannelFile.__init__

    def counting(self, *args, **kwargs):
        made.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(paramiko.channel.ChannelFile, "__init__", counting)
    assert hook.run("echo out; echo err >&2") == (0, "out\n", "err\n")
    assert made == []


def test_closing_a_wedged_connection_returns_within_its_limit(hook):
    """A real wedge: one of the connection's channel locks is held (as the deadlocked transport
    thread holds it), so ``close()`` blocks on it; the caller gets control back anyway."""
    client = hook.get_conn()
    channel = client.get_transport().open_session()
    channel.lock.acquire()
    try:
        started = time.monotonic()
        assert close_within(client, wait_s=1.0) is False
        assert time.monotonic() - started < 5
    finally:
        channel.lock.release()
    closing = [t for t in threading.enumerate() if t.name == "ssh-close"]
    for t in closing:
        t.join(10)
    assert not any(t.is_alive() for t in closing)
    assert not client.get_transport() or not client.get_transport().is_active()
