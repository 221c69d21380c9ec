"""Commits the input offsets the worker's ledger says are fully processed, through faust's consumer."""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from aiokafka import TopicPartition as AIOKafkaTP
from aiokafka.structs import OffsetAndMetadata

from fairwatch.stream.offsets import OffsetLedger
from fairwatch.stream.worker_metrics import WorkerMetrics

log = logging.getLogger("fairwatch.worker")


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
