"""How a table reaches its reader: on a terminal, boxed, with long cells folded onto more lines
(never cut with "…"); anywhere else (a pipe, a file, a CI log), plain tab-separated lines that
`grep`, `cut -f` and `awk -F'\\t'` take as they are, under a `# title` line.

It lives in the simulation stage because the demo prints tables too, and the CLI comes after it.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text


def print_table(table: Table, console: Console | None = None) -> None:
    console = console or Console()
    if console.is_terminal:
        for column in table.columns:
            column.overflow, column.no_wrap = "fold", False
        console.print(table)
        return
    lines = [] if table.title is None else [f"# {_plain(table.title)}"]
    lines.append("\t".join(_plain(column.header) for column in table.columns))
    for row in zip(*(column.cells for column in table.columns)):
        lines.append("\t".join(_plain(cell) for cell in row))
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def _plain(cell: object) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = Text.from_markup(cell).plain
    else:
        text = str(cell)
    return " ".join(text.split())  # one line per row, whatever the cell held
