"""The live worker: a faust app that reads top to bottom, with the logic in the core.

    match-events + verified-outcomes (co-partitioned by event_id, one agent so that an event and
    its outcomes are never joined concurrently)
      -> take_events batch -> BatchProcessor (decode, join in the partition's in-memory join)
      -> ClickHouse rows (a sink process, retried until written) -> dead-letter topic, forwards
    and every FAIRWATCH_COMMIT_SECONDS, for all batches since the last time ("flush"):
      -> ClickHouse counts of the buckets they changed, from the partitions' resident counts
      -> the join state they changed, a few `join-log` table records and a marker per partition
      -> offset ledger (the worker commits, after a producer flush, only offsets fully processed)

State that must survive a crash is the join log (a Kafka changelog; rocksdb:// on disk in
production) and ClickHouse. Nothing of a batch is persisted but its idempotent rows until the
flush: a crash anywhere replays the batches since the last flush against the join as the log last
held it (the resident counts are derived from it), which rewrites the same rows and counts.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import json
import logging
import socket
import time
import weakref
from collections import Counter
from datetime import datetime, timezone

import faust
from aiokafka import TopicPartition as AIOKafkaTP
from aiokafka.structs import OffsetAndMetadata
from faust.streams import _current_event
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

from fairwatch.audit.snapshots import write_differential_snapshots
from fairwatch.stream.health import health_rows, write_health
from fairwatch.audit.snapshots import write_snapshots
from fairwatch.contracts.topics import ALERTS, DEAD_LETTER, MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.core.join import LabelJoin
from fairwatch.detect.cycle import run_detection
from fairwatch.detect.delivery import delivery_from_env
from fairwatch.store.clickhouse import open_store
from fairwatch.stream.offsets import OffsetLedger
from fairwatch.stream.processor import BatchProcessor, RawMessage, ResidentJoins
from fairwatch.stream.worker_settings import WorkerSettings
from fairwatch.stream.write_executor import SinkExecutor

log = logging.getLogger("fairwatch.worker")


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


def create_app(settings: WorkerSettings, policies: dict | None = None) -> faust.App:
    """The worker. ``policies`` (deployment -> :class:`~fairwatch.detect.policy.Policy`) switch on drift
    detection and alerting: every ``detect_seconds`` the owner of partition 0 runs one cycle."""
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
        consumer_group_instance_id=settings.instance_id or None,
    )
    metrics = WorkerMetrics()
    kinds = {settings.topic(MATCH_EVENTS): MATCH_EVENTS, settings.topic(VERIFIED_OUTCOMES): VERIFIED_OUTCOMES}
    # acks=False: faust's own ack bookkeeping never commits these topics; the OffsetLedger does
    inputs = app.topic(*kinds, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions, acks=False)
    dead_letter = app.topic(settings.topic(DEAD_LETTER), key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
    app.topic(settings.topic(ALERTS), partitions=1)
    # partition p's join state: keys b"p:seq" -> state blobs and flush markers (see ResidentJoins)
    join_log = app.Table("join-log", default=None, partitions=settings.partitions, key_type=bytes,
                         value_type=bytes)  # bytes: faust's raw serializer for keys and values

    def read_log(partition: int):
        prefix = f"{partition}:".encode()
        return [(bytes(key).decode(), bytes(value)) for key, value in join_log.items()
                if value is not None and bytes(key).startswith(prefix)]

    resident = ResidentJoins(settings.core, read_log)
    processor = BatchProcessor(settings.core, partitions=settings.partitions)
    committer = LedgerCommitter(app, metrics)
    # every ClickHouse write, in order, retried in place: rows of a batch land before a later
    # recompute of their buckets (a child process for a server store: see fairwatch.stream.write_executor)
    sink = SinkExecutor(settings.clickhouse, settings.core)
    sink.start()  # a child process imports while faust starts, not during the first batches
    atexit.register(sink.close)
    sink_failures_seen = [0]
    pending = Pending()
    latest_event: dict = {}  # input partition -> its latest event (the carrier of its join-log writes)
    read_up_to: dict = {}  # input partition -> next offset to read, as far as handled batches go
    first_batch_seen: list[float] = []
    row_writes: collections.deque = collections.deque()  # ClickHouse row writes not yet awaited
    rows_waiting: list = []  # processed batches' rows not yet sent: sent together (a server pays per insert)
    batch_lock = asyncio.Lock()  # a batch, and a flush taking the pending batches, never interleave
    flush_lock = asyncio.Lock()  # one flush at a time: the join log is written in order
    background_flushes: set = set()  # flushes started by a batch and not awaited by it (kept referenced)

    def count_sink_failures() -> None:
        failures = sink.failures.value
        metrics.sink_errors.inc(failures - sink_failures_seen[0])
        sink_failures_seen[0] = failures

    async def to_clickhouse(submit) -> None:
        """``submit()`` a write to the sink and wait for it (it retries until it succeeds); if the
        sink's process died under it (killed, out of memory), start another and submit again."""
        while True:
            future = submit()
            try:
                seconds = await asyncio.wrap_future(future)
                break
            except concurrent.futures.process.BrokenProcessPool as exc:
                log.warning("the ClickHouse sink process died (%s); starting another", exc)
                sink.restart(broken=future)
        metrics.sink_seconds.observe(seconds)
        count_sink_failures()

    def send_rows() -> None:
        """Hand the waiting batches' rows to the sink, as one write (one insert per table)."""
        if rows_waiting:
            batches = list(rows_waiting)
            rows_waiting.clear()
            row_writes.append(asyncio.ensure_future(to_clickhouse(lambda: sink.write_rows(batches))))

    async def handle(events) -> None:
        """One sub-batch: decode and join, ClickHouse rows (in the sink process, while the next batch
        is processed), dead letters and forwards; then it waits in ``pending`` for the next flush."""
        messages = [
            RawMessage(kinds[e.message.topic], e.message.topic, e.message.partition, e.message.offset,
                       e.message.key, e.message.value)
            for e in events
        ]
        if not first_batch_seen:
            first_batch_seen.append(time.time())
            metrics.first_batch.set(first_batch_seen[0])
        async with batch_lock:
            committer.busy = True
            started = time.perf_counter()
            result = processor.process(messages, resident=resident)
            processed = time.perf_counter()
            rows_waiting.append(result.sink)
            if sum(map(len, rows_waiting)) >= ROW_WRITE_ROWS:
                send_rows()
            while row_writes and (row_writes[0].done() or len(row_writes) > MAX_ROW_WRITES_IN_FLIGHT):
                await row_writes.popleft()  # back-pressure: ClickHouse slower than Kafka (or down)
            stored = time.perf_counter()
            for letter in result.dead_letters:
                await dead_letter.send(key=letter.message.key, value=json.dumps(letter.to_record()).encode(),
                                       partition=letter.message.partition)
            for reroute in result.reroutes:  # committed only after the producer flushed them
                await app.producer.send(reroute.topic, reroute.key, reroute.value, reroute.partition, None, None)
            pending.add(events, result.sink.touched, resident, records=sum(result.records.values()))
            latest_event.update({e.message.partition: e for e in events})
            finished = time.perf_counter()
            due = pending.records >= MAX_PENDING_RECORDS
        metrics.phase_seconds.labels("process").inc(processed - started)
        metrics.phase_seconds.labels("clickhouse_wait").inc(stored - processed)
        metrics.phase_seconds.labels("dead_letters").inc(finished - stored)
        record_batch(metrics, result, events, app, resident, read_up_to)
        if due:
            if flush_lock.locked():  # the last flush is still writing: wait for it (back-pressure)
                await flush()
            else:  # this flush takes the pending batches now; its writes go on while the next batch runs
                background_flushes.add(task := asyncio.ensure_future(flush()))
                task.add_done_callback(flush_done)

    def flush_done(task: asyncio.Task) -> None:
        background_flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:  # its offsets stay uncommitted: re-read
            log.error("a flush failed: %r", task.exception())

    async def flush() -> None:
        """Counts of the pending batches' buckets and their join state, then their offsets.

        The join state and the counts are taken with the batches (so they hold exactly those
        batches). The sink writes the counts while the join log is written (a rebuilt join writes
        its counts again), and recomputes buckets behind the floor after the batches' rows, before
        the log. Later batches go on meanwhile.
        """
        async with flush_lock:
            async with batch_lock:
                if not pending.events and not pending.joins:
                    committer.busy = False
                    return
                started = time.perf_counter()
                events, touched, joins = pending.take()
                current = resident.joins()
                log_writes = {partition: resident.persist(partition) for partition, join in joins.items()
                              if current.get(partition) is join}
                send_rows()
                rows_taken = list(row_writes)  # the taken batches' rows are among these (later ones too)
                counts = {partition: persisted.counts for partition, persisted in log_writes.items()
                          if persisted.counts is not None}
                # resident counts need no rows: written while the rest of the flush goes on, versioned
                # by when they were taken (a late write of a revoked partition's older totals loses)
                taken_at = time.time_ns()
                counts_written = asyncio.ensure_future(to_clickhouse(lambda: sink.write_counts(counts, taken_at)))
            # the rows first: the sink runs writes in order, but one resubmitted after its process
            # died would come after this recompute
            await asyncio.gather(*rows_taken)
            if any(touched.values()):  # buckets behind the floor, from the rows; before the log, which
                await to_clickhouse(lambda: sink.recompute(touched))  # makes their replay touch nothing
            counted = time.perf_counter()
            current = resident.joins()
            for partition, persisted in log_writes.items():
                if current.get(partition) is not joins[partition]:
                    continue  # revoked (or reassigned) since: its batches are read again from the log's state
                # faust writes a table's changelog to the partition of the current event
                _current_event.set(weakref.ref(latest_event[partition]))
                for key, value in persisted.writes:
                    if value is None:
                        join_log.pop(key.encode(), None)
                    else:
                        join_log[key.encode()] = value
            await counts_written
            await committer.processed([e for e in events if e.message.partition not in joins
                                       or current.get(e.message.partition) is joins[e.message.partition]])
            committer.busy = bool(pending.events) or batch_lock.locked()  # a batch may be under way
            metrics.phase_seconds.labels("counts").inc(counted - started)
            metrics.phase_seconds.labels("join_log").inc(time.perf_counter() - counted)


    @app.timer(min(EXPIRE_SECONDS, max(1.0, settings.core.ttl_seconds / 4)))
    async def expire_joins():
        # records idle for the TTL leave the joins; the next flush writes them out of the join log
        async with batch_lock:
            for partition in resident.joins():
                gone = resident.expire(partition, time.time())
                if gone and partition in latest_event:
                    pending.keep(partition, resident)
                    metrics.expired.inc(len(gone))

    def caught_up(batch=()) -> bool:
        """Every assigned input partition read to its end by the handled batches and ``batch``
        (events not yet handled): nothing more is coming right now."""
        consumer = app.consumer
        try:
            ends = {tp: consumer.highwater(tp) for tp in consumer.assignment() if tp.topic in kinds}
        except Exception:  # the assignment changed under us
            return False
        read = dict(read_up_to)
        for e in batch:
            read[e.message.tp] = max(read.get(e.message.tp, 0), e.message.offset + 1)
        return all(end is not None and read.get(tp, 0) >= end for tp, end in ends.items())

    @app.agent(inputs, concurrency=1)
    async def process(stream):
        takes = stream.take_events(settings.batch_size, within=TAKE_SECONDS)
        async for batch in gathered_batches(takes, settings.batch_size, settings.batch_within, caught_up):
            for events in sub_batches(batch):
                await handle(events)
                await asyncio.sleep(0)  # let the web page, timers and the fetcher run in between
            if caught_up():  # counts and commits now rather than at the next tick: no one waits for them
                await flush()
                await committer.commit()

    def owns_partition_0() -> bool:
        # one writer of snapshots and alerts is enough: the worker that owns partition 0 of match-events
        assigned = app.consumer.assignment() if app.consumer else set()
        return any(tp.topic == settings.topic(MATCH_EVENTS) and tp.partition == 0 for tp in assigned)

    @app.timer(settings.snapshot_seconds)
    async def snapshot_estimates():
        if not owns_partition_0():
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_snapshots_now)
        except Exception as exc:  # a missed snapshot is retried at the next tick
            log.warning("estimate snapshot failed: %s", exc)

    snapshot_store = LazyStore(settings.clickhouse)  # its own connection: the sink's runs in another thread

    def write_snapshots_now() -> None:
        def write(store) -> None:
            now = datetime.now(timezone.utc).replace(microsecond=0)  # one instant for both tables
            write_snapshots(store, settings.core, now=now)
            write_differential_snapshots(store, settings.core, now=now)
        snapshot_store.run(write)

    detection: dict[str, object] = {"store": LazyStore(settings.clickhouse)}

    if policies:
        @app.timer(settings.detect_seconds)
        async def detect_drift():
            if not owns_partition_0():
                return
            try:
                changed = await asyncio.get_running_loop().run_in_executor(None, detect_now)
                metrics.alerts_changed.inc(len(changed))
            except Exception as exc:  # the next cycle rebuilds everything from the store
                log.warning("detection cycle failed: %s", exc)

    def detect_now():
        if "delivery" not in detection:  # Kafka alerts topic, Alertmanager, Grafana: background threads
            detection["delivery"] = delivery = delivery_from_env()
            if delivery is not None:  # on shutdown, give queued deliveries a last chance
                atexit.register(delivery.close)
        return detection["store"].run(
            lambda store: run_detection(store, settings.core, policies, detection["delivery"]))

    health_samples: dict[str, object] = {"previous": None}
    health_store = LazyStore(settings.clickhouse)
    worker_name = f"{socket.gethostname()}:{settings.web_port}"

    @app.timer(15.0)
    async def record_health():
        # every worker writes its own pipeline-health samples (lag, joins, sink) for the dashboards
        count_sink_failures()  # attempts still failing (a write being retried) count already
        rows = health_rows(metrics.registry, worker_name, previous=health_samples["previous"])
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_health_now, rows)
            health_samples["previous"] = rows
        except Exception as exc:  # a missed sample is only a gap on a dashboard
            log.info("health sample not written: %s", exc)

    def write_health_now(rows) -> None:
        health_store.run(lambda store: write_health(store, rows))

    @app.timer(settings.commit_seconds)
    async def commit_offsets():
        await flush()
        await committer.commit()

    @app.timer(5.0)
    async def reread_holes():
        await committer.reread_holes()

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender, revoked, **kwargs):
        committer.forget(revoked)
        resident.forget({tp.partition for tp in revoked if tp.topic in kinds})

    @app.on_partitions_assigned.connect
    async def forget_assigned(sender, assigned, **kwargs):
        # faust seeks assigned partitions to the committed offsets: the ledger starts there again,
        # and the join is rebuilt from the log (recovered by faust before the partition resumes)
        committer.forget(assigned)
        committer.prestart([tp for tp in assigned if tp.topic in kinds])
        resident.forget({tp.partition for tp in assigned if tp.topic in kinds})

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
        ledger = committer.ledger.describe()
        return web.json({
            f"{tp.topic}:{tp.partition}": {**state, "highwater": app.consumer.highwater(tp)}
            for tp, state in sorted(ledger.items())
        })

    @app.page("/debug/tasks")
    async def debug_tasks(web, request):
        # where every coroutine of the worker's loops waits: for diagnosing stalls in production
        loops = {"main": asyncio.get_running_loop()}
        thread = getattr(app.consumer, "_thread", None)
        if thread is not None and getattr(thread, "thread_loop", None) is not None:
            loops["consumer_thread"] = thread.thread_loop
        out = {"commit_in_progress": app.consumer._commit_fut is not None, "rebalancing": app.rebalancing}
        for name, loop in loops.items():
            out[name] = sorted(await_chain(task) for task in asyncio.all_tasks(loop))
        return web.json(out)

    app.fairwatch_metrics = metrics  # for tests and the CLI
    return app


