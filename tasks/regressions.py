"""Regression checks for nightly re-evaluation: compare a run's metrics with the model's previous
nightly run and, for released models, with the published numbers.

A regression is a drop of ``correct_answer`` beyond the tolerance (percentage points). Every
violation is reported at once, so a person reads one report, not the first failure.
"""
from __future__ import annotations

from dataclasses import dataclass

# Published accuracies (% correct) of the released OpenMath models, greedy and majority@50
# (NeMo-Skills v0.1.1 README and the model cards; openmath spec §11). Keys are our metric names.
PUBLISHED: dict[str, dict[str, float]] = {
    "nvidia/OpenMath-CodeLlama-7b-Python-hf": {"gsm8k.greedy.correct_answer": 75.9, "math.greedy.correct_answer": 43.6,
                                               "gsm8k.majority_at_50.correct_answer": 84.8,
                                               "math.majority_at_50.correct_answer": 55.6},
    "nvidia/OpenMath-Mistral-7B-v0.1-hf": {"gsm8k.greedy.correct_answer": 80.2, "math.greedy.correct_answer": 44.5,
                                           "gsm8k.majority_at_50.correct_answer": 86.9,
                                           "math.majority_at_50.correct_answer": 57.2},
    "nvidia/OpenMath-CodeLlama-13b-Python-hf": {"gsm8k.greedy.correct_answer": 78.8, "math.greedy.correct_answer": 45.5,
                                                "gsm8k.majority_at_50.correct_answer": 86.8,
                                                "math.majority_at_50.correct_answer": 57.6},
    "nvidia/OpenMath-CodeLlama-34b-Python-hf": {"gsm8k.greedy.correct_answer": 80.7, "math.greedy.correct_answer": 48.3,
                                                "gsm8k.majority_at_50.correct_answer": 88.0,
                                                "math.majority_at_50.correct_answer": 60.2},
    "nvidia/OpenMath-Llama-2-70b-hf": {"gsm8k.greedy.correct_answer": 84.7, "math.greedy.correct_answer": 46.3,
                                       "gsm8k.majority_at_50.correct_answer": 90.1,
                                       "math.majority_at_50.correct_answer": 58.3},
    "nvidia/OpenMath-CodeLlama-70b-Python-hf": {"gsm8k.greedy.correct_answer": 84.6, "math.greedy.correct_answer": 50.7,
                                                "gsm8k.majority_at_50.correct_answer": 90.8,
                                                "math.majority_at_50.correct_answer": 60.4},
}


@dataclass(frozen=True)
class Regression:
    metric: str
    baseline: str  # "previous nightly run <id>" or "published"
    expected: float
    observed: float

    @property
    def drop(self) -> float:
        return self.expected - self.observed


def published_for(model_name: str) -> dict[str, float] | None:
    """Published numbers when ``model_name`` ends with a released model's id (with or without -hf)."""
    for name, values in PUBLISHED.items():
        short = name.split("/", 1)[1]
        if model_name.rstrip("/").endswith((short, short.removesuffix("-hf"))):
            return values
    return None


def find_regressions(current: dict[str, float], *, previous: dict[str, float] | None = None,
                     previous_label: str = "previous nightly run", published: dict[str, float] | None = None,
                     tolerance: float = 1.0) -> list[Regression]:
    """Accuracy metrics (``*.correct_answer``) that dropped more than ``tolerance`` points.

    A metric missing from the current run while its baseline has it is a regression too
    (observed NaN), because a benchmark that silently stopped running is not a pass.
    """
    found: list[Regression] = []
    for label, baseline in ((previous_label, previous), ("published", published)):
        for metric, expected in sorted((baseline or {}).items()):
            if not metric.endswith(".correct_answer"):
                continue
            observed = current.get(metric, float("nan"))
            if observed != observed or expected - observed > tolerance:
                found.append(Regression(metric, label, float(expected), float(observed)))
    return found


def format_report(model: str, regressions: list[Regression], tolerance: float) -> str:
    if not regressions:
        return f"{model}: no regression beyond {tolerance} points"
    lines = [f"{model}: {len(regressions)} regression(s) beyond {tolerance} points"]
    width = max(len(r.metric) for r in regressions)
    for r in regressions:
        observed = "missing" if r.observed != r.observed else f"{r.observed:6.2f}"
        lines.append(f"  {r.metric.ljust(width)}  {observed} vs {r.expected:6.2f} ({r.baseline})")
    return "\n".join(lines)
