"""What an evaluation run logs beside its numbers so they can be trusted and compared later.

* Every benchmark file the run read, as an MLflow dataset input (name = benchmark, digest =
  SHA-256 of the file, source = its path on the cluster). ``skillflow compare`` refuses two runs
  whose digests differ for a benchmark, so runs on different data are never compared silently.
* The per-benchmark accuracy plot with 95% interval bars (``plots/accuracy.png``), shown inline in
  the MLflow UI.
"""
from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from typing import Any

DIGEST_CHARS = 32  # MLflow stores at most 36 characters of a dataset digest
CONTEXT = "eval"


def benchmark_file_digests(hook, data_dir: str, benchmarks: list[str], split: str) -> dict[str, dict[str, Any]]:
    """``{benchmark: {path, sha256, rows}}`` of the benchmark files on the cluster, in one SSH round trip."""
    paths = {b: f"{data_dir.rstrip('/')}/{b}/{split}.jsonl" for b in benchmarks}
    script = "; ".join(f'printf "%s %s\\n" "$(sha256sum < {shlex.quote(p)} | cut -c1-64)" "$(wc -l < {shlex.quote(p)})"'
                       for p in paths.values())
    rc, out, err = hook.run(script, check=False)
    lines = out.strip().splitlines()
    if rc != 0 or len(lines) != len(paths):
        raise FileNotFoundError(f"could not checksum the benchmark files {sorted(paths.values())}: {err.strip()}")
    found = {}
    for (bench, path), line in zip(paths.items(), lines):
        digest, rows = line.split()
        if len(digest) != 64:
            raise FileNotFoundError(f"{path}: no checksum on the cluster ({line!r})")
        found[bench] = {"path": path, "sha256": digest, "rows": int(rows)}
    return found


def log_benchmark_datasets(mlc, run_id: str, files: dict[str, dict[str, Any]]) -> None:
    """Log each benchmark file as a dataset input of the run (a retry logs the same inputs again: MLflow keeps one)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = [DatasetInput(Dataset(name=bench, digest=info["sha256"][:DIGEST_CHARS], source_type="local",
                                   source=json.dumps({"uri": info["path"]}),
                                   profile=json.dumps({"num_rows": info["rows"], "sha256": info["sha256"]})),
                           tags=[InputTag("mlflow.data.context", CONTEXT)])
              for bench, info in sorted(files.items())]
    if inputs:
        mlc.log_inputs(run_id, datasets=inputs)


def log_accuracy_plot(mlc, run_id: str, results: dict[str, dict[str, dict[str, Any]]], title: str) -> None:
    from tasks.comparison.plots import accuracy_plot, series_from_results

    with tempfile.TemporaryDirectory() as tmp:
        accuracy_plot({"this run": series_from_results(results)}, Path(tmp, "accuracy.png"), title)
        mlc.log_artifact(run_id, str(Path(tmp, "accuracy.png")), artifact_path="plots")
