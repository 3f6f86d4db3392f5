"""The seed-style harness (a benchmark baseline): same verdicts as our sandbox, the seed's retry loop."""
from __future__ import annotations

import json
import os
import time

import pytest

from devtools.apps_seed_style import (map_samples, preload, retry_until_stable, seed_chunksize, seed_style_runner,
                                      seed_workers)
from tasks.apps.execute import PRELOAD, Problem, pool_runner, run_program
from tasks.sandbox import Limits, SandboxPool

SUM = Problem(1, "introductory", ["1 2\n", "3 4\n", "10 20\n"], ["3\n", "7\n", "30\n"])
RIGHT = "a, b = map(int, input().split())\nprint(a + b)"
WRONG = "a, b = map(int, input().split())\nprint(a - b)"
LOOP = "while True:\n    pass"
# Ignores the driver's per-test timer, so only the harness's kill at the time limit stops it.
DEAF_LOOP = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"
# Speed is measured in bench/ (bench_apps_eval.py); a test bounds time only to catch a hang, far
# above the 0.5 s limits these tests set.
HANG_GUARD_S = 60


@pytest.fixture(scope="module")
def sandbox():
    preload()  # what the seed's process has loaded before it forks
    pool = SandboxPool(workers=1, limits=Limits(timeout_s=10, memory_mb=4096, max_output_bytes=64 << 20),
                       preload=PRELOAD)
    yield pool_runner(pool)
    pool.close()


@pytest.mark.parametrize("code, passed", [(RIGHT, True), (WRONG, False), (LOOP, False), (DEAF_LOOP, False)],
                         ids=["right", "wrong_answer", "loop", "loop_killed_at_time_limit"])
def test_verdicts_equal_the_sandbox(sandbox, code, passed):
    kw = {"timeout": 0.5, "budget": 0.5}
    ours = run_program(sandbox, SUM, code, **kw)
    start = time.monotonic()
    seed = run_program(seed_style_runner, SUM, code, **kw)
    assert time.monotonic() - start < HANG_GUARD_S, "the seed-style harness hung on this program"
    assert seed.passed is passed
    assert (seed.codes, seed.outcomes, seed.status) == (ours.codes, ours.outcomes, ours.status)


@pytest.mark.parametrize("program", ["print('hi')\nimport sys\nprint('warn', file=sys.stderr)",
                                     "import sys\nsys.exit(3)",
                                     "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
                                     "print(input()[::-1])"])
def test_runner_statuses_equal_the_sandbox(sandbox, program):
    ours = sandbox(program, "abc\n", 5.0)
    seed = seed_style_runner(program, "abc\n", 5.0)
    assert seed[0] == ours[0] and seed[1] == ours[1]
    if ours[0] == "ok":
        assert seed[2] == ours[2]


def test_runner_kills_a_child_still_alive_at_the_timeout(tmp_path):
    pid_file = tmp_path / "pid"
    program = (f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
               "print('started', flush=True)\nwhile True:\n    pass")
    start = time.monotonic()
    status, stdout, _ = seed_style_runner(program, "", 0.5)
    assert time.monotonic() - start < HANG_GUARD_S, "the runner hung on a program that never ends"
    assert (status, stdout) == ("timeout", "")  # a killed child reports nothing, as in the seed
    # Killed and reaped, not left spinning: the process that ran the program no longer exists.
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_pool_pass_keeps_order():
    preload()
    results = map_samples([(SUM, RIGHT), (SUM, WRONG), (SUM, RIGHT)], workers=1, timeout=1.0, budget=3.0)
    assert [r.passed for r in results] == [True, False, True]


def test_seed_pool_shape():
    assert seed_workers(32) == 16 and seed_workers(1) == 1
    assert seed_chunksize(37650, 16) == 470 and seed_chunksize(3, 16) == 1


ONE = Problem(7, "introductory", ["1\n"], ["1\n"])


def scripted_runner(scripts: dict[str, list[str]]):
    """A stand-in for a flaky program: a real one cannot be made to flip on demand (the seed's
    flips came from load and timing), so each call plays the next scripted driver outcome."""

    def run(program: str, stdin: str, timeout: float) -> tuple[str, str, str]:
        payload = json.loads(stdin)
        step = scripts[payload["code"]].pop(0)
        record = {"pass": {"i": 0, "kind": "ok", "lines": ["1"]},
                  "fail": {"i": 0, "kind": "ok", "lines": ["2"]},
                  "error": {"i": 0, "kind": "error", "error": "RuntimeError: flaky"}}[step]
        marker = f"@@apps-{payload['nonce']}@@ "
        return "ok", f"{marker}{json.dumps(record)}\n{marker}{json.dumps({'end': True})}\n", ""

    return run


def run_scripts(scripts: dict[str, list[str]]):
    runner = scripted_runner(scripts)
    return retry_until_stable(list(scripts), lambda codes: [run_program(runner, ONE, c) for c in codes])


def test_retry_loop_reruns_until_two_runs_agree():
    scripts = {"stable_pass": ["pass"], "stable_fail": ["fail"], "error_twice": ["error", "error"],
               "error_then_pass": ["error", "pass", "pass"], "flipper": ["error", "pass"] * 5 + ["error"]}
    out = run_scripts(scripts)
    assert all(not steps for steps in scripts.values())  # every scripted run used, none more
    assert out.executions == 1 + 1 + 2 + 3 + 11 and out.rerun_samples == 3 and out.rounds == 10
    assert [out.results[i].passed for i in range(4)] == [True, False, False, True]
    # Still flipping after 10 rounds, but fewer than 5 such samples: kept with its latest result.
    assert out.kept_unstable == [4] and out.dropped == [] and out.results[4].passed is False


def test_retry_loop_drops_five_or_more_unstable_samples():
    scripts = {"stable": ["pass"], **{f"flipper{i}": ["error", "pass"] * 5 + ["error"] for i in range(5)}}
    out = run_scripts(scripts)
    assert out.dropped == [1, 2, 3, 4, 5] and list(out.results) == [0]
    assert all(not steps for steps in scripts.values())
    assert out.executions == 1 + 5 * 11 and out.rerun_samples == 5
