"""Synchronous Slurm access over one SSH connection (the worker side).

The hook owns the connection; operators never build a client. Every command comes from
:mod:`tasks.slurm.commands`, so what runs on the login node is testable without SSH.
"""
from __future__ import annotations

import json
import shlex
from functools import cached_property

from airflow.sdk import BaseHook

from tasks.slurm import commands
from tasks.slurm.states import JobState


class SlurmCommandError(RuntimeError):
    """A remote command failed; the message has the command's stderr."""


class SlurmHook(BaseHook):
    conn_name_attr = "ssh_conn_id"
    default_conn_name = "slurm_default"
    conn_type = "ssh"
    hook_name = "Slurm over SSH"

    def __init__(self, ssh_conn_id: str = default_conn_name, *, accounting: str = "slurmdbd",
                 command_timeout: float = 120.0):
        super().__init__()
        self.ssh_conn_id = ssh_conn_id
        self.accounting = accounting
        self.command_timeout = command_timeout

    @cached_property
    def ssh_hook(self):
        from airflow.providers.ssh.hooks.ssh import SSHHook

        return SSHHook(ssh_conn_id=self.ssh_conn_id, cmd_timeout=self.command_timeout)

    def get_conn(self):
        return self.ssh_hook.get_conn()

    def run(self, command: str, *, check: bool = True, timeout: float | None = None,
            retries: int = 3) -> tuple[int, str, str]:
        """Run one command; reconnect and retry (1, 2, 4... s apart, at most 10) when the connection
        itself breaks (sshd restarted, network blip)."""
        import paramiko
        from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        retrying = Retrying(stop=stop_after_attempt(retries), wait=wait_exponential(max=10),
                            retry=retry_if_exception_type((OSError, EOFError, paramiko.SSHException)),
                            after=lambda _: self._reset())
        try:
            rc, out, err = retrying(self._exec, command, timeout or self.command_timeout)
        except RetryError as exc:
            raise SlurmCommandError(f"SSH connection '{self.ssh_conn_id}' failed {retries} times: "
                                    f"{exc.last_attempt.exception()}") from None
        if check and rc != 0:
            raise SlurmCommandError(f"remote command failed (rc {rc}): {command[:200]}\n{err.strip()[-2000:]}")
        return rc, out, err

    def _exec(self, command: str, timeout: float) -> tuple[int, str, str]:
        from operators.slurm.ssh_exec import run_command

        transport = self.get_conn().get_transport()
        if transport is None or not transport.is_active():
            raise EOFError(f"SSH connection '{self.ssh_conn_id}' is not open")
        rc, out, err = run_command(transport, command, timeout)
        if rc == -1 and not transport.is_active():
            # The channel closed without an exit status: the connection dropped while the
            # command ran. Whether it finished is unknown; only commands that are safe to send
            # again reach this point (submission is, see submit_script).
            raise EOFError(f"connection dropped before '{command[:60]}' reported its exit status")
        return rc, out, err

    def _reset(self) -> None:
        """Drop the connection so the next attempt makes a new one; closing the old one is
        bounded (see :func:`operators.slurm.ssh_exec.close_within`)."""
        from operators.slurm.ssh_exec import close_within

        hook = self.__dict__.pop("ssh_hook", None)
        client = getattr(hook, "client", None) if hook is not None else None
        if client is not None:
            close_within(client)

    # Files --------------------------------------------------------------------------------
    def write_text(self, path: str, text: str, mode: str = "600") -> None:
        self.run(commands.write_file_command(path, text, mode))

    def read_text(self, path: str) -> str | None:
        rc, out, _ = self.run(f"cat {shlex.quote(path)}", check=False)
        return out if rc == 0 else None

    def upload(self, local_path: str, remote_path: str) -> None:
        self.run(f"mkdir -p {shlex.quote(remote_path.rsplit('/', 1)[0] or '/')}")
        sftp = self.get_conn().open_sftp()
        try:
            sftp.put(local_path, remote_path + ".part")
            sftp.posix_rename(remote_path + ".part", remote_path)
        finally:
            sftp.close()

    def download(self, remote_path: str, local_path: str) -> None:
        sftp = self.get_conn().open_sftp()
        try:
            sftp.get(remote_path, local_path)
        finally:
            sftp.close()

    def files_complete(self, paths: list[str]) -> dict[str, bool]:
        _, out, _ = self.run(commands.files_complete_command(paths))
        return commands.parse_files_complete(out)

    # Jobs ---------------------------------------------------------------------------------
    def submit_script(self, script: str, script_path: str, log_dir: str, record_path: str) -> str:
        """Upload and submit exactly once; returns the job id.

        The job id is written to ``record_path`` by the same remote command that runs ``sbatch``,
        so no window exists in which the job runs but its id is known nowhere. The command is
        idempotent (:func:`tasks.slurm.commands.submit_once_command`): when the connection drops
        after it reached the login node, :meth:`run` sends it again, and the second attempt adopts
        the job of the first (by the submission token in the job's comment) instead of making a
        second one."""
        self.write_text(script_path, script, mode="700")
        token = commands.submission_token(record_path, script_path)
        _, out, _ = self.run(commands.submit_once_command(script_path, log_dir, record_path, token))
        return commands.parse_submit(out)

    def states(self, job_ids: list[str]) -> list[JobState]:
        """Current states; jobs gone from the queue are looked up in accounting."""
        _, out, err = self.run(commands.squeue_command(job_ids), check=False)
        found = commands.parse_squeue(out)
        seen = {s.job_id for s in found} | {s.array_job_id for s in found if s.array_job_id}
        missing = [j for j in job_ids if j.split("_")[0] not in seen]
        if missing:
            _, acct, _ = self.run(commands.accounting_command(missing, self.accounting), check=False)
            found += commands.parse_accounting(acct)
        return found

    def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            self.run(commands.cancel_command(job_ids), check=False)

    def tail(self, path: str, offset: int = 0, max_bytes: int = 65536) -> tuple[int, bytes]:
        _, out, _ = self.run(commands.tail_command(path, offset, max_bytes), check=False)
        return commands.parse_tails(out).get(path, (-1, b""))

    def last_lines(self, path: str, n: int = 40) -> str:
        rc, out, _ = self.run(f"tail -n {int(n)} {shlex.quote(path)}", check=False)
        return out if rc == 0 else f"(log {path} not readable)"

    def read_record(self, path: str) -> dict | None:
        text = self.read_text(path)
        if not text or not text.strip():
            return None
        text = text.strip()
        if text.startswith("{"):
            return json.loads(text)
        return {"job_id": commands.check_job_id(text.splitlines()[-1])}
