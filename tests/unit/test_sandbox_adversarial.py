"""The sandbox against programs that try to game the evaluator (issue 18's seven classes).

Each test submits what a reward-hacking model could write: a few lines of Python, either as an
APPS sample to ``skillflow apps eval`` (the real CLI, in a subprocess) or run through a
:class:`SandboxPool`. Every test fails loudly, instead of skipping, on a machine where the
containment it checks cannot be provided (see :func:`tests.unit.test_sandbox.require`).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from tasks.apps.execute import PRELOAD, Problem, pool_runner, run_program
from tasks.sandbox import Limits, SandboxPool
from tests.unit.test_sandbox import require

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SKILLFLOW_SHARED", ROOT.parent / "shared"))
#: What ``skillflow apps eval`` uses as the per-stream output cap.
APPS_OUTPUT_CAP = 64 << 20


@pytest.fixture(scope="module")
def pool():
    p = SandboxPool(workers=2, limits=Limits(timeout_s=10, memory_mb=1024, max_output_bytes=64 * 1024))
    yield p
    p.close()


@pytest.fixture()
def single():
    """One worker, so consecutive runs share it (what the warm-memory attack needs)."""
    p = SandboxPool(workers=1, limits=Limits(timeout_s=10, memory_mb=1024, max_output_bytes=256 * 1024))
    yield p
    p.close()


def apps_eval(tmp_path: Path, problems: list[dict], samples: list[dict], *args: str) -> tuple[list[dict], int]:
    """Run ``skillflow apps eval`` as a user would; return its results and its peak RSS in KiB.

    The peak is ``ru_maxrss`` from ``wait4``: the larger of the evaluator's own and that of every
    descendant it waited for (the sandbox workers), so it covers the whole evaluator.
    """
    problems_path, samples_path, out = tmp_path / "problems.jsonl", tmp_path / "samples.jsonl", tmp_path / "out"
    problems_path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    samples_path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    cmd = [sys.executable, "-m", "tasks.cli", "apps", "eval", "--samples", str(samples_path), "--problems",
           str(problems_path), "--out", str(out), "--workers", "1", "--timeout", "2", "--budget", "6", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timer = threading.Timer(300, proc.kill)  # hang guard only
    timer.start()
    try:
        stdout = proc.stdout.read()
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, (stdout + stderr).decode(errors="replace")[-3000:]
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return sorted(results, key=lambda r: r["sample"]), usage.ru_maxrss


# 1 -------------------------------------------------------------------------------------------

@pytest.fixture()
def readable_dir():
    """A world-readable folder, as a project checkout or a shared data folder is (umask 022)."""
    path = Path(tempfile.mkdtemp(prefix="skillflow-apps-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_answer_key_is_out_of_reach_of_an_apps_sample(readable_dir, record_property):
    """A sample that looks its own stdin up in the ``--problems`` file must not find the file."""
    tmp_path = readable_dir
    inputs = [uuid.uuid4().hex + "\n" for _ in range(3)]
    outputs = [hashlib.sha256(i.strip().encode()).hexdigest() + "\n" for i in inputs]
    problem = {"problem_id": 7, "difficulty": "introductory",
               "input_output": json.dumps({"inputs": inputs, "outputs": outputs})}
    honest = "import hashlib\nprint(hashlib.sha256(input().strip().encode()).hexdigest())"
    # ``open`` is mocked during a test (reference behaviour), so the cheat uses io.open.
    cheat = ("import io, json\nq = input().strip()\n"
             f"for line in io.open({str(tmp_path / 'problems.jsonl')!r}):\n"
             "    tests = json.loads(json.loads(line)['input_output'])\n"
             "    for i, o in zip(tests['inputs'], tests['outputs']):\n"
             "        if i.strip() == q:\n            print(o.strip())")
    results, _ = apps_eval(tmp_path, [problem], [{"problem_id": 7, "code": honest}, {"problem_id": 7, "code": cheat}])
    assert results[0]["passed"] is True, results[0]
    assert results[1]["passed"] is False and results[1]["outcomes"] == ["error"] * 3, results[1]
    record_property("measured", f"a sample reading the --problems file: {results[1]['outcomes'].count('error')}/3 "
                                "tests error (file not found), not passed; an honest sample passes")


def test_program_sees_a_minimal_root(pool, record_property):
    """Nothing of the host's project, data, var, home or sockets; the interpreter still works."""
    require(pool)
    # The prefixes of the interpreter the workers run (the sandbox's, e.g. .venv-sandbox), not ours.
    worker_python = pool.isolation["python"]["executable"]
    prefixes = sorted({os.path.realpath(p) for p in json.loads(subprocess.run(
        [worker_python, "-c", "import json, sys; print(json.dumps([sys.base_prefix, sys.prefix]))"],
        capture_output=True, text=True, check=True).stdout)})
    host_paths = [str(ROOT / "tasks" / "apps" / "samples"), str(ROOT / "README.md"), str(ROOT / "var"), str(SHARED),
                  str(Path.home() / ".ssh"), "/etc/passwd", "/etc/shadow", "/run", "/var", "/srv", "/opt", "/mnt"]
    # A virtual environment inside the checkout is part of the interpreter; nothing else of it is.
    venvs_in_checkout = sorted({Path(p).relative_to(ROOT).parts[0] for p in prefixes if Path(p).is_relative_to(ROOT)})
    code = (
        "import json, os, sys\nfound = []\n"
        f"skip = {prefixes!r}\n"
        "for top, dirs, files in os.walk('/'):\n"
        "    if top in ('/proc', '/usr') or any(top == p or top.startswith(p + '/') for p in skip):\n"
        "        dirs[:] = []\n        continue\n"
        "    links = [d for d in dirs if os.path.islink(os.path.join(top, d))]\n"
        "    found += [os.path.join(top, n) for n in files + links]\n"
        "    if len(found) > 200:\n        break\n"
        f"print(json.dumps({{'root': sorted(os.listdir('/')), 'found': found[:200],\n"
        f"                  'host': [p for p in {host_paths!r} if os.path.exists(p)],\n"
        f"                  'checkout': sorted(os.listdir({str(ROOT)!r})) if os.path.isdir({str(ROOT)!r}) else [],\n"
        "                  'listings': [k for k, f in sys.path_importer_cache.items()\n"
        "                               if getattr(f, '_path_cache', None) and not os.path.isdir(k)]}))\n"
    )
    res = pool.run(code, timeout=30)
    assert res.status == "ok", res.stderr
    seen = json.loads(res.stdout)
    assert seen["host"] == [], seen["host"]
    assert seen["checkout"] in ([], venvs_in_checkout), seen["checkout"]
    assert seen["listings"] == [], seen["listings"]  # cached folder listings of the host's paths
    assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc",
                                 "tmp", "home", *[p.strip("/").split("/")[0] for p in prefixes]}, seen["root"]
    allowed = re.compile(r"^/(bin|sbin|lib|lib32|lib64|libx32)$|^/etc/(ld\.so\.cache|localtime)$|"
                         r"^/dev/(null|zero|full|random|urandom|fd|stdin|stdout|stderr)$")
    assert [p for p in seen["found"] if not allowed.match(p)] == []
    assert pool.run("import numpy, json, hashlib; print(numpy.arange(3).sum())").stdout == "3\n"
    record_property("measured", f"/ holds {', '.join(seen['root'])}; 0 of {len(host_paths)} host paths (shipped "
                                "samples, var, shared data, ~/.ssh, /etc/passwd, /run, /var...) exist; of the "
                                f"checkout only {seen['checkout'] or 'nothing'}")


