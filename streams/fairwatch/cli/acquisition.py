"""CLI verb ``fairwatch audit acquisition``: failure to acquire per group, with intervals and differentials."""

from __future__ import annotations

import json
import math
from contextlib import closing
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fairwatch.cli.boundary import failed
from fairwatch.cli.help_texts import STORE_HELP
from fairwatch.sim.tables import print_table


class NoAttempts(ValueError):
    """No acquisition attempt in the window for the scope asked."""


def _number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def acquisition_command(
    window: Optional[str] = typer.Option(None, "--window", help="Back from now: 15m, 1h, 24h, 7d (default 1h)."),
    start: Optional[str] = typer.Option(None, "--from", help="Window start, RFC 3339 (event time)."),
    end: Optional[str] = typer.Option(None, "--to", help="Window end, RFC 3339."),
    deployment: Optional[str] = typer.Option(None, "--deployment"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm"),
    intersections: str = typer.Option("", "--intersections", envvar="FAIRWATCH_INTERSECTIONS",
                                      help="Attribute combinations to count too, e.g. 'sex&race, race&age'."),
    target: Optional[float] = typer.Option(None, "--target", help="An FTA each group's status is judged against."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of the intervals."),
    bucket_seconds: int = typer.Option(60, "--bucket-seconds", envvar="FAIRWATCH_BUCKET_SECONDS"),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON document instead of tables."),
) -> None:
    """Failure to acquire (ISO/IEC 19795-10): per group, the attempts, the failures (no face found,
    or below the quality bar), the rate with its exact interval (widened by the design effect of
    attempts sharing a cluster_id), its status, and the differentials between the groups of each
    attribute from simultaneous intervals. Exit 1 when the window holds no attempt."""
    from fairwatch.audit.report import open_for_reading
    from fairwatch.audit.window import WindowError, resolve_window
    from fairwatch.core.acquisition import acquisition_estimates
    from fairwatch.core.config import CoreConfig
    from fairwatch.store.acquisitions import read_acquisition_counts, read_acquisition_moments
    from fairwatch.store.clickhouse import StoreError
    from fairwatch.stream.worker_settings import SettingsError, parse_intersections

    try:
        if not 0 < confidence < 1:
            raise ValueError(f"--confidence must be between 0 and 1, got {confidence}")
        if target is not None and not 0 < target < 1:
            raise ValueError(f"--target must be between 0 and 1, got {target}")
        config = CoreConfig(confidence=confidence, intersections=parse_intersections(intersections))
        span = resolve_window(window, start, end, bucket_seconds)
        with closing(open_for_reading(store)) as opened:
            scope = (span.start, span.end, config.intersections, deployment, algorithm)
            counts = read_acquisition_counts(opened, *scope)
            moments = read_acquisition_moments(opened, *scope)
        if not counts:
            w = span.to_dict()
            raise NoAttempts(f"no acquisition attempts in [{w['from']}, {w['to']})"
                             f"{' for deployment ' + deployment if deployment else ''}: nothing to judge")
        groups, differentials = acquisition_estimates(counts, config, moments, target)
    except NoAttempts as exc:
        raise failed(exc, 1) from None
    except (WindowError, StoreError, SettingsError, ValueError) as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps({"window": span.to_dict(), "confidence": confidence,
                          "groups": [{k: _number(v) for k, v in g.to_dict().items()} for g in groups],
                          "differentials": [{k: _number(v) for k, v in d.to_dict().items()} for d in differentials]},
                         allow_nan=False))
        return
    out = Console(soft_wrap=True)
    table = Table(title=f"failure to acquire per group, {confidence:.0%} intervals")
    for column in ("deployment", "algorithm", "attribute", "group", "attempts", "failures", "no face", "low quality",
                   "FTA [interval]", "deff", "status"):
        table.add_column(column)
    for g in groups:
        d, a, attribute, group = g.key
        fta = g.fta
        rate = "-" if fta.rate is None else f"{fta.rate:.4f} [{fta.low:.4f}, {fta.high:.4f}]"
        status = "too little evidence" if str(fta.status) == "insufficient" else str(fta.status)
        table.add_row(d, a, attribute, group, str(fta.n), str(fta.errors), str(g.no_face), str(g.low_quality), rate,
                      f"{fta.design_effect:.2f}", status)
    print_table(table, out)
    for diff in differentials:
        if diff.metric not in ("max_min_ratio", "max_min_difference"):
            continue
        name = f"{diff.scope.deployment} {diff.scope.algorithm} {diff.scope.attribute}: FTA {diff.metric}"
        if str(diff.status) == "insufficient" or diff.value is None:
            out.print(f"{name}: too little evidence to judge ({diff.groups} groups measured)")
            continue
        high = "unbounded" if diff.high is None else f"{diff.high:.3g}"
        out.print(f"{name} {diff.value:.3g} [{diff.low:.3g}, {high}] (highest {diff.max_group}, lowest {diff.min_group})")