def await_chain(task: asyncio.Task) -> str:
    """`outer:line -> inner:line ...`: the coroutines a task is suspended in (get_stack shows one)."""
    links, coro = [], task.get_coro()
    while coro is not None and len(links) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            links.append(type(coro).__name__)
            break
        links.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " -> ".join(links)


MAX_SUB_BATCH_BYTES = 4 << 20  # ~16k records: batch envelopes would otherwise block the loop for seconds
MAX_PENDING_RECORDS = 200_000  # flush before the commit timer when this many records wait (memory, replay)
EXPIRE_SECONDS = 3600.0  # how often (at most) the joins drop records idle for the TTL (FAIRWATCH_TTL_DAYS)
MAX_ROW_WRITES_IN_FLIGHT = 2  # row writes that may be on their way while the next batch is processed
ROW_WRITE_ROWS = 60_000  # rows (about two 4 MB batches) sent as one write: fewer, larger inserts cost the server less


TAKE_SECONDS = 0.02  # the stream's takes are short; gathered_batches makes batches of them


async def gathered_batches(takes, max_events: int, within: float, complete):
    """Batches of the stream's events from ``takes`` (its short takes, each of ``max_events`` at
    most): a batch ends when it holds ``max_events`` (or the next take would not fit), ``within``
    seconds after its first event, or as soon as ``complete(batch)``
    says nothing more is there to read. A single take_events(max_events, within) would wait out
    ``within`` even then: at the end of a backlog, a batch idled that long for nothing."""
    takes = takes.__aiter__()
    loop = asyncio.get_running_loop()
    waiting = None  # the next take, under way
    batch: list = []
    deadline = 0.0
    try:
        while True:
            if waiting is None:
                waiting = asyncio.ensure_future(takes.__anext__())
            timeout = max(0.0, deadline - loop.time()) if batch else None
            done, _ = await asyncio.wait([waiting], timeout=timeout)
            if done:
                try:
                    taken = waiting.result()
                except StopAsyncIteration:
                    if batch:
                        yield batch
                    return
                waiting = None
                if batch and len(batch) + len(taken) > max_events:  # a batch holds max_events at most
                    out, batch = batch, []
                    yield out
                if not batch:
                    deadline = loop.time() + within
                batch.extend(taken)
                if len(batch) < max_events and loop.time() < deadline and not complete(batch):
                    continue
            out, batch = batch, []
            yield out
    finally:
        if waiting is not None:
            waiting.cancel()


