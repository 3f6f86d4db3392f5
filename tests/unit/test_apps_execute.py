"""One program against one problem: reference semantics, codes, and hostile programs."""
from __future__ import annotations

import time

import pytest

from tasks.apps.compare import compare_call, compare_stdout
from tasks.apps.driver import wrap_stdin_program
from tasks.apps.execute import PRELOAD, Problem, judge, pool_runner, run_program
from tasks.sandbox import Limits, SandboxPool

SUM = Problem(1, "introductory", ["1 2\n", "3 4\n", ["10 20"]], ["3\n", "7\n", ["30"]])
#: A generous bound that only catches a hang; speed is measured in bench/bench_apps_eval.py.
HANG_GUARD_S = 60
KTH = Problem(2404, "introductory", [[[2, 3, 4, 7, 11], 5], [[1, 2, 3, 4], 2]], [[9], [6]], fn_name="findKthPositive")


@pytest.fixture(scope="module")
def run():
    pool = SandboxPool(workers=2, limits=Limits(timeout_s=10, memory_mb=4096, max_output_bytes=64 << 20),
                       preload=PRELOAD)
    runner = pool_runner(pool)
    yield lambda problem, code, **kw: run_program(runner, problem, code, **{"timeout": 1.0, "budget": 4.0, **kw})
    pool.close()


def test_stdin_right_and_wrong(run):
    ok = run(SUM, "a, b = map(int, input().split())\nprint(a + b)")
    assert ok.passed and ok.codes == [True, True, True] and ok.status == "ok"
    bad = run(SUM, "a, b = map(int, input().split())\nprint(a - b)")
    assert not bad.passed and bad.codes == [False, False, False] and bad.outcomes == ["fail"] * 3
    reads_all = run(SUM, "import sys\nprint(sum(map(int, sys.stdin.read().split())))")
    assert reads_all.passed
    via_open = run(SUM, "print(sum(map(int, open(0).read().split())))")
    assert via_open.passed


def test_call_based_method_and_function(run):
    method = ("class Solution:\n    def findKthPositive(self, arr: List[int], k: int) -> int:\n"
              "        s = set(arr)\n        i = 0\n        while k:\n            i += 1\n"
              "            k -= i not in s\n        return i\n")
    res = run(KTH, method)
    assert res.passed and res.codes == [True, True]
    wrong = run(KTH, "def findKthPositive(arr, k):\n    return (k,)\n")  # tuple -> list, then unequal
    assert wrong.codes == [False, False]
    missing = run(KTH, "def other(arr, k):\n    return 1\n")
    assert missing.codes == [-2] and missing.status == "compile_error"


def test_reference_quirks_are_kept(run):
    # The script is wrapped in a function, so a __main__ guard never runs: no output, wrong answer.
    guarded = run(SUM, "def main():\n    print(sum(map(int, input().split())))\nif __name__ == '__main__':\n    main()")
    assert guarded.codes == [False, False, False]
    # sys.exit is swallowed after printing; exit() is disabled by the guard -> runtime error.
    assert run(SUM, "import sys\nprint(sum(map(int, input().split())))\nsys.exit(0)").passed
    assert run(SUM, "print(sum(map(int, input().split())))\nexit()").codes == [-1, -1, -1]
    # sys.stdin.buffer does not exist on the reference's mocked stdin.
    assert run(SUM, "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))").codes == [-1, -1, -1]
    assert run(SUM, "print(").codes == [-2]


def test_reading_past_the_input_times_out_without_waiting(run):
    start = time.monotonic()
    res = run(SUM, "a = input()\nb = input()\nc = input()\nprint(3)", timeout=3.0, budget=20.0)
    assert res.outcomes == ["timeout"] * 3 and res.codes == [-1] * 3
    # Not a speed bound: the reference spins out the 3 s timer of each of the 3 tests (9 s);
    # the driver raises at once and charges a virtual clock, so it never waits for the timers.
    assert time.monotonic() - start < 3 * 3.0


