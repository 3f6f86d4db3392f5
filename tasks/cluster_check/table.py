"""The result of ``cluster_check``: one row per check, with what to do when it fails.

A row is PASS, FAIL or SKIP. SKIP is only for a check that does not apply to the profile (a
container check on a profile without a container runtime) and always says why, so a table never
shows a pass for something that was not tried.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from tasks.tables import markdown_cell, table

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
STATUSES = (PASS, FAIL, SKIP)


@dataclass(frozen=True)
class Row:
    check: str
    target: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"row status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.status == FAIL and not self.fix:
            raise ValueError(f"a failed check needs its fix: {self.check} on {self.target}")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Row":
        return cls(**{k: str(data.get(k) or "") for k in ("check", "target", "status", "detail", "fix")})


def passed(status: str, detail: str, fix: str) -> tuple[str, str, str]:
    """(status, detail, fix) of a check that either passed or failed; the fix only on failure."""
    return status, detail, fix if status == FAIL else ""


def markdown(rows: Iterable[Row], title: str = "") -> str:
    """A Markdown table (the MLflow artifact and the task log show the same text)."""
    rows = list(rows)
    lines = [f"# {title}", ""] if title else []
    lines.append(table(("check", "target", "result", "detail", "fix"),
                       [[markdown_cell(r.check), markdown_cell(r.target), r.status, markdown_cell(r.detail),
                         markdown_cell(r.fix)] for r in rows]))
    lines += ["", summary(rows)]
    return "\n".join(lines) + "\n"


def summary(rows: Iterable[Row]) -> str:
    rows = list(rows)
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    return f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped (not applicable) of {len(rows)} checks"


def failures(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.status == FAIL]
