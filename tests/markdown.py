"""Reading the Markdown tables skillflow writes (tasks/tables.py) back into cells, for assertions
that do not depend on column padding."""
from __future__ import annotations

import re


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text``, the rule under the header left out (an
    escaped ``\\|`` stays inside its cell)."""
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in text.splitlines() if line.startswith("|")]
    return [r for r in rows if not all(set(c) == {"-"} for c in r)]