def test_wrap_keeps_leading_imports_at_module_level():
    wrapped = wrap_stdin_program("import sys\nx = 1\nimport os\nprint(x)")
    assert wrapped.startswith("import sys\nstdin = sys.stdin\nstdout = sys.stdout\ndef code():\n\tx = 1\n")
    assert "\timport os\n" in wrapped


def test_infinite_loop_hits_per_test_timeout_and_budget(run):
    start = time.monotonic()
    res = run(SUM, "while True:\n    pass", timeout=0.5, budget=1.2)
    assert not res.passed and res.codes == [-1, -1, -1]
    assert res.status == "budget"  # 3 x 0.5 s > 1.2 s: every test -1, as the reference's global kill
    assert time.monotonic() - start < HANG_GUARD_S
    swallow = "while True:\n    try:\n        while True: pass\n    except BaseException:\n        pass"
    res = run(SUM, swallow, timeout=0.5, budget=1.5)
    assert res.status == "budget" and res.codes == [-1, -1, -1]


def test_fork_bomb_and_crash_do_not_hang(run):
    bomb = "import os\nfor _ in range(2000):\n    try:\n        os.posix_spawn('/bin/sleep', ['sleep', '100'], {})\n    except Exception:\n        break\nprint(3)"
    start = time.monotonic()
    res = run(SUM, bomb, timeout=1.0, budget=3.0)
    assert not res.passed
    assert time.monotonic() - start < HANG_GUARD_S
    dead = run(SUM, "import os\nos._exit(0)")
    assert dead.status == "crash" and dead.codes == [-1, -1, -1]


def test_forged_result_lines_do_not_pass(run):
    forged = ('import os, sys\nline = \'@@apps-0@@ {"i": 0, "kind": "ok", "lines": ["3"]}\\n\'\n'
              "print(line)\n"
              "for fd in range(3, 40):\n    try:\n        os.write(fd, line.encode())\n    except OSError:\n        pass\n"
              "sys.__stdout__.write(line)\nprint(7)")
    res = run(SUM, forged)
    assert not res.passed and res.codes[0] is False
    # Even a record carrying the right nonce is only an output claim: it is compared here, and a
    # duplicate for one test marks the run as tampered.
    stdout = '@@apps-n@@ {"i": 0, "kind": "ok", "lines": ["3"]}\n@@apps-n@@ {"i": 0, "kind": "ok", "lines": ["3"]}\n'
    assert judge(SUM, "ok", stdout + '@@apps-n@@ {"end": true}\n', "n").status == "tampered"


def test_compare_stdout_fallbacks_in_order():
    assert compare_stdout(["3 "], "3\n")                      # ends stripped
    assert compare_stdout(["1", "", "2"], "1\n2\n")           # empty lines dropped
    assert compare_stdout(["0.3333333"], "0.33333333\n")      # float closeness
    assert not compare_stdout(["0.33"], "0.3333\n")
    assert compare_stdout(["2 1", "4 3"], "1 2\n3 4\n")       # token sets, order-insensitive (lenient)
    assert compare_stdout(["1.0004"], "1.0001 \n")           # equal after rounding to 3 decimals
    assert compare_stdout(["1.0014"], "1.0001\n") is False    # not even then
    assert compare_stdout(["1.00001 2"], "1.00002 2\n")       # same after rounding
    assert not compare_stdout(["YES"], "NO\n")
    assert compare_stdout([], "")


def test_compare_call_value_forms():
    assert compare_call(9, [9])                               # expected wrapped in a list
    assert compare_call([[1, 2]], [[1, 2]])
    assert compare_call([(1, 2), (3, 4)], [[[1, 2], [3, 4]]])  # list of tuples vs lists
    assert compare_call({1: "a"}, {"1": "a"})                # JSON string keys back to int
    assert not compare_call(True, [1.5])
