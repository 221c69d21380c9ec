"""The capacity model behind ``fairwatch plan``: workers, partitions, Kafka and ClickHouse for a load.

Pure arithmetic on the load (match events a second, sites, groups, retention) and on coefficients
measured by the benchmarks on the development machine (2 cores, ``Intel(R) Xeon(R) Processor``);
each :class:`Coefficient` names the benchmark and the run it comes from, and docs/scaling.md
("Capacity model") gives the formulas. What the model rests on, in short:

- a worker is sized for both its CPU (at most ``HEADROOM`` of the most records a second one worker
  drained) and its memory: its join holds *every* event id, paired or not, until the join TTL
  (``FAIRWATCH_TTL_DAYS``) after its last record, so the ids held are the event rate times the TTL
  (plus the label delay of the verified share, plus the hour between two expiry passes);
- partitions are twice the workers (at least 8): the count is fixed once the topics exist;
- Kafka keeps the input topics for the broker default of 168 hours (``fairwatch topics`` sets no
  retention) and the compacted join log, both at replication factor 3;
- ClickHouse keeps every table's rows for the retention, in 2 replicas; the per-group counts have
  a row per site, group, minute bucket and Kafka partition that has a labeled outcome.

Examples
--------
>>> plan = capacity_plan(PlanInputs(events_per_second=1000, sites=10, groups=20, retention_days=365))
>>> plan.workers.value, plan.partitions.value, plan.kafka_brokers.value
(31, 62, 3)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

DAY = 86_400
HOUR = 3_600
GiB = 2**30
TiB = 2**40


@dataclass(frozen=True, slots=True)
class Coefficient:
    """A number the model uses: its value, unit, and where it comes from (benchmark and run, or a
    setting's default)."""

    value: float
    unit: str
    source: str


# bench_capacity.py at e4d1ad2 on 2026-12-07 (python benchmarks/bench_capacity.py: 100,000 match
# events of the default scenario, seed 3; UUID ids; chDB 26.x, after OPTIMIZE FINAL)
_CAPACITY_RUN = "bench_capacity.py, 2026-12-07, commit e4d1ad2, UUID ids"
COEFFICIENTS: dict[str, Coefficient] = {
    "worker_records_per_second": Coefficient(
        47_000, "records/s",
        "bench_pipeline.py --only 'fairwatch[batch100]': the lowest of 14 runs (47k-55k) of one worker,"
        " 100-record envelopes, drained; 2026-12-07, commit a0b1960"),
    "join_bytes_per_id": Coefficient(
        202.0, "B", "bench_memory.py: RSS growth per pending id at 10M, UUID ids; 2026-12-07 at commit 14dae12"),
    "clickhouse_cpu_us_per_record": Coefficient(
        3.9, "CPU us/record", "bench_profile.py: ClickHouse 18.16 under a live worker; 2026-12-07 at commit 14dae12"),
    "outcomes_per_verified_event": Coefficient(1.0019, "outcomes", f"{_CAPACITY_RUN} (simulated: revisions)"),
    "match_event_bytes": Coefficient(53.6, "B/row", f"{_CAPACITY_RUN}: match_events"),
    "verified_outcome_bytes": Coefficient(32.7, "B/row", f"{_CAPACITY_RUN}: verified_outcomes"),
    "labeled_outcome_bytes": Coefficient(39.1, "B/row", f"{_CAPACITY_RUN}: labeled_outcomes"),
    "group_count_bytes": Coefficient(10.2, "B/row", f"{_CAPACITY_RUN}: group_counts"),
    "evidence_bytes_per_leaf": Coefficient(
        228.8, "B/leaf", f"{_CAPACITY_RUN}: evidence_leaves + evidence_hashes (2 hashes a leaf)"),
    "kafka_event_bytes": Coefficient(321.8, "B/record", f"{_CAPACITY_RUN}: producer SDK envelopes, uncompressed"),
    "kafka_outcome_bytes": Coefficient(168.7, "B/record", f"{_CAPACITY_RUN}: producer SDK envelopes, uncompressed"),
    "join_log_bytes_per_id": Coefficient(82.1, "B", f"{_CAPACITY_RUN}: LabelJoin.export_slots"),
}
# the defaults of the options where the site knows better: the simulator's default scenario
DEFAULT_VERIFIED_SHARE = Coefficient(
    0.597, "of events", f"{_CAPACITY_RUN}: the default scenario (every match, 5% of non-matches)")
DEFAULT_LABEL_DELAY_HOURS = Coefficient(
    9.83, "hours", f"{_CAPACITY_RUN}: the default scenario's mean (lognormal, median 6 h)")

# rules and settings, not measurements
HEADROOM = 0.5  # a worker runs at most at half the rate one worker was measured to drain
MIN_PARTITIONS = 8  # FAIRWATCH_PARTITIONS' default
KAFKA_REPLICATION = 3
KAFKA_RETENTION_HOURS = 168  # Kafka's log.retention.hours default: `fairwatch topics` sets none
JOIN_LOG_FACTOR = 2.0  # the join log is rewritten once it holds twice the ids held (ResidentJoins)
CLICKHOUSE_REPLICAS = 2
BUCKET_SECONDS = 60  # FAIRWATCH_BUCKET_SECONDS' default
EXPIRE_SECONDS = 3_600  # the worker's expiry pass runs hourly: an id may outstay its TTL by this


class PlanError(ValueError):
    """An input the model cannot plan for; ``option`` names it as the command line does."""

    def __init__(self, option: str, message: str):
        super().__init__(f"--{option.replace('_', '-')} {message}")
        self.option = option


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """The load to plan for.

    Parameters
    ----------
    events_per_second
        Match events (comparisons or searches) a second, over all sites.
    sites
        Deployments sending them.
    groups
        Groups counted per site: the labels of every attribute and intersection counted (the
        overall row comes on top).
    retention_days
        Days ClickHouse keeps every row.
    verified_share
        Share of the events that get a verified outcome.
    label_delay_hours
        Mean hours from an event to its first verified outcome.
    ttl_days
        The join TTL (``FAIRWATCH_TTL_DAYS``): an id is held this long after its last record.
    attribute_sets
        Attributes and intersections counted: an outcome counts in one group of each (and overall).
    worker_memory_gib
        Join state one worker may hold.
    node_disk_tib
        Usable disk of one Kafka broker or ClickHouse node.
    """

    events_per_second: float
    sites: int
    groups: int
    retention_days: int
    verified_share: float = DEFAULT_VERIFIED_SHARE.value
    label_delay_hours: float = DEFAULT_LABEL_DELAY_HOURS.value
    ttl_days: float = 30.0
    attribute_sets: int = 3
    worker_memory_gib: float = 16.0
    node_disk_tib: float = 8.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise PlanError(field.name, f"must be a positive number, got {value:g}")
        if self.verified_share > 1:
            raise PlanError("verified_share", f"is a share of the events: at most 1, got {self.verified_share}")
        if self.attribute_sets > self.groups:
            raise PlanError("attribute_sets", f"({self.attribute_sets}) cannot exceed --groups ({self.groups}):"
                                              " each attribute set has at least one group")


@dataclass(frozen=True, slots=True)
class Figure:
    """One result of the plan: its value, unit and how it was reached (with the numbers)."""

    value: float
    unit: str
    how: str


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """What a load needs; each figure says how it was computed."""

    inputs: PlanInputs
    records_per_second: Figure
    workers_for_cpu: Figure
    ids_held: Figure
    join_state: Figure
    workers_for_memory: Figure
    workers: Figure
    partitions: Figure
    join_state_per_worker: Figure
    join_log_per_worker: Figure
    kafka_ingress: Figure
    kafka_disk: Figure
    kafka_brokers: Figure
    group_count_rows_per_day: Figure
    clickhouse_disk_per_day: Figure
    clickhouse_disk_retention: Figure
    clickhouse_shards: Figure
    clickhouse_nodes: Figure
    clickhouse_insert_cpu: Figure

    def figures(self) -> dict[str, Figure]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "inputs"}

    def to_dict(self) -> dict:
        return {"inputs": asdict(self.inputs),
                "plan": {name: asdict(figure) for name, figure in self.figures().items()},
                "coefficients": {name: asdict(c) for name, c in used_coefficients(self.inputs).items()}}


