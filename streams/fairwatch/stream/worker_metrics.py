"""The worker's Prometheus metrics (its own registry) and what one handled batch adds to them."""

from __future__ import annotations

from collections import Counter

import faust
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

from fairwatch.stream.processor import ResidentJoins


class WorkerMetrics:
    """Prometheus metrics of one worker (its own registry: several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = PromCounter("fairwatch_consumed_messages", "Input messages consumed", ["topic"], registry=r)
        self.records = PromCounter("fairwatch_consumed_records", "Input records consumed (a batch message holds many)",
                                   ["topic"], registry=r)
        self.rerouted = PromCounter("fairwatch_rerouted_records",
                                    "Records that arrived on another partition than their event_id's and were sent on",
                                    registry=r)
        self.rejected = PromCounter("fairwatch_rejected_messages", "Messages sent to dead-letter", ["reason"],
                                    registry=r)
        self.signed = PromCounter("fairwatch_signed_messages",
                                  "Input messages whose signature the keyring accepted (FAIRWATCH_KEYRING)",
                                  ["deployment"], registry=r)
        self.labeled = PromCounter("fairwatch_labeled_outcomes", "Event-outcome pairs made (net of retractions)",
                                   registry=r)
        self.pending = Gauge("fairwatch_pending_joins", "Events waiting for their verified outcome", registry=r)
        self.orphans = Gauge("fairwatch_orphan_outcomes", "Outcomes waiting for their event", registry=r)
        self.lag = Gauge("fairwatch_consumer_lag", "Messages behind the end of the partition", ["topic", "partition"],
                         registry=r)
        self.sink_seconds = Histogram("fairwatch_sink_seconds", "Time to write one batch to ClickHouse", registry=r)
        self.sink_errors = PromCounter("fairwatch_sink_errors", "Failed ClickHouse write attempts", registry=r)
        self.phase_seconds = PromCounter("fairwatch_batch_phase_seconds", "Time spent per batch phase", ["phase"],
                                         registry=r)
        self.expired = PromCounter("fairwatch_expired_joins", "Join records dropped after idling for the TTL",
                                   registry=r)
        self.skipped_offsets = PromCounter("fairwatch_skipped_offsets", "Input offsets that never arrived on re-read",
                                           registry=r)
        self.alerts_changed = PromCounter("fairwatch_alert_changes", "Incidents opened or resolved by detection",
                                          registry=r)
        self.first_batch = Gauge("fairwatch_first_batch_timestamp_seconds",
                                 "Unix time this worker began its first input batch (0 before)", registry=r)
        self.committed_at = Gauge("fairwatch_offsets_committed_timestamp_seconds",
                                  "Unix time of this worker's last accepted input offset commit (0 before)",
                                  registry=r)
        self.batch_size = Histogram("fairwatch_batch_messages", "Messages per processed batch", registry=r,
                                    buckets=(1, 10, 100, 1000, 5000, 10000, 50000))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def record_batch(metrics: WorkerMetrics, result, events, app: faust.App, resident: ResidentJoins,
                 read_up_to: dict) -> None:
    """Metrics of a handled batch; ``read_up_to`` (partition -> next offset) moves past it."""
    for kind, n in result.consumed.items():
        metrics.consumed.labels(kind).inc(n)
    for kind, n in result.records.items():
        metrics.records.labels(kind).inc(n)
    metrics.rerouted.inc(len(result.reroutes))
    for reason, n in result.rejected.items():
        metrics.rejected.labels(reason).inc(n)
    for deployment, n in result.signed.items():
        metrics.signed.labels(deployment).inc(n)
    metrics.labeled.inc(max(result.paired, 0))
    joins = resident.joins().values()
    metrics.pending.set(sum(join.counters.pending for join in joins))
    metrics.orphans.set(sum(join.counters.orphans for join in joins))
    metrics.batch_size.observe(len(events))
    last: Counter = Counter()
    for e in events:
        tp = e.message.tp
        last[tp] = max(last[tp], e.message.offset)
    assigned = app.consumer.assignment() if app.consumer else set()
    for tp, offset in last.items():
        read_up_to[tp] = max(read_up_to.get(tp, 0), offset + 1)
        if tp not in assigned:  # revoked while this batch ran: aiokafka refuses its highwater
            continue
        highwater = app.consumer.highwater(tp)
        if highwater is not None:
            metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - offset - 1, 0))
