"""`fairwatch policy check`: what a policy's drift detectors will see, from the stored volumes."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Optional

from fairwatch.cli.boundary import error, failed
from fairwatch.cli.help_texts import STORE_HELP, PlainUsageCommand, WrappedHelpGroup


def _hours(value: float | None) -> str:
    if value is None:
        return ">24h"
    return f"{value:.1f}h" if value < 10 else f"{value:.0f}h"


def register(app) -> None:
    """Add ``fairwatch policy check`` to the CLI."""
    import typer
    from rich.console import Console
    from rich.table import Table

    from fairwatch.sim.tables import print_table

    group = typer.Typer(rich_markup_mode=None, cls=WrappedHelpGroup,
                        help="Alerting policies: check what they can detect.", no_args_is_help=True)
    console = Console(stderr=True, soft_wrap=True)  # diagnostics whole, one per line

    @group.command("check", cls=PlainUsageCommand)
    def check_command(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Policy file (schemas/policy.schema.json)."),
        store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
        shift: Optional[list[float]] = typer.Option(None, "--shift", min=1.0,
                                                    help="Rate multiples to simulate (repeatable; default 1.5, 2, 3)."),
        replicates: int = typer.Option(200, "--replicates", min=10, max=10_000,
                                       help="Simulated streams per group, metric and shift."),
        bucket_seconds: int = typer.Option(60, "--bucket-seconds", envvar="FAIRWATCH_BUCKET_SECONDS"),
        as_json: bool = typer.Option(False, "--json", help="Print the JSON document instead of tables."),
    ) -> None:
        """Delay and power of the policy's drift detectors per group, simulated on its stored baseline.

        The policy's own detectors (band, baseline, dispersion, threshold) are fed simulated streams with each group's baseline volume and rate times each shift: a policy that cannot see a 2x shift within a day shows here before it goes live."""  # noqa: E501
        from fairwatch.audit.report import open_for_reading
        from fairwatch.core.config import CoreConfig
        from fairwatch.detect.policy import PolicyError, load_policy
        from fairwatch.detect.power import SHIFTS, NoBaseline, check_policy
        from fairwatch.store.clickhouse import StoreError

        try:
            policy = load_policy(file)
            config = CoreConfig(bucket_seconds=bucket_seconds)
            with closing(open_for_reading(store)) as opened:
                with console.status("simulating the policy's detectors"):
                    result = check_policy(opened, config, policy, tuple(shift or SHIFTS), replicates)
        except (PolicyError, NoBaseline, StoreError, ValueError) as exc:
            raise failed(exc) from None
        if not result.rows:
            error(f"no error-rate stream of {result.deployment} has min_evidence"
                  f" ({policy.min_evidence}) comparisons in the baseline: nothing would be tested"
                  f" ({len(result.insufficient)} group and metric pairs short)")
            raise typer.Exit(2)
        if result.data_until:
            console.print(f"warning: the baseline runs to {result.baseline_to} but the data stop at"
                          f" {result.data_until}: volumes are those of the data so far")
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
            return
        out = Console(soft_wrap=True)  # one line per statement, whole, for grep
        out.print(f"policy {file} (deployment {result.deployment}): baseline {result.baseline_from} to "
                  f"{result.baseline_to}, {result.tested_streams} tested streams (error-rate streams below;"
                  f" disparity and score streams share the budget), threshold 10^{result.log10_threshold:.2f},"
                  f" band {policy.band}, {policy.false_alarms_per_day} false alarms a day allowed")
        shifts = sorted({r.shift for r in result.rows})
        algorithms = sorted({r.algorithm for r in result.rows})
        several = len(algorithms) > 1
        # no box and one space between columns: the table fits 80 columns
        table = Table(title="per shift: power within 24 h / median delay (simulated)"
                            + ("" if several else f", algorithm {', '.join(algorithms)}"),
                      box=None, padding=(0, 1), pad_edge=False, title_justify="left")
        dispersed = any(r.dispersion > 1 for r in result.rows)  # the phi column only where it says something
        for column in (*(("algorithm",) if several else ()), "group", "metric", "rate", "n/bkt", "edge/p",
                       *(("phi",) if dispersed else ()), *(f"{s:g}x" for s in shifts)):
            table.add_column(column, overflow="fold")
        by_stream: dict[tuple, dict[float, object]] = {}
        for r in result.rows:
            by_stream.setdefault((r.algorithm, r.attribute, r.group, r.metric), {})[r.shift] = r
        for (algorithm, attribute, group_label, metric), cells in by_stream.items():
            first = next(iter(cells.values()))
            table.add_row(*((algorithm,) if several else ()),
                          f"{attribute}={group_label}" if attribute != "*" else "*", metric,
                          f"{first.baseline_rate:.2g}", f"{first.comparisons_per_bucket:.0f}",
                          "-" if first.edge_over_rate is None else f"{first.edge_over_rate:.2f}",
                          *((f"{first.dispersion:.2f}",) if dispersed else ()),
                          *(f"{cells[s].power_24h:.2f}/{_hours(cells[s].median_delay_hours)}" for s in shifts))
        print_table(table, out)
        for thin in result.insufficient:
            out.print(f"not tested: {thin['algorithm']} {thin['group']} {thin['metric']}: "
                      f"{thin['baseline_comparisons']:.0f} baseline comparisons < min_evidence {thin['min_evidence']}")
        for s in shifts:
            # a shift at or below a stream's edge is within its band: not a departure, not counted
            departures = [r for r in result.rows if r.shift == s and r.edge_over_rate is not None
                          and s > r.edge_over_rate]
            strong = sum(1 for r in departures if r.power_24h >= 0.95)
            within = sum(1 for r in result.rows if r.shift == s) - len(departures)
            out.print(f"{s:g}x shift: {strong} of {len(departures)} streams detect it within 24 h with probability"
                      f" >= 0.95" + (f"; within the band of {within} more" if within else ""))
        out.print("Simulated with binomial counts from the first bucket on: overdispersed data vary more and later"
                  " changes take longer (docs/detection.md).")

    app.add_typer(group, name="policy")
