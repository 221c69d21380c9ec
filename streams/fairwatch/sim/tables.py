"""How a table reaches its reader: on a terminal, boxed, when every value fits whole in its column
(never cut with "…", never broken inside a number), else one block of `column: value` lines per
row; anywhere else (a pipe, a file, a CI log), plain tab-separated lines that `grep`, `cut -f`
and `awk -F'\\t'` take as they are, under a `# title` line.

It lives in the simulation stage because the demo prints tables too, and the CLI comes after it.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text


def print_table(table: Table, console: Console | None = None) -> None:
    console = console or Console()
    if console.is_terminal:
        if _narrowest(table) <= console.width:
            for column in table.columns:  # rich then wraps between words, each column as wide as its longest
                column.overflow, column.no_wrap = "fold", False
            console.print(table)
            return
        _print_records(table, console)
        return
    lines = [] if table.title is None else [f"# {_plain(table.title)}"]
    lines.append("\t".join(_plain(column.header) for column in table.columns))
    for row in zip(*(column.cells for column in table.columns)):
        lines.append("\t".join(_plain(cell) for cell in row))
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def _narrowest(table: Table) -> int:
    """The width of the table with every column as narrow as its longest word (header included),
    borders and padding counted: narrower, a value would have to break."""
    words = [max((len(word) for cell in (column.header, *column.cells) for word in _plain(cell).split()), default=1)
             for column in table.columns]
    return sum(w + 2 for w in words) + len(words) + 1


def _print_records(table: Table, console: Console) -> None:
    """Too wide for the terminal: each row as ``column: value`` lines, values whole."""
    headers = [_plain(column.header) for column in table.columns]
    width = max(map(len, headers))
    if table.title is not None:
        console.print(_plain(table.title), style="bold", soft_wrap=True, markup=False, highlight=False)
    for number, row in enumerate(zip(*(column.cells for column in table.columns)), start=1):
        console.print(f"-- {number} --", style="dim", markup=False, highlight=False)
        for header, cell in zip(headers, row):
            console.print(f"{header.ljust(width)}  {_plain(cell)}", soft_wrap=True, markup=False, highlight=False)


def _plain(cell: object) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = Text.from_markup(cell).plain
    else:
        text = str(cell)
    return " ".join(text.split())  # one line per row, whatever the cell held
