"""CLI verb ``fairwatch audit scores``: per-group DET points and the threshold for the intended FMR."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fairwatch.cli.boundary import failed
from fairwatch.cli.help_texts import STORE_HELP
from fairwatch.sim.tables import print_table


class NothingToReport(ValueError):
    """No verified comparison in the window for the scope asked."""


def scores_command(
    window: Optional[str] = typer.Option(None, "--window", help="Back from now: 15m, 1h, 24h, 7d (default 1h)."),
    start: Optional[str] = typer.Option(None, "--from", help="Window start, RFC 3339 (event time)."),
    end: Optional[str] = typer.Option(None, "--to", help="Window end, RFC 3339."),
    deployment: Optional[str] = typer.Option(None, "--deployment"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm"),
    attribute: Optional[str] = typer.Option(None, "--attribute", help="Only this attribute, e.g. race or sex&race."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    policy: Optional[Path] = typer.Option(None, "--policy", exists=True, dir_okay=False,
                                          help="Policy file: its target_fmr is the intended FMR unless --target-fmr"
                                               " is given."),
    target_fmr: Optional[float] = typer.Option(None, "--target-fmr", help="The intended FMR (FPIR in"
                                                                          " identification), e.g. 1e-4."),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of the intervals."),
    intersections: Optional[str] = typer.Option(
        None, "--intersections", envvar="FAIRWATCH_INTERSECTIONS",
        help="Intersections to give scores for, e.g. 'sex&race,sex&age' (default: those counted in the store for the"
             " window)."),
    bucket_seconds: int = typer.Option(60, "--bucket-seconds", envvar="FAIRWATCH_BUCKET_SECONDS"),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON document instead of tables."),
) -> None:
    """Scores, not only decisions: per group, FMR(t) and FNMR(t) at the decision thresholds and at the
    overall threshold for the intended FMR, and the threshold at which each group's own FMR would meet
    it, with intervals, and the FNMR it would cost ("too little evidence" where the verified impostor
    comparisons cannot tell). Identification: FPIR(t), FNIR(t) on the mate's own score, and FNIR at
    rank <= R (rank 1 and up to the longest candidate list). Exit 1 when the window holds no verified
    comparison."""
    from fairwatch.audit.report import open_for_reading
    from fairwatch.audit.report_scores import score_section
    from fairwatch.audit.window import WindowError, resolve_window
    from fairwatch.core.config import CoreConfig
    from fairwatch.store.clickhouse import StoreError
    from fairwatch.store.group_counts import counted_intersections
    from fairwatch.stream.worker_settings import SettingsError, parse_intersections

    try:
        if policy is not None and target_fmr is None:
            from fairwatch.detect.policy import load_policy

            target_fmr = load_policy(policy).target_fmr
        span = resolve_window(window, start, end, bucket_seconds)
        with closing(open_for_reading(store)) as opened:
            combos = (parse_intersections(intersections) if intersections is not None
                      else counted_intersections(opened, span.start, span.end, deployment, algorithm))
            config = CoreConfig(bucket_seconds=bucket_seconds, target_fmr=target_fmr, confidence=confidence,
                                intersections=combos)
            section, _ = score_section(opened, span, config, deployment, algorithm, attribute)
        if not section["det"] and not section["thresholds"]:
            scope = ", ".join(f"{k} {v}" for k, v in (("deployment", deployment), ("algorithm", algorithm),
                                                      ("attribute", attribute)) if v) or "all deployments"
            w = span.to_dict()
            raise NothingToReport(f"no verified comparisons in [{w['from']}, {w['to']}) for {scope}: nothing to"
                                  " report")
    except NothingToReport as exc:
        raise failed(exc, 1) from None
    except (WindowError, StoreError, SettingsError, ValueError) as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps({"window": span.to_dict(), **section}, allow_nan=False))
        return
    render_scores(section)


def _n(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _ci(row: dict, name: str) -> str:
    if row.get(name) is None:
        return "-"
    return f"{_n(row[name])} [{_n(row[name + '_low'])}, {_n(row[name + '_high'])}]"


def render_scores(section: dict) -> None:
    from fairwatch.audit.report_scores import fnmr_text, rank_tables, threshold_text

    out = Console(soft_wrap=True)
    if section["thresholds"]:
        table = Table(title=f"threshold at which each group's FMR (FPIR) meets the intended {section['target_fmr']:g},"
                            f" {section['confidence']:.0%} intervals")
        for column in ("deployment", "algorithm", "mode", "attribute", "group", "verified impostor", "status",
                       "threshold [interval]", "FMR there [CI]", "FNMR it would cost [interval]"):
            table.add_column(column)
        for r in section["thresholds"]:
            table.add_row(r["deployment"], r["algorithm"], r["mode"], r["attribute"], r["group"], _n(r["impostors"]),
                          r["status"].replace("_", " "), threshold_text(r), _ci(r, "fmr"),
                          fnmr_text(r) if r["status"] == "found" else "-")
        print_table(table, out)
    else:
        out.print("no intended FMR (give --target-fmr or a --policy with target_fmr): no threshold computed")
    points = Table(title="DET points: FMR(t) and FNMR(t) per group")
    for column in ("deployment", "algorithm", "mode", "attribute", "group", "threshold", "point", "FMR [CI]",
                   "FNMR [CI]"):
        points.add_column(column)
    for r in section["det"]:
        points.add_row(r["deployment"], r["algorithm"], r["mode"], r["attribute"], r["group"], _n(r["threshold"], 6),
                       r["point"], _ci(r, "fmr"), fnmr_text(r))
    print_table(points, out)
    if any(r["fnmr_exact"] is False for r in section["det"]):
        out.print("(upper bound): FNIR(t) below the threshold a candidate list that did not name the mate was cut"
                  " at; that mate is counted a miss, though it might have been returned")
    for scope, ranks, rows in rank_tables(section):
        table = Table(title=f"FNIR at rank <= R, {' / '.join(scope)}: verified mated searches with a candidate list,"
                            f" {section['confidence']:.0%} intervals (1 - FNIR(R): the CMC)")
        for column in ["attribute", "group", "mated searches"] + [f"rank {'1' if r == 1 else f'<= {r}'}"
                                                                    for r in ranks]:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        print_table(table, out)
