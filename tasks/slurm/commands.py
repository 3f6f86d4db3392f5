"""Pure builders of the shell commands sent to a Slurm login node, and parsers of their output.

Nothing here opens a connection; the hook and the async poller run these strings and hand the
text back. Each parser accepts exactly what its builder asks Slurm to print.
"""
from __future__ import annotations

import base64
import re
import shlex
from typing import Iterable

from tasks.slurm.durations import elapsed_seconds
from tasks.slurm.states import JobState, normalize_state

SQUEUE_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "State", "Reason", "exit_code", "TimeUsed", "NumNodes",
                 "tres-alloc")
_SEP = "|"
LOG_MARK = "@@SKILLFLOW_LOG"
ACCT_MARK = "@@SKILLFLOW_ACCT"
_JOB_ID = re.compile(r"^\d+(_\d+)?$")


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.match(str(job_id)):
        raise ValueError(f"not a Slurm job id: {job_id!r}")
    return str(job_id)


def submit_command(script_path: str, log_dir: str) -> str:
    """sbatch needs the log folder to exist, or the job dies with no trace; create it first."""
    return f"mkdir -p {shlex.quote(log_dir)} && sbatch --parsable {shlex.quote(script_path)}"


def submission_token(record_path: str, script_path: str) -> str:
    """The tag of one submission: derived from the job record and the script of this try (and
    chain link), so a retried submit command recognises the job its first attempt made, while a
    new try, which has its own script, submits its own job."""
    import hashlib

    return "skillflow-" + hashlib.sha256(f"{record_path}\n{script_path}".encode()).hexdigest()[:20]


def submit_once_command(script_path: str, log_dir: str, record_path: str, token: str) -> str:
    """Submit at most once per ``token``, however often this command is sent; print the job id.

    A connection can drop after ``sbatch`` reached the login node, and the sender cannot tell
    whether the job was made; it sends this same command again. On the login node:

    - a lock per token serialises attempts, so a retry waits for a first attempt still running;
    - ``<token>.submitted`` holds the id once an attempt got it: a retry prints it and stops;
    - ``<token>.tried`` marks that an attempt reached ``sbatch``; a retry that finds the mark but
      no id (the first attempt died between sbatch and writing the id) looks the token up among
      the user's jobs in ``squeue`` (``%k`` is the comment, where sbatch ``--comment`` puts the
      token; squeue keeps finished jobs for MinJobAge) and adopts the job found;
    - only when none of these knows a job does it run ``sbatch --comment=<token>``.

    The job record (the id of this task's job, read by later tries) is written in the same command.
    """
    if not re.fullmatch(r"skillflow-[0-9a-f]{20}", token):
        raise ValueError(f"not a submission token: {token!r}")
    q = shlex.quote
    folder = record_path.rsplit("/", 1)[0] or "/"
    base = f"{folder}/{token}"
    lookup = (f"squeue -h -a -t all --me -o '%F|%k' | awk -F'|' -v t={token} '$2 == t {{print $1; exit}}'")
    return (f"set -o pipefail; mkdir -p {q(log_dir)} {q(folder)} && exec 9>>{q(base + '.lock')} && flock 9 && "
            f"jid= && if [ -s {q(base + '.submitted')} ]; then jid=$(cat {q(base + '.submitted')}); "
            f"elif [ -e {q(base + '.tried')} ]; then jid=$({lookup}); fi && "
            f"if [ -z \"$jid\" ]; then : > {q(base + '.tried')} && "
            f"jid=$(sbatch --parsable --comment={token} {q(script_path)}) && jid=${{jid%%;*}}; fi && "
            f"printf '%s\\n' \"$jid\" > {q(base + '.submitted.tmp')} && mv -f {q(base + '.submitted.tmp')} {q(base + '.submitted')} && "
            f"printf '%s\\n' \"$jid\" > {q(record_path + '.tmp')} && mv -f {q(record_path + '.tmp')} {q(record_path)} && "
            f"echo \"$jid\"")


def write_file_command(path: str, text: str, mode: str = "600") -> str:
    """Write ``text`` to ``path`` atomically through base64, so no byte of it meets a shell."""
    data = base64.b64encode(text.encode()).decode()
    folder = path.rsplit("/", 1)[0] or "/"
    q = shlex.quote
    return (f"mkdir -p {q(folder)} && umask 077 && printf %s {q(data)} | base64 -d > {q(path + '.tmp')} "
            f"&& chmod {mode} {q(path + '.tmp')} && mv -f {q(path + '.tmp')} {q(path)}")