# 2 -------------------------------------------------------------------------------------------

SCAN_MEMORY = r'''
import ctypes, gc, re, sys
pattern = "(?:PR" + "EV|CO" + "DE)-[0-9a-f]{32}"
found = set()
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()):
        found.update(re.findall(pattern, repr(value)[:10_000_000]))
    frame = frame.f_back
for obj in gc.get_objects():
    try:
        found.update(re.findall(pattern, repr(obj)[:1_000_000]))
    except Exception:
        pass
for line in open("/proc/self/maps"):
    fields = line.split()
    if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] not in ("[heap]", "[stack]")):
        continue
    lo, hi = (int(x, 16) for x in fields[0].split("-"))
    data = ctypes.string_at(lo, hi - lo)
    found.update(m.decode() for m in re.findall(pattern.encode(), data))
print(sorted(found))
'''


def test_next_program_finds_nothing_of_the_previous_one_in_memory(single, record_property):
    """The previous program's code, stdin and output: not in frames, objects or raw memory."""
    require(single)
    code_token, stdin_token = f"CODE-{uuid.uuid4().hex}", f"PREV-{uuid.uuid4().hex}"
    first = single.run(f"# {code_token}\nprint(input())", stdin=stdin_token + "\n")
    assert first.stdout == stdin_token + "\n"
    res = single.run(SCAN_MEMORY)
    assert res.status == "ok", res.stderr
    assert code_token not in res.stdout and stdin_token not in res.stdout, res.stdout
    record_property("measured", "frames, gc objects and every rw mapping scanned by the next program on the same "
                                "worker: 0 traces of the previous code or stdin")