class Pending:
    """Batches processed since the last flush: their events, the buckets they touched, and for
    each partition the join they used."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.events: list = []
        self.touched: dict[int, set[int]] = {}
        self.joins: dict[int, LabelJoin] = {}
        self.records = 0

    def add(self, events, touched: dict[int, set[int]], resident: ResidentJoins, records: int) -> None:
        self.events.extend(events)
        for partition, buckets in touched.items():
            self.touched.setdefault(partition, set()).update(buckets)
        current = resident.joins()
        for event in events:
            partition = event.message.partition
            if partition in current:
                self.joins.setdefault(partition, current[partition])
        self.records += records

    def keep(self, partition: int, resident: ResidentJoins) -> None:
        """Have the next flush persist this partition's join even without a batch (expiry)."""
        self.joins.setdefault(partition, resident.joins()[partition])

    def take(self):
        """(events, touched, joins) gathered so far; empty again afterwards."""
        taken = self.events, self.touched, self.joins
        self._clear()
        return taken


class LazyStore:
    """A store opened on first use, in the executor thread that uses it, and reopened after a failure."""

    def __init__(self, url: str):
        self.url = url
        self._store = None

    def run(self, work):
        if self._store is None:
            self._store = open_store(self.url)
        try:
            return work(self._store)
        except Exception:  # the connection may be the broken part: the next call opens a new one
            self._store = None
            raise


