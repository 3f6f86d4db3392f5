"""The text tables skillflow prints and stores, drawn by tabulate in the three layouts we use.

Each layout names a tabulate ``TableFormat``, so column widths, padding and alignment come from
tabulate (a header is padded by at least two spaces); only the separators are ours. Every cell is
text and left-aligned (numbers arrive already formatted, e.g. ``"50.00"`` or ``"+0.0667"``, and
must print as given).

* ``PLAIN``: ``a | b``, no borders (the metrics summary, after NeMo-Skills' printout);
* ``RULED``: ``PLAIN`` with a ``---+---`` rule under the header (``skillflow compare``);
* ``MARKDOWN``: ``| a | b |`` with ``| --- | --- |`` under the header (MLflow artifacts).
"""
from __future__ import annotations

from typing import Sequence

# Layout names; tabulate itself is imported when a table is drawn, so that the CLI modules that
# print tables keep ``skillflow --help`` to the standard library (tests/unit/test_cli_packages.py).
PLAIN, RULED, MARKDOWN = "plain", "ruled", "markdown"


def _layout(name: str):
    from tabulate import DataRow, Line, TableFormat

    bare, piped = DataRow("", " | ", ""), DataRow("| ", " | ", " |")
    plain = TableFormat(lineabove=None, linebelowheader=None, linebetweenrows=None, linebelow=None,
                        headerrow=bare, datarow=bare, padding=0, with_header_hide=None)
    layouts = {PLAIN: plain,
               RULED: plain._replace(linebelowheader=Line("", "-", "-+-", "")),
               MARKDOWN: plain._replace(linebelowheader=Line("| ", "-", " | ", " |"), headerrow=piped, datarow=piped)}
    return layouts[name]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], layout: str = MARKDOWN) -> str:
    """The table as lines joined by newlines (no trailing newline), trailing blanks stripped."""
    from tabulate import tabulate

    return tabulate([list(r) for r in rows], headers=list(header), tablefmt=_layout(layout), disable_numparse=True,
                    stralign="left")


def markdown_cell(text: object) -> str:
    """One line of text that cannot break a Markdown table (``|`` escaped, whitespace folded)."""
    return " ".join(str(text).split()).replace("|", "\\|")
