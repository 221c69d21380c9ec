"""CLI verbs ``fairwatch retention`` (set how long tables keep rows) and ``fairwatch audit retention`` (show it)."""

from __future__ import annotations

import json
from contextlib import closing
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from fairwatch.cli.boundary import failed
from fairwatch.cli.help_texts import STORE_HELP
from fairwatch.sim.tables import print_table


def retention_command(
    days: int = typer.Option(..., "--days", help="Keep rows this many days by their table's time column (logs and"
                                                 " what is derived from them: at least 183)."),
    table: List[str] = typer.Option([], "--table", metavar="NAME", help="Only this table (repeatable; default: every"
                                                                        " table with a retention but dead_letters)."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Set how long tables keep their rows, as ClickHouse TTLs (from ClickHouse 19.6; an older server
    keeps every row until deleted by hand, and the command says so). A period below a table's floor
    (six months for logs, EU AI Act Art. 26(6)) is refused. Needs a user allowed ALTER (the migrator)."""
    from fairwatch.store.clickhouse import StoreError, open_store
    from fairwatch.store.retention import apply_retention

    try:
        with closing(open_store(store)) as opened:
            done = apply_retention(opened, days, list(table) or None)
    except StoreError as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps({"days": days, "done": done}))
        return
    for line in done:
        print(line)


def audit_retention_command(
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON document instead of a table."),
) -> None:
    """What each table keeps: its retention (a TTL, or none: kept until deleted by hand), its floor,
    its rows and the oldest. Exit 1 when a table's TTL is below its floor."""
    from fairwatch.audit.report import open_for_reading
    from fairwatch.store.clickhouse import StoreError
    from fairwatch.store.retention import retention_status, ttl_supported

    try:
        with closing(open_for_reading(store)) as opened:
            tables = retention_status(opened)
            supported = ttl_supported(opened)
    except StoreError as exc:
        raise failed(exc) from None
    below = [t for t in tables if t.status == "below_floor"]
    if as_json:
        print(json.dumps({"ttl_supported": supported, "tables": [t.to_dict() for t in tables]}))
    else:
        out = Console(soft_wrap=True)
        view = Table(title="what each table keeps")
        for column in ("table", "class", "floor (days)", "retention", "rows", "oldest", "status"):
            view.add_column(column)
        for t in tables:
            kept = "until deleted by hand" if t.ttl_days is None else f"{t.ttl_days} days"
            view.add_row(t.table, t.kind, str(t.floor_days), kept, str(t.rows),
                         "-" if t.oldest is None else t.oldest.isoformat(), t.status.replace("_", " "))
        print_table(view, out)
        if not supported:
            out.print("this ClickHouse has no TTL (from 19.6): nothing is deleted automatically; every row is kept"
                      " until deleted by hand")
    if below:
        raise failed(ValueError(f"below the floor: {', '.join(f'{t.table} ({t.ttl_days} < {t.floor_days} days)' for t in below)}"), 1)