def parse_submit(stdout: str) -> str:
    """``--parsable`` prints ``jobid`` or ``jobid;cluster``."""
    lines = [ln.strip() for ln in stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise ValueError("sbatch printed no job id")
    job_id = lines[-1].split(";")[0]
    return check_job_id(job_id)


def cancel_command(job_ids: Iterable[str], signal: str | None = None) -> str:
    ids = " ".join(check_job_id(j) for j in job_ids)
    sig = f" --signal={shlex.quote(signal)}" if signal else ""
    return f"scancel{sig} {ids}"


def squeue_command(job_ids: Iterable[str]) -> str:
    """One query for many jobs; array ids expand to their elements (``-r``)."""
    ids = ",".join(sorted({check_job_id(j).split("_")[0] for j in job_ids}, key=int))
    fmt = ",".join(f"{f}:{_SEP}" for f in SQUEUE_FIELDS)
    return f"squeue -h -a -r -t all --jobs={ids} -O {shlex.quote(fmt)}"


SQUEUE_RC_MARK = "@@SKILLFLOW_SQUEUE_RC"


def squeue_poll_command(job_ids: Iterable[str]) -> str:
    """:func:`squeue_command` followed by a line ``@@SKILLFLOW_SQUEUE_RC <rc>`` saying whether the
    answer can be trusted (rc 0), so a poller counts a job as missing only on a real answer.

    squeue asked about jobs it no longer knows (all of them gone after MinJobAge) exits 1 with
    "Invalid job id specified": that is an answer (none of them is queued), not a failure, and
    counts as rc 0; otherwise a job that left the queue would never be looked up in accounting.
    """
    return (f"sq=$({squeue_command(job_ids)} 2>&1); rc=$?; printf '%s\\n' \"$sq\"; "
            f"case \"$sq\" in *'Invalid job id specified'*) rc=0;; esac; echo {SQUEUE_RC_MARK} $rc")


def _gpus_from_tres(tres: str) -> int | None:
    for part in tres.split(","):
        key, _, value = part.partition("=")
        if key in ("gres/gpu", "gpu"):
            try:
                return int(value)
            except ValueError:
                return None
    return 0 if tres else None


def parse_squeue(stdout: str) -> list[JobState]:
    out = []
    for line in stdout.splitlines():
        cols = [c.strip() for c in line.split(_SEP)]
        if len(cols) < len(SQUEUE_FIELDS) or not cols[0]:
            continue
        job_id, array_job, array_task, state, reason, raw_exit, used, nodes, tres = cols[:9]
        status = int(raw_exit) if raw_exit.lstrip("-").isdigit() else None
        # squeue reports the raw wait status: exit code in the high byte, signal in the low.
        exit_code = (status >> 8) & 0xFF if status is not None else None
        signal = status & 0x7F if status is not None else None
        is_array = array_task not in ("", "N/A")
        out.append(JobState(job_id=job_id, state=normalize_state(state), reason=reason, exit_code=exit_code,
                            signal=signal, array_job_id=array_job if is_array else None,
                            array_task_id=array_task if is_array else None, elapsed_s=elapsed_seconds(used),
                            nodes=int(nodes) if nodes.isdigit() else None, gpus=_gpus_from_tres(tres)))
    return out


def accounting_command(job_ids: Iterable[str], accounting: str) -> str:
    """Ask accounting about jobs that left the queue (after MinJobAge).

    With slurmdbd, ``sacct`` answers. Without it (``jobcomp``), the completion log that
    ``sacct -c`` reads is searched directly, because ``sacct -c`` cannot select array elements.
    """
    ids = sorted({check_job_id(j).split("_")[0] for j in job_ids}, key=int)
    if accounting == "slurmdbd":
        fields = "JobID,JobIDRaw,State,ExitCode,Reason,ElapsedRaw,NNodes,AllocTRES"
        return f"echo {ACCT_MARK} sacct; sacct -n -P -X -j {','.join(ids)} -o {fields}"
    pattern = "|".join(ids)
    return (f"echo {ACCT_MARK} jobcomp; "
            "f=$(scontrol show config | sed -n 's/^JobCompLoc *= *//p'); "
            f'[ -r "$f" ] && grep -E {shlex.quote(f"(^|[[:space:]])(JobId|ArrayJobId)=({pattern})[[:space:]]")} "$f"; true')


def _kv(line: str) -> dict[str, str]:
    out = {}
    for tok in line.split():
        key, sep, value = tok.partition("=")
        if sep:
            out[key] = value
    return out


def parse_accounting(stdout: str) -> list[JobState]:
    mode = None
    out: list[JobState] = []
    for line in stdout.splitlines():
        if line.startswith(ACCT_MARK):
            mode = line.split()[1]
            continue
        if not line.strip():
            continue
        if mode == "sacct":
            cols = line.split("|")
            if len(cols) < 8:
                continue
            jid, raw, state, exit_code, reason, elapsed, nodes, tres = cols[:8]
            code, _, sig = exit_code.partition(":")
            array_job = array_task = None
            if "_" in jid and not jid.endswith("]"):
                array_job, array_task = jid.split("_", 1)
            out.append(JobState(job_id=raw, state=normalize_state(state), reason=reason,
                                exit_code=int(code) if code.isdigit() else None,
                                signal=int(sig) if sig.isdigit() else None, array_job_id=array_job,
                                array_task_id=array_task, elapsed_s=int(elapsed) if elapsed.isdigit() else None,
                                nodes=int(nodes) if nodes.isdigit() else None, gpus=_gpus_from_tres(tres),
                                source="sacct"))
        elif mode == "jobcomp":
            kv = _kv(line)
            if "JobId" not in kv:
                continue
            code, _, sig = kv.get("ExitCode", "").partition(":")
            array_job = kv.get("ArrayJobId")
            array_task = kv.get("ArrayTaskId")
            if array_job in (None, "", "0", "4294967294"):
                array_job = array_task = None
            out.append(JobState(job_id=kv["JobId"], state=normalize_state(kv.get("JobState", "UNKNOWN")),
                                exit_code=int(code) if code.isdigit() else None,
                                signal=int(sig) if sig.isdigit() else None, array_job_id=array_job,
                                array_task_id=array_task, nodes=int(kv["NodeCnt"]) if kv.get("NodeCnt", "").isdigit() else None,
                                gpus=_gpus_from_tres(kv.get("Tres", "")), source="jobcomp",
                                elapsed_s=None))
    return out


def tail_command(path: str, offset: int, max_bytes: int = 65536) -> str:
    """Bytes of ``path`` from ``offset`` (at most ``max_bytes``), framed and base64-encoded."""
    q = shlex.quote(path)
    return (f"echo {LOG_MARK} {q} $(stat -c %s {q} 2>/dev/null || echo -1); "
            f"tail -c +{int(offset) + 1} {q} 2>/dev/null | head -c {int(max_bytes)} | base64 -w0; echo")


def parse_tails(stdout: str) -> dict[str, tuple[int, bytes]]:
    """{path: (file size, new bytes)} from one or more :func:`tail_command` outputs."""
    out: dict[str, tuple[int, bytes]] = {}
    lines = stdout.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(LOG_MARK + " "):
            parts = shlex.split(line[len(LOG_MARK) + 1:])
            path, size = parts[0], int(parts[1]) if len(parts) > 1 and parts[1].lstrip("-").isdigit() else -1
            data = lines[i + 1] if i + 1 < len(lines) else ""
            try:
                out[path] = (size, base64.b64decode(data) if data else b"")
            except ValueError:
                out[path] = (size, b"")
            i += 2
            continue
        i += 1
    return out


# Exit status of :func:`contained_tail_command` when the file, once opened, is not a ``.log`` file
# under the folder (a symlink, or a folder on the way, leads elsewhere).
OUTSIDE_RC = 3


def contained_tail_command(path: str, root: str, n: int) -> str:
    """The last ``n`` lines of ``path``, only if the file it opens is a ``.log`` file under ``root``.

    The file is opened first and the check is made on what was opened (``/proc/$$/fd/3``, every
    symlink resolved), against ``root`` with its own symlinks resolved; so a link under the work
    folder that points outside it cannot be used to read the target, and swapping a link after the
    check changes nothing. Regular files only: a FIFO would block the open.
    """
    q = shlex.quote
    return (f"[ -f {q(path)} ] && [ -r {q(path)} ] || exit 4; exec 3< {q(path)} || exit 4; "
            f"real=$(readlink /proc/$$/fd/3) && top=$(cd {q(root)} && pwd -P) || exit {OUTSIDE_RC}; "
            f'case "$real" in "$top"/*.log) ;; *) exit {OUTSIDE_RC};; esac; '
            f"tail -n {int(n)} <&3")


def files_complete_command(paths: Iterable[str]) -> str:
    """Prints ``OK path`` or ``MISSING path`` per path; a path counts when it exists and is non-empty."""
    checks = [f"if [ -s {shlex.quote(p)} ]; then echo OK {shlex.quote(p)}; else echo MISSING {shlex.quote(p)}; fi"
              for p in paths]
    return "; ".join(checks) if checks else "true"


def parse_files_complete(stdout: str) -> dict[str, bool]:
    out = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("OK", "MISSING") and rest:
            out[shlex.split(rest)[0]] = word == "OK"
    return out