def test_apps_sample_cannot_replay_the_previous_samples_outputs(record_property):
    """A cheat that digs the previous sample's result records out of memory and prints them."""
    tokens = [uuid.uuid4().hex for _ in range(3)]
    problem = Problem(11, "introductory", [f"{i}\n" for i in range(3)], [t + "\n" for t in tokens])
    knows = "print({0!r}[int(input())])".format(tokens)
    cheat = (
        "import builtins, ctypes, io, json, re\n"
        "n = getattr(builtins, '_calls', 0)\nbuiltins._calls = n + 1\n"
        "records = {}\n"
        "for line in io.open('/proc/self/maps'):\n"
        "    f = line.split()\n"
        "    if not f[1].startswith('rw') or (len(f) > 5 and f[5] not in ('[heap]', '[stack]')):\n"
        "        continue\n"
        "    lo, hi = (int(x, 16) for x in f[0].split('-'))\n"
        "    memory = ctypes.string_at(lo, hi - lo)\n"
        "    for m in re.finditer(rb'\\{\"i\": (\\d+), \"kind\": \"ok\", \"lines\": (\\[[^\\]]*\\])\\}', memory):\n"
        "        records.setdefault(int(m.group(1)), json.loads(m.group(2)))\n"
        "print('\\n'.join(records.get(n, ['nothing'])))\n"
    )
    with SandboxPool(workers=1, limits=Limits(timeout_s=10, memory_mb=4096, max_output_bytes=APPS_OUTPUT_CAP),
                     preload=PRELOAD) as one:
        require(one)
        runner = pool_runner(one)
        assert run_program(runner, problem, knows, timeout=2, budget=6).passed
        res = run_program(runner, problem, cheat, timeout=2, budget=6)
    assert not res.passed and res.codes == [False] * 3, res
    record_property("measured", "a sample replaying result records found in memory: codes [False, False, False]")


# 3 -------------------------------------------------------------------------------------------

def test_sparse_output_does_not_exhaust_the_evaluators_memory(tmp_path, record_property):
    """One seek and one write per stream make 64 MiB outputs; the evaluator must not pay for them."""
    problem = {"problem_id": 3, "difficulty": "introductory",
               "input_output": json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]})}
    honest = "print(input())"
    sparse = ("import os\nfor fd in range(1, 64):\n    try:\n"
              f"        os.lseek(fd, {APPS_OUTPUT_CAP - 1}, 0)\n        os.write(fd, b'\\n')\n"
              "    except OSError:\n        pass\nprint(input())")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    honest_results, honest_kib = apps_eval(tmp_path / "a", [problem], [{"problem_id": 3, "code": honest}])
    sparse_results, sparse_kib = apps_eval(tmp_path / "b", [problem], [{"problem_id": 3, "code": sparse}])
    assert honest_results[0]["passed"] and not sparse_results[0]["passed"]
    # Reading two capped streams costs each one decoded string plus one transient buffer (3 caps);
    # a fourth cap is margin for the allocator. Decoding and re-encoding them as JSON costs ~16.
    extra_mib = (sparse_kib - honest_kib) / 1024
    assert extra_mib < 4 * APPS_OUTPUT_CAP / (1 << 20), (
        f"evaluator peak RSS {sparse_kib / 1024:.0f} MiB with the sparse sample vs {honest_kib / 1024:.0f} MiB")
    record_property("measured", f"2 sparse 64 MiB streams: evaluator peak RSS {sparse_kib / 1024:.0f} MiB "
                                f"(honest sample {honest_kib / 1024:.0f} MiB)")