def sub_batches(events, limit: int = MAX_SUB_BATCH_BYTES):
    """Split a take_events batch into runs of at most ``limit`` message bytes (at least one message)."""
    chunk, size = [], 0
    for event in events:
        chunk.append(event)
        size += len(event.message.value or b"")
        if size >= limit:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class LedgerCommitter:
    """Commits what the :class:`~fairwatch.stream.offsets.OffsetLedger` says is fully processed.

    Commits go straight to the aiokafka consumer in faust's consumer thread (faust's own commit
    path only knows its ack bookkeeping, and crashes the app on a commit refused in a rebalance;
    here a refused commit is simply retried at the next tick).
    """

    def __init__(self, app: faust.App, metrics: WorkerMetrics):
        self.app, self.metrics = app, metrics
        self.ledger = OffsetLedger(patience=10.0, max_rereads=3)
        self._lock = asyncio.Lock()
        self.busy = False  # a batch is being processed: its partitions are not idle, only slow
        self._generation = 0  # moves at every rebalance
        self._starting: asyncio.Future | None = None

    def forget(self, tps) -> None:
        self._generation += 1
        self.ledger.forget(tps)

    def prestart(self, tps) -> None:
        """Read where newly assigned partitions start in the background, not at the first flush:
        listing log start offsets waits behind the consumer's fetches (over a second here)."""
        async def start() -> None:
            try:
                await self._start(tps)
            except Exception as exc:  # the first batch of each partition tries again
                log.info("could not read where %s start: %s", tps, exc)
        self._starting = asyncio.ensure_future(start())

    def _thread(self):
        return self.app.consumer._thread

    async def _start(self, tps) -> None:
        """Start the ledger of newly seen partitions at the group's committed offset (or the log start)."""
        generation = self._generation
        thread = self._thread()
        consumer = thread._ensure_consumer()

        async def read_committed():
            # one OffsetFetch for all of them: consumer.committed() asks once per partition, which
            # cost ~0.1 s each here (1.5 s for 16 partitions at a worker's first flush)
            wanted = {AIOKafkaTP(tp.topic, tp.partition): tp for tp in tps}
            found = await consumer._coordinator.fetch_committed_offsets(list(wanted))
            return {tp: (found[key].offset if key in found and found[key].offset >= 0 else None)
                    for key, tp in wanted.items()}

        committed = await thread.call_thread(read_committed)
        never = [tp for tp, offset in committed.items() if offset is None]
        if never:
            committed.update(await self.app.consumer.earliest_offsets(*never))
        if self._generation != generation:
            return  # the assignment changed meanwhile: these may be stale, the next batch starts them again
        now = time.monotonic()
        for tp, offset in committed.items():
            if tp not in self.ledger:
                self.ledger.start(tp, offset, now)

    async def processed(self, events) -> None:
        """Record a batch whose ClickHouse rows, table writes and dead letters are all handed over."""
        offsets: dict = {}
        for e in events:
            offsets.setdefault(e.message.tp, []).append(e.message.offset)
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting])
        new = [tp for tp in offsets if tp not in self.ledger]
        if new:
            try:
                await self._start(new)
            except Exception as exc:  # e.g. revoked meanwhile: unrecorded offsets are re-read, never skipped
                log.info("could not read committed offsets of %s: %s", new, exc)
        now = time.monotonic()
        for tp, found in offsets.items():
            if tp in self.ledger:  # a rebalance during _start may have dropped it again
                self.ledger.processed(tp, found, now)

    async def commit(self) -> None:
        async with self._lock:
            offsets = {tp: offset for tp, offset in self.ledger.committable().items()
                       if tp in self.app.consumer.assignment()}
            if not offsets:
                return
            # the changelog and dead-letter records of those offsets must be in Kafka first
            await self.app.producer.flush()
            thread = self._thread()
            consumer = thread._ensure_consumer()
            try:
                await thread.call_thread(consumer.commit, {
                    AIOKafkaTP(tp.topic, tp.partition): OffsetAndMetadata(offset, "") for tp, offset in offsets.items()
                })
            except Exception as exc:  # refused during a rebalance: the next tick retries what is still ours
                log.info("offset commit not accepted (%s); retrying at the next tick", exc)
                return
            self.ledger.mark_committed(offsets)
            self.metrics.committed_at.set(time.time())
            now = time.monotonic()
            thread.tp_last_committed_at.update({tp: now for tp in offsets})  # faust's livelock warnings

    async def reread_holes(self) -> None:
        if self.busy:  # a batch runs or waits for its flush: its offsets are not in the ledger yet
            return
        consumer = self.app.consumer
        try:
            highwaters = {tp: consumer.highwater(tp) for tp in consumer.assignment() if tp in self.ledger}
        except Exception:  # the assignment changed under us: look again at the next tick
            return
        highwaters = {tp: end for tp, end in highwaters.items() if end is not None}
        for tp, offset in self.ledger.stuck(time.monotonic(), highwaters).items():
            log.warning("re-reading %s from offset %d: offsets after it were processed, it was not", tp, offset)
            await self.app.consumer.seek(tp, offset)
        for gap in self.ledger.take_skipped():
            log.error("offsets %d..%d of %s never arrived after repeated re-reads (transaction markers or "
                      "retention); stepping over them", gap.first, gap.end - 1, gap.partition)
            self.metrics.skipped_offsets.inc(gap.end - gap.first)


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
