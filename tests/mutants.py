"""Break the code on purpose, one mutant at a time, and name the tests that catch it.

    python -m tests.mutants            # every mutant
    python -m tests.mutants --list     # their names
    python -m tests.mutants lost-never error-as-done

Each mutant is one exact text replacement in one file. It is applied to a scratch copy of this
checkout (tracked and untracked files, never the checkout itself), and the tests named for it run
there with this interpreter; a mutant that no test fails "survives", and the run exits 1.
Integration tests in the list use this checkout's stack (``SKILLFLOW_VAR`` points at its var
folder), so run it under the same lock as the integration suite. That stack's scheduler and
triggerer run this checkout's code, not the mutant: name tests that run the mutated code in the
test process (the operator and trigger driven directly), not tests that watch a DAG run.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPERATOR = "tests/integration/test_slurm_operator.py"
TRIGGER_UNIT = "tests/unit/test_slurm_trigger.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    # The trigger's event handling and the operator's reading of its events.
    Mutant("error-as-done", "operators/slurm/trigger.py",
           'self._event(EventStatus.ERROR, [], watch.log_offset, update.error)',
           'self._event(EventStatus.DONE, [], watch.log_offset, update.error)',
           (TRIGGER_UNIT, "tests/faults/test_slurm_faults.py::test_poller_gives_up_after_max_disconnected_s")),
    Mutant("lost-never", "operators/slurm/operator.py",
           'lost=ev.status is EventStatus.LOST)', "lost=False)",
           (f"{OPERATOR}::test_a_job_slurm_does_not_know_is_lost",)),
    Mutant("end-from-trigger-inverted", "operators/slurm/trigger.py",
           "if self.end_from_trigger and all(s.outcome is Outcome.SUCCESS for s in update.states):",
           "if self.end_from_trigger and not all(s.outcome is Outcome.SUCCESS for s in update.states):",
           (f"{OPERATOR}::test_end_from_trigger_ends_only_a_successful_job",)),
    Mutant("update-lost-ignored", "operators/slurm/trigger.py", "if update.lost:", "if False:",
           (f"{OPERATOR}::test_a_job_slurm_does_not_know_is_lost",)),
    # The nightly comparison.
    Mutant("paired-drop-sign", "tasks/openmath/regressions.py",
           'regression = r["diff"] < 0 and', 'regression = r["diff"] > 0 and',
           ("tests/unit/test_regressions.py", "tests/unit/test_nightly.py")),
    Mutant("interval-or", "tasks/openmath/regressions.py",
           "regression = expected > ci[1] and expected - observed > min_effect",
           "regression = expected > ci[1] or expected - observed > min_effect",
           ("tests/unit/test_regressions.py", "tests/unit/test_nightly.py")),
    # Issue 23's bugs put back, one at a time: the tests written with each fix must catch it.
    # (The third, a wait_timeout that leaves its job running, is caught only through the stack's
    # own worker, which runs this checkout's code, not a mutant's: see the issue note.)
    Mutant("published-missing-is-regression", "tasks/openmath/regressions.py",
           "            verdict.not_evaluated.append(metric)\n            continue\n",
           "            verdict.findings.append(Finding(metric, baseline, float(expected), float(\"nan\"), True,\n"
           "                                            \"interval\", None))\n            continue\n",
           ("tests/unit/test_nightly.py::test_released_model_evaluated_greedy_only_is_not_a_regression",
            "tests/unit/test_regressions.py")),
    Mutant("profile-default-local", "tasks/forms.py",
           'return Field("profile", "", ', 'return Field("profile", "local", ',
           ("tests/unit/test_dag_imports.py::test_every_dag_runs_on_the_deployments_profile_by_default",)),
    # The sandbox's guards.
    Mutant("no-memory-limit", "tasks/sandbox/worker.py",
           "resource.setrlimit(resource.RLIMIT_AS, (memory, memory))", "pass",
           ("tests/unit/test_sandbox.py",)),
    Mutant("leftovers-survive", "tasks/sandbox/worker.py",
           "    def _kill_leftovers(self, pid: int) -> None:\n",
           "    def _kill_leftovers(self, pid: int) -> None:\n        return\n",
           ("tests/unit/test_sandbox.py",)),
)


def scratch_copy(dest: Path) -> None:
    """Tracked and untracked (not ignored) files of this checkout, as they are on disk."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def apply(copy: Path, mutant: Mutant) -> None:
    path = copy / mutant.path
    text = path.read_text()
    found = text.count(mutant.original)
    if found != 1:
        raise SystemExit(f"mutant {mutant.name}: {mutant.path} has {found} copies of the text to mutate "
                         f"(need exactly 1): {mutant.original!r}")
    path.write_text(text.replace(mutant.original, mutant.mutated))


def run(mutant: Mutant, workdir: Path) -> tuple[str, list[str], float]:
    """("killed" | "survived", the tests that failed, seconds)."""
    copy = workdir / mutant.name
    scratch_copy(copy)
    apply(copy, mutant)
    env = {**os.environ, "SKILLFLOW_VAR": os.environ.get("SKILLFLOW_VAR") or str(ROOT / "var"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    module = mutant.path[:-3].replace("/", ".")
    where = subprocess.run([sys.executable, "-c", f"import {module} as m; print(m.__file__)"], cwd=copy, env=env,
                           capture_output=True, text=True)
    if Path(where.stdout.strip()).resolve() != (copy / mutant.path).resolve():
        raise SystemExit(f"mutant {mutant.name}: the copy imports {module} from {where.stdout.strip() or where.stderr}"
                         f", not from {copy}")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *mutant.tests],
                         cwd=copy, env=env, capture_output=True, text=True)
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", out.stdout, re.M)))
    if out.returncode not in (0, 1) or (out.returncode == 1 and not failed):
        raise SystemExit(f"mutant {mutant.name}: pytest exited {out.returncode} without a failed test:\n"
                         f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return ("killed" if failed else "survived"), failed, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name}: {m.path}: {m.original.strip()!r} -> {m.mutated.strip()!r}")
        return 0
    unknown = set(args.names) - set(by_name)
    if unknown:
        parser.error(f"unknown mutant(s) {sorted(unknown)}; valid: {sorted(by_name)}")
    chosen = [by_name[n] for n in args.names] or list(MUTANTS)
    survivors = 0
    with tempfile.TemporaryDirectory(prefix="skillflow-mutants-") as tmp:
        print("| mutant | file | result | failing tests | seconds |\n|---|---|---|---|---|", flush=True)
        for mutant in chosen:
            verdict, failed, seconds = run(mutant, Path(tmp))
            survivors += verdict == "survived"
            print(f"| {mutant.name} | {mutant.path} | {verdict} | {'<br>'.join(failed) or '-'} | {seconds:.0f} |",
                  flush=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