# 4 -------------------------------------------------------------------------------------------

IPC_CREAT, IPC_RMID = 0o1000, 0


def _host_ipc_keys(kind: str) -> set[int]:
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines if line.strip()}


def test_sysv_ipc_objects_die_with_the_program(pool, record_property):
    require(pool)
    key = int.from_bytes(os.urandom(3), "big") + 1
    create = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
              f"shm = libc.shmget({key}, 1 << 20, {IPC_CREAT} | 0o666)\n"
              f"msq = libc.msgget({key}, {IPC_CREAT} | 0o666)\nprint(shm >= 0, msq >= 0)")
    probe = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
             f"print(libc.shmget({key}, 0, 0), libc.msgget({key}, 0))")
    made = pool.run(create)
    on_host = {kind: key in _host_ipc_keys(kind) for kind in ("shm", "msg")}
    try:
        assert made.stdout == "True True\n", made.stdout + made.stderr
        assert on_host == {"shm": False, "msg": False}, "the program's IPC objects live in the host's namespace"
        later = [pool.run(probe).stdout for _ in range(4)]  # both workers, whatever the scheduling
        assert later == ["-1 -1\n"] * 4, later
        record_property("measured", "shm segment and message queue created: absent from the host's /proc/sysvipc, "
                                    "not found by 4 later programs")
    finally:  # do not pin host memory when the test fails
        libc = ctypes.CDLL(None, use_errno=True)
        shm, msq = libc.shmget(key, 0, 0), libc.msgget(key, 0)
        if shm >= 0:
            libc.shmctl(shm, IPC_RMID, None)
        if msq >= 0:
            libc.msgctl(msq, IPC_RMID, None)


# 5 -------------------------------------------------------------------------------------------

