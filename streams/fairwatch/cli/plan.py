"""CLI verb ``fairwatch plan``: the capacity model (fairwatch.core.capacity) for a load."""

from __future__ import annotations

import json

import typer

from fairwatch.cli.boundary import failed
from fairwatch.core.capacity import (
    DEFAULT_LABEL_DELAY_HOURS,
    DEFAULT_VERIFIED_SHARE,
    CapacityPlan,
    PlanError,
    PlanInputs,
    capacity_plan,
    used_coefficients,
)

LABELS = {
    "records_per_second": "input records",
    "workers_for_cpu": "workers for CPU",
    "ids_held": "join: ids held",
    "join_state": "join state",
    "workers_for_memory": "workers for join state",
    "workers": "workers",
    "partitions": "partitions",
    "join_state_per_worker": "join state per worker",
    "join_log_per_worker": "worker disk",
    "kafka_ingress": "Kafka ingress",
    "kafka_disk": "Kafka disk",
    "kafka_brokers": "Kafka brokers",
    "group_count_rows_per_day": "group_counts rows",
    "clickhouse_disk_per_day": "ClickHouse disk per day",
    "clickhouse_disk_retention": "ClickHouse disk, retention",
    "clickhouse_shards": "ClickHouse shards",
    "clickhouse_nodes": "ClickHouse nodes",
    "clickhouse_insert_cpu": "ClickHouse insert CPU",
}
COUNTED = {"workers", "partitions", "brokers", "shards", "nodes"}  # "1 worker", not "1 workers"


def plan_command(
    events_per_second: float = typer.Option(..., "--events-per-second", help="Match events a second, all sites."),
    sites: int = typer.Option(..., "--sites", help="Deployments sending them."),
    groups: int = typer.Option(..., "--groups", help="Groups counted per site (attribute labels and intersections)."),
    retention_days: int = typer.Option(..., "--retention-days", help="Days ClickHouse keeps every row."),
    verified_share: float = typer.Option(DEFAULT_VERIFIED_SHARE.value, "--verified-share",
                                         help="Share of events that get a verified outcome (default: the simulator's"
                                              " default scenario)."),
    label_delay_hours: float = typer.Option(DEFAULT_LABEL_DELAY_HOURS.value, "--label-delay-hours",
                                            help="Mean hours from an event to its verified outcome (default: the"
                                                 " simulator's default scenario)."),
    ttl_days: float = typer.Option(30.0, "--ttl-days", help="The workers' FAIRWATCH_TTL_DAYS: how long the join holds"
                                                            " an id after its last record, paired or not."),
    attribute_sets: int = typer.Option(3, "--attribute-sets", help="Attributes and intersections counted (an outcome"
                                                                   " counts in one group of each)."),
    worker_memory_gib: float = typer.Option(16.0, "--worker-memory-gib", help="Join state one worker may hold."),
    node_disk_tib: float = typer.Option(8.0, "--node-disk-tib", help="Usable disk of a Kafka broker or ClickHouse node."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """What a load needs: partitions, workers, Kafka brokers, ClickHouse nodes, disk per day and over
    the retention, join-state memory per worker; each line with how it was computed, then the
    measured coefficients and the benchmark run each comes from (docs/scaling.md, "Capacity model")."""
    try:
        plan = capacity_plan(PlanInputs(events_per_second, sites, groups, retention_days, verified_share,
                                        label_delay_hours, ttl_days, attribute_sets, worker_memory_gib, node_disk_tib))
    except PlanError as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps(plan.to_dict()))
        return
    print("\n".join(render(plan)))


def _value(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or float(value).is_integer() else f"{value:,.2f}"


def render(plan: CapacityPlan) -> list[str]:
    """The plan as text: one line a figure, then the coefficients with their sources."""
    i = plan.inputs
    lines = [f"plan for {i.events_per_second:,g} match events/s from {i.sites:,} sites, {i.groups:,} groups,"
             f" kept {i.retention_days:,} days",
             f"assuming: verified share {i.verified_share:g}, label delay {i.label_delay_hours:g} h, join TTL"
             f" {i.ttl_days:g} days, {i.attribute_sets} attribute sets, {i.worker_memory_gib:g} GiB of join state a"
             f" worker, {i.node_disk_tib:g} TiB a node", ""]
    for name, figure in plan.figures().items():
        unit = figure.unit[:-1] if figure.value == 1 and figure.unit in COUNTED else figure.unit
        lines.append(f"{LABELS[name]:<27} {_value(figure.value):>14} {unit:<10} {figure.how}")
    lines += ["", "coefficients (measured on 2 cores, Intel(R) Xeon(R) Processor):"]
    for name, c in used_coefficients(i).items():
        lines.append(f"  {name:<29} {c.value:>9g} {c.unit:<14} {c.source}")
    return lines
