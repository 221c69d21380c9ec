"""CLI verb ``fairwatch audit two-person``: were acted-on identifications confirmed by two people?"""

from __future__ import annotations

import json
from contextlib import closing
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fairwatch.cli.boundary import failed
from fairwatch.cli.help_texts import STORE_HELP
from fairwatch.sim.tables import print_table


class NoSearches(ValueError):
    """No identification search in the window for the scope asked."""


def two_person_command(
    window: Optional[str] = typer.Option(None, "--window", help="Back from now: 15m, 1h, 24h, 7d (default 1h)."),
    start: Optional[str] = typer.Option(None, "--from", help="Window start, RFC 3339 (event time)."),
    end: Optional[str] = typer.Option(None, "--to", help="Window end, RFC 3339."),
    deployment: Optional[str] = typer.Option(None, "--deployment"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm"),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of the intervals."),
    bucket_seconds: int = typer.Option(60, "--bucket-seconds", envvar="FAIRWATCH_BUCKET_SECONDS"),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON document instead of tables."),
) -> None:
    """Two-person verification (EU AI Act Art. 14(5)): per deployment, the identification searches
    whose verdict records an action, how many were confirmed by two distinct verifiers, the share with
    its interval, and every one that was not (one verifier, or none recorded). Exit 1 when the window
    holds no identification search."""
    from fairwatch.audit.report import open_for_reading
    from fairwatch.audit.window import WindowError, resolve_window
    from fairwatch.core.two_person import two_person_compliance
    from fairwatch.store.clickhouse import StoreError
    from fairwatch.store.two_person import read_acted_verdicts, searched_deployments

    try:
        if not 0 < confidence < 1:
            raise ValueError(f"--confidence must be between 0 and 1, got {confidence}")
        span = resolve_window(window, start, end, bucket_seconds)
        with closing(open_for_reading(store)) as opened:
            deployments = searched_deployments(opened, span.start, span.end, deployment, algorithm)
            acted = read_acted_verdicts(opened, span.start, span.end, deployment, algorithm)
        if not deployments:
            w = span.to_dict()
            raise NoSearches(f"no identification searches in [{w['from']}, {w['to']})"
                             f"{' for deployment ' + deployment if deployment else ''}: nothing to judge")
        results = two_person_compliance(acted, deployments, confidence)
    except NoSearches as exc:
        raise failed(exc, 1) from None
    except (WindowError, StoreError, ValueError) as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps({"window": span.to_dict(), "deployments": [r.to_dict() for r in results]},
                         allow_nan=False))
        return
    out = Console(soft_wrap=True)
    table = Table(title=f"acted-on identifications confirmed by two distinct verifiers, {confidence:.0%} intervals")
    for column in ("deployment", "acted on", "two verifiers", "one", "none recorded", "share [interval]", "status"):
        table.add_column(column)
    for r in results:
        share = "-" if r.share is None else f"{r.share:.3f} [{r.low:.3f}, {r.high:.3f}]"
        status = "no action recorded: nothing to judge" if r.status == "no_actions" else r.status
        table.add_row(r.deployment, str(r.acted), str(r.confirmed), str(r.single), str(r.unrecorded), share, status)
    print_table(table, out)
    for r in results:
        for v in r.exceptions:
            who = ", ".join(sorted(set(v.verifiers))) or "no verifier recorded"
            out.print(f"not confirmed by two people: {r.deployment} {v.event_id} ({v.truth}; {who})")
