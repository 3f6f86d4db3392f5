"""tasks/tables.py: the three layouts (the metrics summary, the compare table, the Markdown
artifacts): separators, padding, and cells printed as given."""
from __future__ import annotations

from tasks.tables import MARKDOWN, PLAIN, RULED, markdown_cell, table
from tests.markdown import markdown_rows

HEADER = ("mode", "n", "acc")
ROWS = [["greedy", "1319", "12.50"], ["majority@50", "7", ""]]


def test_plain_pads_columns_and_strips_line_ends():
    assert table(HEADER, ROWS, PLAIN) == ("mode        | n    | acc\n"
                                          "greedy      | 1319 | 12.50\n"
                                          "majority@50 | 7    |")


def test_ruled_draws_the_rule_under_the_header():
    assert table(HEADER, ROWS, RULED).splitlines()[1] == "------------+------+------"


def test_markdown_is_a_padded_pipe_table():
    assert table(HEADER, ROWS, MARKDOWN) == ("| mode        | n    | acc   |\n"
                                             "| ----------- | ---- | ----- |\n"
                                             "| greedy      | 1319 | 12.50 |\n"
                                             "| majority@50 | 7    |       |")


def test_a_header_wider_than_its_cells_gets_tabulates_two_spaces():
    assert table(("evaluation_mode", "n"), [["greedy", "3"]], PLAIN) == ("evaluation_mode   | n\n"
                                                                         "greedy            | 3")


def test_cells_that_look_like_numbers_print_as_given():
    # tabulate would re-format and right-align "0.10" and "+1.00" as numbers; the tables print them verbatim.
    text = table(("x",), [["0.10"], ["+1.00"], ["1e-05"]], PLAIN)
    assert text.splitlines()[1:] == ["0.10", "+1.00", "1e-05"]


def test_markdown_cell_keeps_a_table_row_whole():
    cell = markdown_cell("a | b\n  c")
    assert cell == "a \\| b c"
    assert markdown_rows(table(("k", "v"), [["x", cell]])) == [["k", "v"], ["x", "a \\| b c"]]
