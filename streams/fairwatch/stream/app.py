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

Beside this flow, and out of this module: the periodic store work (snapshots, detection, health
samples) in :mod:`fairwatch.stream.store_timers`, the web pages in :mod:`fairwatch.stream.web_pages`,
batching in :mod:`fairwatch.stream.batching`, offset commits in :mod:`fairwatch.stream.committer`.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import json
import logging
import os
import time
import weakref

import faust
from faust.streams import _current_event

from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.contracts.topics import (
    ALERTS,
    DEAD_LETTER,
    MATCH_EVENTS,
    STORED_AS_THEY_COME,
    VERIFIED_OUTCOMES,
)
from fairwatch.stream.intake import Intake
from fairwatch.stream.batching import (
    MAX_PENDING_RECORDS,
    TAKE_SECONDS,
    Pending,
    gathered_batches,
    sub_batches,
)
from fairwatch.stream.committer import LedgerCommitter
from fairwatch.stream.input_verification import InputVerifier, KeyringFile
from fairwatch.stream.processor import BatchProcessor, RawMessage, ResidentJoins
from fairwatch.stream.store_timers import register_store_timers
from fairwatch.stream.topics import JOIN_LOG_TABLE
from fairwatch.stream.web_pages import register_pages
from fairwatch.stream.worker_metrics import WorkerMetrics, record_batch
from fairwatch.stream.worker_settings import WorkerSettings
from fairwatch.stream.write_executor import SinkExecutor

log = logging.getLogger("fairwatch.worker")


def broker_credentials(link: KafkaLink) -> faust.types.auth.CredentialsT | None:
    """faust's ``broker_credentials`` for ``link`` (None for PLAINTEXT)."""
    spec = link.faust_credentials()
    if spec is None:
        return None
    if spec.kind == "ssl":
        return faust.SSLCredentials(spec.ssl_context)
    return faust.SASLCredentials(username=spec.username, password=spec.password, mechanism=spec.mechanism,
                                 ssl_context=spec.ssl_context)


def create_app(settings: WorkerSettings, policies: dict | None = None) -> faust.App:
    """The worker. ``policies`` (deployment -> :class:`~fairwatch.detect.policy.Policy`) switch on drift
    detection and alerting: every ``detect_seconds`` the owner of partition 0 runs one cycle. With
    ``settings.keyring`` input signatures are checked (:mod:`fairwatch.stream.input_verification`)."""
    # faust's own pages (/table shows the join state, /router, /graph, stats) and our /debug pages
    # are for diagnosing a worker, not for whoever reaches its port: only with FAIRWATCH_DEBUG=1
    debug = os.environ.get("FAIRWATCH_DEBUG", "").strip().lower() in ("1", "true", "yes")
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka}",
        broker_credentials=broker_credentials(settings.kafka_link),  # consumer, producer and admin clients
        store=settings.table_store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # faust binds 0.0.0.0 unless told: web_host alone only names the URL
        web_port=settings.web_port,
        web_tables_enabled=debug,
        web_router_enabled=debug,
        web_graph_enabled=debug,
        web_stats_enabled=debug,
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
    join_log = app.Table(JOIN_LOG_TABLE, default=None, partitions=settings.partitions, key_type=bytes,
                         value_type=bytes)  # bytes: faust's raw serializer for keys and values

    def read_log(partition: int):
        prefix = f"{partition}:".encode()
        return [(bytes(key).decode(), bytes(value)) for key, value in join_log.items()
                if value is not None and bytes(key).startswith(prefix)]

    resident = ResidentJoins(settings.core, read_log)
    verifier = keyring_file = None
    if settings.keyring:  # the file was checked at start (fairwatch worker); a later bad edit keeps the last good one
        keyring_file = KeyringFile(settings.keyring)
        verifier = InputVerifier(keyring_file, helper=True)
        atexit.register(verifier.close)
    processor = BatchProcessor(settings.core, partitions=settings.partitions, verifier=verifier)
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
                       e.message.key, e.message.value, tuple(e.message.headers or ()),
                       None if e.message.timestamp is None else round(e.message.timestamp * 1000))
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
                await app.producer.send(reroute.topic, reroute.key, reroute.value, reroute.partition, None,
                                        list(reroute.headers) or None)
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

    # acquisition attempts and use records: no join, so no ledger; faust commits them once the agent
    # has written them (at least once: each table keeps one row per id)
    def intake_agent(kind: str) -> None:
        topic = app.topic(settings.topic(kind), key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)
        intake = Intake(kind, keyring_file)

        async def take(stream):
            async for events in stream.take_events(settings.batch_size, within=1.0):
                messages = [RawMessage(kind, e.message.topic, e.message.partition, e.message.offset, e.message.key,
                                       e.message.value) for e in events]
                rows, letters = intake.take(messages)
                await to_clickhouse(lambda: sink.write_intake(rows))
                for letter in letters:
                    await dead_letter.send(key=letter.message.key, value=json.dumps(letter.to_record()).encode(),
                                           partition=letter.message.partition)
                    metrics.rejected.labels(letter.rejection.code.value).inc()
                metrics.consumed.labels(kind).inc(len(events))

        take.__name__ = f"take_{kind}"  # faust names an agent after its function
        app.agent(topic, concurrency=1, name=f"fairwatch.intake.{kind}")(take)

    for kind in STORED_AS_THEY_COME:
        intake_agent(kind)

    register_store_timers(app, settings, policies, metrics, count_sink_failures)

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

    register_pages(app, metrics, committer, kinds, debug=debug)
    app.fairwatch_metrics = metrics  # for tests and the CLI
    return app


EXPIRE_SECONDS = 3600.0  # how often (at most) the joins drop records idle for the TTL (FAIRWATCH_TTL_DAYS)
MAX_ROW_WRITES_IN_FLIGHT = 2  # row writes that may be on their way while the next batch is processed
ROW_WRITE_ROWS = 60_000  # rows (about two 4 MB batches) sent as one write: fewer, larger inserts cost the server less


