"""The `fairwatch` command line. Thin: each verb parses options and calls the library."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fairwatch import __version__
from fairwatch.contracts import Rejection, decode_match_event, decode_verified_outcome

app = typer.Typer(help="fairwatch: live audit of face-recognition systems for demographic bias.", no_args_is_help=True)
console = Console(stderr=True)

STORE_HELP = "clickhouse://user:pass@host:9000/db or chdb:///path (default: FAIRWATCH_CLICKHOUSE)"
DECODERS = {"match-events": decode_match_event, "verified-outcomes": decode_verified_outcome}


@app.command()
def version() -> None:
    """Print the fairwatch version."""
    print(__version__)


@app.command()
def migrate(
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create or upgrade the ClickHouse tables (idempotent, version-aware)."""
    from fairwatch.store import StoreError, migrate as run_migrations, open_store

    try:
        opened = open_store(store)
        results = run_migrations(opened)
        server = ".".join(map(str, opened.server_version()))
    except StoreError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"server_version": server, "migrations": [asdict(r) for r in results]}))
        return
    table = Table(title=f"migrations on {opened.url} (server {server})")
    for column in ("version", "name", "status"):
        table.add_column(column)
    for r in results:
        table.add_row(f"{r.version:03d}", r.name, r.status)
    Console().print(table)


@app.command()
def validate(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A JSONL file, one record per line."),
    kind: str = typer.Option(..., "--kind", help="match-events or verified-outcomes"),
    as_json: bool = typer.Option(False, "--json", help="Print rejections as JSON lines."),
) -> None:
    """Check a JSONL file against the contracts; report every bad line with its number and reason."""
    if kind not in DECODERS:
        console.print(f"[red]error:[/red] --kind must be one of {', '.join(DECODERS)}, got {kind!r}")
        raise typer.Exit(2)
    decode = DECODERS[kind]
    good = bad = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            result = decode(line.rstrip(b"\r\n"))
            if isinstance(result, Rejection):
                bad += 1
                if as_json:
                    print(json.dumps({"line": number, "reason_code": result.code.value, "field": result.field,
                                      "reason": result.message}))
                else:
                    console.print(f"{path}:{number}: {result}")
            else:
                good += 1
    console.print(f"{good} valid, {bad} rejected")
    raise typer.Exit(1 if bad else 0)


@app.command()
def smoke(
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    kafka: Optional[str] = typer.Option(None, "--kafka", envvar="FAIRWATCH_KAFKA", help="Kafka bootstrap servers."),
    alertmanager: Optional[str] = typer.Option(None, "--alertmanager", envvar="FAIRWATCH_ALERTMANAGER"),
) -> None:
    """Touch every service once with the contract examples and say what happened."""
    from fairwatch.smoke import run_smoke

    try:
        steps = run_smoke(store=store, kafka=kafka, alertmanager=alertmanager, log=console.print)
    except Exception as exc:  # each step names itself in the message
        console.print(f"[red]smoke path failed:[/red] {exc}")
        raise typer.Exit(1) from None
    for step in steps:
        print(f"  ok  {step}")


def main() -> None:
    app(prog_name="fairwatch")


if __name__ == "__main__":
    sys.exit(main())
