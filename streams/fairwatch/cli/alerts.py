"""`fairwatch alerts`: incidents from the store for a window, as a table or a JSON array of alert records."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fairwatch.sim.tables import print_table

STATES = ("firing", "resolved", "all")


def alerts_command(
    window: Optional[str] = typer.Option(None, "--window", help="Back from now: 15m, 1h, 24h, 7d (default 24h)."),
    start: Optional[str] = typer.Option(None, "--from", help="Window start, RFC 3339."),
    end: Optional[str] = typer.Option(None, "--to", help="Window end, RFC 3339."),
    state: str = typer.Option("all", "--state", help="firing, resolved or all."),
    deployment: Optional[str] = typer.Option(None, "--deployment"),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE",
                                        help="clickhouse://user:pass@host:9000/db or chdb:///path"),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of alerts (schemas/alert.schema.json)."),
) -> None:
    """Incidents open at some time in a window (newest first): firing, resolved or all."""
    from fairwatch.audit.window import WindowError, resolve_window
    from fairwatch.detect.reads import read_alerts
    from fairwatch.cli.boundary import failed
    from fairwatch.store.clickhouse import StoreError, open_store

    try:
        if state not in STATES:
            raise WindowError(f"--state must be one of {', '.join(STATES)}, got {state!r}")
        span = resolve_window(window or (None if start or end else "24h"), start, end, 1)
        opened = open_store(store, create=False)
        alerts = read_alerts(opened, span.start, span.end, state, deployment)
        opened.close()
    except (WindowError, StoreError) as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps([a.to_record() for a in alerts], allow_nan=False))
        return
    window_text = f"[{span.to_dict()['from']}, {span.to_dict()['to']})"
    if not alerts:
        Console().print(f"no incidents in {window_text}")
        return
    table = Table(title=f"incidents open in {window_text}")
    for column in ("state", "severity", "type", "deployment", "algorithm", "group", "metric", "value [CI]",
                   "baseline", "opened_at", "resolved_at"):
        table.add_column(column)
    for a in alerts:
        value = "-" if a.estimate is None else f"{a.estimate:.4g} [{a.low:.4g}, {a.high:.4g}]"
        record = a.to_record()
        table.add_row(a.state, a.severity, a.type, a.deployment, a.algorithm, a.group, a.metric, value,
                      "-" if a.baseline is None else f"{a.baseline:.4g}", record["opened_at"],
                      record["resolved_at"] or "-")
    print_table(table)