def used_coefficients(inputs: PlanInputs) -> dict[str, Coefficient]:
    """The measured coefficients, and the measured defaults the inputs kept."""
    used = dict(COEFFICIENTS)
    if inputs.verified_share == DEFAULT_VERIFIED_SHARE.value:
        used["verified_share"] = DEFAULT_VERIFIED_SHARE
    if inputs.label_delay_hours == DEFAULT_LABEL_DELAY_HOURS.value:
        used["label_delay_hours"] = DEFAULT_LABEL_DELAY_HOURS
    return used


def _n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def capacity_plan(inputs: PlanInputs) -> CapacityPlan:
    """The plan for ``inputs`` with :data:`COEFFICIENTS` (formulas in docs/scaling.md)."""
    c = {name: coefficient.value for name, coefficient in COEFFICIENTS.items()}
    n, f, o = inputs.events_per_second, inputs.verified_share, c["outcomes_per_verified_event"]
    outcomes = n * f * o
    records = n + outcomes
    per_worker = HEADROOM * c["worker_records_per_second"]
    cpu_workers = max(1, math.ceil(records / per_worker))
    hold_seconds = inputs.ttl_days * DAY + f * inputs.label_delay_hours * HOUR + EXPIRE_SECONDS
    ids = n * hold_seconds
    join_bytes = ids * c["join_bytes_per_id"]
    memory_workers = max(1, math.ceil(join_bytes / (inputs.worker_memory_gib * GiB)))
    workers = max(cpu_workers, memory_workers)
    partitions = max(MIN_PARTITIONS, 2 * workers)

    ingress = n * c["kafka_event_bytes"] + outcomes * c["kafka_outcome_bytes"]
    input_disk = ingress * KAFKA_RETENTION_HOURS * HOUR * KAFKA_REPLICATION
    log_disk = ids * c["join_log_bytes_per_id"] * JOIN_LOG_FACTOR * KAFKA_REPLICATION
    kafka_disk = input_disk + log_disk
    brokers = max(KAFKA_REPLICATION, math.ceil(kafka_disk / (inputs.node_disk_tib * TiB)))

    labeled_day = n * f * DAY
    cells_day = inputs.sites * (inputs.groups + 1) * partitions * (DAY // BUCKET_SECONDS)
    count_rows = min(cells_day, labeled_day * (inputs.attribute_sets + 1))
    day = {"match_events": (n * DAY, c["match_event_bytes"]),
           "verified_outcomes": (outcomes * DAY, c["verified_outcome_bytes"]),
           "labeled_outcomes": (labeled_day, c["labeled_outcome_bytes"]),
           "group_counts": (count_rows, c["group_count_bytes"]),
           "evidence log": (records * DAY, c["evidence_bytes_per_leaf"])}
    day_bytes = sum(rows * size for rows, size in day.values())
    kept = day_bytes * inputs.retention_days
    shards = max(1, math.ceil(kept / (inputs.node_disk_tib * TiB)))

    return CapacityPlan(
        inputs=inputs,
        records_per_second=Figure(records, "records/s",
                                  f"{_n(n)} events + {_n(n)} x {f:g} verified x {o:g} outcomes"),
        workers_for_cpu=Figure(cpu_workers, "workers",
                               f"ceil({_n(records)} / ({HEADROOM:g} x {_n(c['worker_records_per_second'])} records/s))"),
        ids_held=Figure(ids, "ids", f"{_n(n)}/s x ({inputs.ttl_days:g} d TTL + {f:g} x {inputs.label_delay_hours:g} h"
                                     f" delay + 1 h between expiry passes)"),
        join_state=Figure(join_bytes / GiB, "GiB", f"{_n(ids)} ids x {c['join_bytes_per_id']:g} B"),
        workers_for_memory=Figure(memory_workers, "workers",
                                  f"ceil({_n(join_bytes / GiB, 1)} GiB / {inputs.worker_memory_gib:g} GiB a worker)"),
        workers=Figure(workers, "workers", f"max({cpu_workers} for CPU, {memory_workers} for join state);"
                                           f" {_n(records / workers)} records/s each"),
        partitions=Figure(partitions, "partitions",
                          f"max({MIN_PARTITIONS}, 2 x {workers} workers): room to double them"),
        join_state_per_worker=Figure(join_bytes / workers / GiB, "GiB",
                                     f"{_n(join_bytes / GiB, 1)} GiB / {workers} workers"),
        join_log_per_worker=Figure(ids * c["join_log_bytes_per_id"] * JOIN_LOG_FACTOR / workers / GiB, "GiB",
                                   f"its rocksdb table of the join log: {_n(log_disk / KAFKA_REPLICATION / GiB, 1)} GiB"
                                   f" / {workers} workers"),
        kafka_ingress=Figure(ingress / 2**20, "MiB/s", f"{_n(n)} x {c['kafka_event_bytes']:g} B + {_n(outcomes)} x"
                                                       f" {c['kafka_outcome_bytes']:g} B"),
        kafka_disk=Figure(kafka_disk / TiB, "TiB", f"inputs {_n(input_disk / TiB, 2)} TiB ({KAFKA_RETENTION_HOURS} h x"
                                                   f" {KAFKA_REPLICATION} replicas) + join log {_n(log_disk / TiB, 2)} TiB"
                                                   f" ({_n(ids)} ids x {c['join_log_bytes_per_id']:g} B x at most"
                                                   f" {JOIN_LOG_FACTOR:g} x {KAFKA_REPLICATION} replicas)"),
        kafka_brokers=Figure(brokers, "brokers", f"max({KAFKA_REPLICATION} for replication {KAFKA_REPLICATION},"
                                                 f" ceil({_n(kafka_disk / TiB, 2)} / {inputs.node_disk_tib:g} TiB))"),
        group_count_rows_per_day=Figure(count_rows, "rows/day", f"min({_n(cells_day)} site x group x partition x"
                                                                f" minute cells, {_n(labeled_day)} labeled x"
                                                                f" {inputs.attribute_sets + 1} groups)"),
        clickhouse_disk_per_day=Figure(day_bytes / GiB, "GiB/day", ", ".join(
            f"{table} {_n(rows * size / GiB, 1)}" for table, (rows, size) in day.items()) + " (one replica)"),
        clickhouse_disk_retention=Figure(kept * CLICKHOUSE_REPLICAS / TiB, "TiB",
                                         f"{_n(day_bytes / GiB, 1)} GiB x {inputs.retention_days} days x"
                                         f" {CLICKHOUSE_REPLICAS} replicas"),
        clickhouse_shards=Figure(shards, "shards",
                                 f"ceil({_n(kept / TiB, 2)} TiB a replica / {inputs.node_disk_tib:g} TiB)"),
        clickhouse_nodes=Figure(shards * CLICKHOUSE_REPLICAS, "nodes",
                                f"{shards} shards x {CLICKHOUSE_REPLICAS} replicas"),
        clickhouse_insert_cpu=Figure(records * c["clickhouse_cpu_us_per_record"] / 1e6, "cores",
                                     f"{_n(records)} records/s x {c['clickhouse_cpu_us_per_record']:g} us"),
    )
