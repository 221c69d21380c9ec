"""The worker's health as rows of ``worker_health`` (the pipeline board reads them)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Iterable

from fairwatch.store.clickhouse import Store

HEALTH_COLUMNS = ("at", "worker", "metric", "label_keys", "label_values", "value")


HEALTH_METRICS = ("fairwatch_consumer_lag", "fairwatch_pending_joins", "fairwatch_orphan_outcomes",
                  "fairwatch_sink_seconds_sum", "fairwatch_sink_seconds_count", "fairwatch_sink_errors_total",
                  "fairwatch_consumed_messages_total", "fairwatch_rejected_messages_total",
                  "fairwatch_offsets_committed_timestamp_seconds")


def health_rows(registry, worker: str, now: datetime | None = None, previous: list[tuple] | None = None,
                metrics: Iterable[str] = HEALTH_METRICS) -> list[tuple]:
    """Rows of ``worker_health`` from a Prometheus registry (the worker's ``WorkerMetrics.registry``).

    One row per sample of the named metrics, labels kept as sorted key / value arrays. Given the
    rows of the previous call (``previous``), adds ``fairwatch_sink_seconds_mean``: the mean time
    per ClickHouse write since then (counters only grow, so the difference is what happened).

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry, Gauge, Histogram
    >>> registry = CollectorRegistry()
    >>> Gauge("fairwatch_consumer_lag", "lag", ["topic", "partition"], registry=registry).labels("t", "0").set(7)
    >>> sink = Histogram("fairwatch_sink_seconds", "sink", registry=registry)
    >>> t0 = datetime(2026, 11, 25, tzinfo=timezone.utc)
    >>> first = health_rows(registry, "w1", t0)
    >>> first[0][1:]
    ('w1', 'fairwatch_consumer_lag', ['partition', 'topic'], ['0', 't'], 7.0)
    >>> sink.observe(0.5); sink.observe(1.5)
    >>> [r[5] for r in health_rows(registry, "w1", t0, previous=first) if r[2] == "fairwatch_sink_seconds_mean"]
    [1.0]
    """
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    wanted = set(metrics)
    rows = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in wanted and math.isfinite(sample.value):
                keys = sorted(sample.labels)
                rows.append((now, worker, sample.name, keys, [str(sample.labels[k]) for k in keys],
                             float(sample.value)))
    if previous is not None:
        def total(batch, name):
            return sum(r[5] for r in batch if r[2] == name)

        seconds = total(rows, "fairwatch_sink_seconds_sum") - total(previous, "fairwatch_sink_seconds_sum")
        writes = total(rows, "fairwatch_sink_seconds_count") - total(previous, "fairwatch_sink_seconds_count")
        if writes > 0 and seconds >= 0:  # a restarted worker's counters start again: skip that sample
            rows.append((now, worker, "fairwatch_sink_seconds_mean", [], [], seconds / writes))
    return rows


def write_health(store: Store, rows: list[tuple]) -> int:
    """Insert :func:`health_rows` into ``worker_health``."""
    return store.insert("worker_health", HEALTH_COLUMNS, rows)