def test_host_unix_sockets_are_unreachable(pool, record_property):
    """A world-connectable socket in a world-readable folder, like munge's: connect() must fail."""
    require(pool)
    folder = tempfile.mkdtemp(prefix="skillflow-sock-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "service.socket")
    abstract = f"\0skillflow-{uuid.uuid4().hex}"
    listeners = []
    for address in (path, abstract):
        s = socket.socket(socket.AF_UNIX)
        s.bind(address)
        s.listen(4)
        s.settimeout(0.5)
        listeners.append(s)
    os.chmod(path, 0o777)
    code = ("import socket\n"
            f"for address in {[path, abstract]!r}:\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n        s.connect(address); print('connected')\n"
            "    except OSError as exc:\n        print('refused', exc.errno)\n")
    try:
        res = pool.run(code)
        accepted = 0
        for s in listeners:
            try:
                s.accept()[0].close()
                accepted += 1
            except socket.timeout:
                pass
    finally:
        for s in listeners:
            s.close()
        os.unlink(path)
        os.rmdir(folder)
    assert res.stdout.count("refused") == 2 and accepted == 0, res.stdout + res.stderr
    outcomes = ", ".join(res.stdout.split("\n")[:2])
    record_property("measured", f"a mode-0777 socket file and an abstract socket: {outcomes}")


# 6 -------------------------------------------------------------------------------------------

def test_inodes_are_limited(pool, record_property):
    """Empty files cost kernel memory but no tmpfs bytes: their number must be capped."""
    require(pool)
    want = 100_000
    code = ("import os\nmade = 0\n"
            f"for i in range({want}):\n"
            "    try:\n        os.close(os.open(f'f{i}', os.O_CREAT | os.O_WRONLY, 0o600))\n        made += 1\n"
            "    except OSError as exc:\n        print('stopped', exc.errno)\n        break\n"
            "print(made)")
    res = pool.run(code, timeout=60)
    assert res.status == "ok", res.stderr
    made = int(res.stdout.split()[-1])
    assert made < want, f"created all {made} files"
    assert made <= pool.limits.max_files and "stopped 28" in res.stdout  # ENOSPC
    record_property("measured", f"{made} of {want} empty files created, then ENOSPC "
                                f"(max_files {pool.limits.max_files})")


# 7 -------------------------------------------------------------------------------------------

SPIN = ("import os, time\nwhile True:\n"
        "    os.write(1, b'%d %.3f\\n' % (os.getpid(), time.process_time()))\n"
        "    x = 0\n    for _ in range(300_000):\n        x += 1\n")


def test_cpu_is_limited_per_program_not_per_process(pool, record_property):
    """Helpers started with posix_spawn (which the in-process guard misses) share one CPU budget."""
    require(pool)
    cpu_s = 1.0
    code = ("import os, sys\n"
            "for _ in range(3):\n"
            f"    os.posix_spawn(sys.executable, [sys.executable, '-c', {SPIN!r}], {{}})\n"
            f"exec({SPIN!r})\n")
    res = pool.run(code, limits=pool.limits.replace(cpu_s=cpu_s, timeout_s=20))
    assert res.status == "timeout", res.status + res.stderr
    last: dict[str, float] = {}
    for line in res.stdout.splitlines():
        pid, _, seconds = line.partition(" ")
        if seconds:
            last[pid] = float(seconds)
    assert len(last) >= 2, res.stdout[-500:]  # the helpers did run
    # Each process reports its CPU time every few milliseconds; the total is what the program got.
    assert sum(last.values()) < cpu_s + 0.5, (last, pool.isolation)
    record_property("measured", f"{len(last)} processes (3 via posix_spawn) used {sum(last.values()):.2f} s CPU in "
                                f"total with cpu_s={cpu_s:g}; status {res.status}")


def test_a_program_gets_one_core_however_many_processes_it_runs(pool, record_property):
    """The other half of class 7: helpers must not take the cores the other workers' programs need."""
    require(pool)
    wall_s = 2.0
    # setsid: each helper leaves the session, so the kernel's per-session autogroups do not hold it.
    main = SPIN.replace("while True:", f"end = time.monotonic() + {wall_s}\nwhile time.monotonic() < end:")
    helper = main.replace("end = ", "os.setsid()\nend = ")
    helpers = 7
    code = ("import os, sys\n"
            f"for _ in range({helpers}):\n"
            f"    os.posix_spawn(sys.executable, [sys.executable, '-c', {helper!r}], {{}})\n"
            f"exec({main!r})\nfor _ in range({helpers}):\n    os.wait()\n")
    res = pool.run(code, limits=pool.limits.replace(timeout_s=20))
    assert res.status == "ok", res.status + res.stderr
    last: dict[str, float] = {}
    for line in res.stdout.splitlines():
        pid, _, seconds = line.partition(" ")
        last[pid] = float(seconds)
    assert len(last) == helpers + 1, last
    # One core for wall_s seconds (the helpers start a little later than the main process).
    assert sum(last.values()) < wall_s * 1.0 + 0.4, (last, pool.isolation)
    record_property("measured", f"{len(last)} processes spinning for {wall_s:g} s of wall time got "
                                f"{sum(last.values()):.2f} s of CPU together (one core)")


def test_an_interpreter_under_tmp_still_gets_its_minimal_root(tmp_path):
    """A checkout (and so its venv) under /tmp, as a CI clone may be: the minimal root then holds
    the interpreter's folders below /tmp, and making /tmp must not fail the worker's start (it
    did: FileExistsError, and every sandbox of that checkout refused to start)."""
    import site
    import venv

    assert str(tmp_path).startswith("/tmp/"), tmp_path
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    own_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    # The new interpreter sees this checkout and this venv's packages, as an editable install would.
    Path(own_site, "skillflow-test.pth").write_text("\n".join([str(ROOT), *site.getsitepackages()]) + "\n")
    code = ("import sys\nfrom tasks.sandbox import SandboxPool\n"
            "with SandboxPool(workers=1, python=sys.executable) as pool:\n"
            "    iso = pool.isolation\n"
            "    res = pool.run('import sys; print(sys.prefix)')\n"
            "print(res.status, res.stdout.strip(), iso['minimal_root'], iso['namespaces'], sep='|')\n")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    status, prefix, minimal_root, namespaces = out.stdout.strip().splitlines()[-1].split("|")
    assert namespaces == "True", "no namespaces here: the containment promise is unchecked"
    assert (status, prefix, minimal_root) == ("ok", str(env_dir), "True"), out.stdout
