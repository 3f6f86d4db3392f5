"""The text tables skillflow prints and stores, drawn by tabulate in the three layouts we use.

Each layout is a tabulate ``TableFormat``, so column widths, padding and alignment come from
tabulate (a header is padded by at least two spaces); only the separators are ours. Every cell is text and left-aligned (numbers arrive
already formatted, e.g. ``"50.00"`` or ``"+0.0667"``, and must print as given).

* ``PLAIN``: ``a | b``, no borders (the metrics summary, after NeMo-Skills' printout);
* ``RULED``: ``PLAIN`` with a ``---+---`` rule under the header (``skillflow compare``);
* ``MARKDOWN``: ``| a | b |`` with ``| --- | --- |`` under the header (MLflow artifacts).
"""
from __future__ import annotations

from typing import Sequence

from tabulate import DataRow, Line, TableFormat, tabulate

_BARE = DataRow("", " | ", "")
PLAIN = TableFormat(lineabove=None, linebelowheader=None, linebetweenrows=None, linebelow=None,
                    headerrow=_BARE, datarow=_BARE, padding=0, with_header_hide=None)
RULED = PLAIN._replace(linebelowheader=Line("", "-", "-+-", ""))
_PIPED = DataRow("| ", " | ", " |")
MARKDOWN = PLAIN._replace(linebelowheader=Line("| ", "-", " | ", " |"), headerrow=_PIPED, datarow=_PIPED)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], layout: TableFormat = MARKDOWN) -> str:
    """The table as lines joined by newlines (no trailing newline), trailing blanks stripped."""
    return tabulate([list(r) for r in rows], headers=list(header), tablefmt=layout, disable_numparse=True,
                    stralign="left")


def markdown_cell(text: object) -> str:
    """One line of text that cannot break a Markdown table (``|`` escaped, whitespace folded)."""
    return " ".join(str(text).split()).replace("|", "\\|")
