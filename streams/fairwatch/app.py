"""The live worker: a faust app that reads top to bottom, with the logic in the core.

    match-events + verified-outcomes (co-partitioned by event_id, one agent so that an event and
    its outcomes are never joined concurrently)
      -> take_events batch -> BatchProcessor (decode, join against the `join-state` table)
      -> ClickHouse sink (retried until written; offsets wait)
      -> join-state table writes (changelog topic) -> dead-letter topic -> ack (offsets commit)

State that must survive a crash is the join table (a Kafka changelog; rocksdb:// on disk in
production) and ClickHouse; counts are recomputed in ClickHouse from the labeled outcomes, so a
replayed batch rewrites the same rows and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import Counter

import faust
from faust.streams import _current_event
from prometheus_client import CollectorRegistry, Counter as PromCounter, Gauge, Histogram
from prometheus_client import generate_latest

from fairwatch.pipeline import MATCH_EVENTS, VERIFIED_OUTCOMES, BatchProcessor, RawMessage
from fairwatch.settings import WorkerSettings
from fairwatch.sink import ClickHouseSink
from fairwatch.metrics import write_snapshots
from fairwatch.store import migrate, open_store

log = logging.getLogger("fairwatch.worker")


class WorkerMetrics:
    """Prometheus metrics of one worker (its own registry: several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = PromCounter("fairwatch_consumed_messages", "Input messages consumed", ["topic"], registry=r)
        self.rejected = PromCounter("fairwatch_rejected_messages", "Messages sent to dead-letter", ["reason"],
                                    registry=r)
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
        self.batch_size = Histogram("fairwatch_batch_messages", "Messages per processed batch", registry=r,
                                    buckets=(1, 10, 100, 1000, 5000, 10000, 50000))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def create_app(settings: WorkerSettings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka}",
        store=settings.table_store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
    )
    metrics = WorkerMetrics()
    kinds = {settings.topic(MATCH_EVENTS): MATCH_EVENTS, settings.topic(VERIFIED_OUTCOMES): VERIFIED_OUTCOMES}
    inputs = app.topic(*kinds, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    dead_letter = app.topic(settings.topic("dead-letter"), key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
    app.topic(settings.topic("alerts"), partitions=1)
    join_state = app.Table("join-state", default=None, partitions=settings.partitions, key_type=str,
                           value_type=bytes)
    processor = BatchProcessor(settings.core)
    healer = CommitHealer(app, set(kinds))
    sink_holder: dict[str, ClickHouseSink] = {}

    def sink() -> ClickHouseSink:
        # opened lazily in the executor thread that uses it, retried like any other write
        if "sink" not in sink_holder:
            store = open_store(settings.clickhouse)
            migrate(store)
            sink_holder["sink"] = ClickHouseSink(store, settings.core)
        return sink_holder["sink"]

    def write_to_clickhouse(batch) -> None:
        attempt = 0
        while True:
            try:
                started = time.perf_counter()
                sink().write(batch)
                metrics.sink_seconds.observe(time.perf_counter() - started)
                return
            except Exception as exc:  # socket, timeout and server errors alike: wait and retry
                attempt += 1
                metrics.sink_errors.inc()
                sink_holder.pop("sink", None) if attempt % 5 == 0 else None
                log.warning("ClickHouse write failed (attempt %d), retrying: %s", attempt, exc)
                time.sleep(min(10.0, 0.2 * 2 ** min(attempt, 6)))

    @app.agent(inputs, concurrency=1)
    async def process(stream):
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            messages = [
                RawMessage(kinds[e.message.topic], e.message.topic, e.message.partition, e.message.offset,
                           e.message.key, e.message.value)
                for e in events
            ]
            # the rocksdb store reads and writes the partition of the current event: set it per key
            carrier = {e.message.partition: e for e in events}

            def load_state(event_id: str, partition: int) -> bytes | None:
                _current_event.set(weakref.ref(carrier[partition]))
                return join_state.get(event_id)

            started = time.perf_counter()
            result = processor.process(messages, load_state)
            processed = time.perf_counter()
            # ClickHouse first: if we crash after this, the replay rewrites the same rows.
            await loop.run_in_executor(None, write_to_clickhouse, result.sink)
            stored = time.perf_counter()
            for event_id, (partition, state) in result.state_changes.items():
                _current_event.set(weakref.ref(carrier[partition]))
                if state is None:
                    join_state.pop(event_id, None)
                else:
                    join_state[event_id] = state
            for letter in result.dead_letters:
                await dead_letter.send(key=letter.message.key, value=json.dumps(letter.to_record()).encode(),
                                       partition=letter.message.partition)
            await healer.check()
            finished = time.perf_counter()
            metrics.phase_seconds.labels("process").inc(processed - started)
            metrics.phase_seconds.labels("clickhouse").inc(stored - processed)
            metrics.phase_seconds.labels("state_and_dead_letters").inc(finished - stored)
            record_batch(metrics, result, events, app)

    @app.timer(settings.snapshot_seconds)
    async def snapshot_estimates():
        # one writer is enough: the worker that owns partition 0 of match-events
        assigned = app.consumer.assignment() if app.consumer else set()
        if not any(tp.topic == settings.topic(MATCH_EVENTS) and tp.partition == 0 for tp in assigned):
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_snapshots_now)
        except Exception as exc:  # a missed snapshot is retried at the next tick
            log.warning("estimate snapshot failed: %s", exc)

    snapshot_store: dict[str, object] = {}

    def write_snapshots_now() -> None:
        if "store" not in snapshot_store:  # its own connection: the sink's runs in another thread
            snapshot_store["store"] = open_store(settings.clickhouse)
        try:
            write_snapshots(snapshot_store["store"], settings.core)
        except Exception:
            snapshot_store.pop("store", None)
            raise

    @app.timer(5.0)
    async def heal_commits():
        await healer.check()

    @app.timer(60.0)
    async def recount_join_gauges():
        # the gauges move with every batch; a recount keeps them true across restarts and rebalances
        pending = orphans = 0
        for value in join_state.values():
            if value is None:
                continue
            raw = bytes(value)
            no_event, no_outcome = b",null," in raw[:24], raw.endswith(b",null]")
            pending += no_outcome and not no_event
            orphans += no_event and not no_outcome
        metrics.pending.set(pending)
        metrics.orphans.set(orphans)

    @app.page("/metrics")
    async def prometheus(web, request):
        # aiohttp refuses a charset inside content_type; Prometheus text format 0.0.4 is UTF-8 anyway
        return web.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def health(web, request):
        assigned = app.consumer.assignment() if app.consumer else set()
        owned = sorted([kinds[tp.topic], tp.partition] for tp in assigned if tp.topic in kinds)
        return web.json({"status": "ok", "input_partitions": owned})

    @app.page("/debug/offsets")
    async def debug_offsets(web, request):
        c = app.consumer
        out = {}
        for tp in sorted(c.assignment()):
            if tp.topic not in kinds:
                continue
            acked = c._acked.get(tp) or []
            out[f"{tp.topic}:{tp.partition}"] = {
                "committed": c._committed_offset.get(tp), "read": c._read_offset.get(tp),
                "acked": len(acked), "acked_min": min(acked) if acked else None,
                "gap": len(c._gap.get(tp) or []), "highwater": c.highwater(tp),
            }
        return web.json(out)

    app.fairwatch_metrics = metrics  # for tests and the CLI
    return app


class CommitHealer:
    """Re-reads partitions whose committed offset is stuck behind a hole of unacknowledged messages.

    faust commits only a contiguous run of acked offsets. A batch that was in flight during a
    rebalance can lose its acks, or be dropped unprocessed while the fetch position moves on
    (seen here after a worker was killed and its partitions moved). The committed offset then
    never advances, and the dropped messages would wait for the next restart. When a hole
    persists past ``patience`` seconds, the partition is sought back to its committed offset:
    the messages come again, are processed (replays are harmless) and acked, and commits resume.
    """

    def __init__(self, app: faust.App, topics: set[str], patience: float = 10.0):
        self.app, self.topics, self.patience = app, topics, patience
        self._since: dict = {}

    def holes(self) -> dict:
        consumer = self.app.consumer
        found = {}
        for tp in consumer.assignment():
            acked = consumer._acked.get(tp) if tp.topic in self.topics else None
            if acked:
                committed = consumer._committed_offset.get(tp) or 0
                if min(acked) > committed:
                    found[tp] = committed
        return found

    async def check(self) -> None:
        now = time.monotonic()
        holes = self.holes()
        self._since = {tp: self._since.get(tp, now) for tp in holes}
        for tp, committed in holes.items():
            if now - self._since[tp] >= self.patience:
                log.warning("re-reading %s from offset %d: acknowledgements stuck behind a hole", tp, committed)
                await self.app.consumer.seek(tp, committed)
                self._since.pop(tp)


def record_batch(metrics: WorkerMetrics, result, events, app: faust.App) -> None:
    for kind, n in result.consumed.items():
        metrics.consumed.labels(kind).inc(n)
    for reason, n in result.rejected.items():
        metrics.rejected.labels(reason).inc(n)
    metrics.labeled.inc(max(result.paired, 0))
    metrics.pending.inc(result.pending_change)
    metrics.orphans.inc(result.orphan_change)
    metrics.batch_size.observe(len(events))
    last: Counter = Counter()
    for e in events:
        tp = e.message.tp
        last[tp] = max(last[tp], e.message.offset)
    for tp, offset in last.items():
        highwater = app.consumer.highwater(tp) if app.consumer else None
        if highwater is not None:
            metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - offset - 1, 0))
