"""Run every benchmark of the project and write docs/performance.md.

Each benchmark prints a JSON summary as its last line; this runner collects them, keeps each
one's own ratios (measured side by side in the same run), and records the machine and the date.
A benchmark that fails is reported as such, never dropped.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = [
    ("grading", ["bench/bench_grading.py"]),
    ("sandbox", ["bench/bench_sandbox.py"]),
    ("apps_eval", ["bench/bench_apps_eval.py"]),
    ("sft_data", ["bench/bench_sft_data.py"]),
    ("triggerer", ["bench/bench_triggerer.py"]),
    ("dag_parse", ["bench/bench_dag_parse.py"]),
    ("compare", ["bench/bench_compare.py"]),
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


def run(name: str, argv: list[str]) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    summary = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            summary = json.loads(line)
            break
        except ValueError:
            continue
    print(proc.stdout[-4000:], flush=True)
    return {"name": name, "rc": proc.returncode, "wall_s": round(wall, 1), "summary": summary,
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}


def rows(summary: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested figures as one row each (``ours.ssh_connections``), so every number is readable."""
    out: list[tuple[str, object]] = []
    for key, value in summary.items():
        if isinstance(value, dict) and value:
            out += rows(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def render(results: list[dict]) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Performance", "", f"Measured by `make bench` on {now}; machine: {machine()}.", "",
             "Each benchmark measures ours and its peer side by side in the same run; the ratios below are",
             "from that run. Absolute numbers move with the machine's load; the ratios are the claim.", ""]
    for r in results:
        lines.append(f"## {r['name']}")
        lines.append("")
        if r["rc"] != 0 or r["summary"] is None:
            lines.append(f"FAILED (exit {r['rc']}) after {r['wall_s']} s:")
            lines.append("")
            lines.append("```")
            lines.append(r["stderr_tail"].strip() or "(no JSON summary printed)")
            lines.append("```")
        else:
            lines.append("| figure | value |")
            lines.append("|---|---|")
            for key, value in rows(r["summary"]):
                lines.append(f"| {key} | {value} |")
            lines.append(f"| wall time of the benchmark (s) | {r['wall_s']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    only = set(sys.argv[1:])
    results = [run(name, argv) for name, argv in BENCHES if not only or name in only]
    out = ROOT / "docs" / "performance.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(render(results))
    print(f"wrote {out}")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
