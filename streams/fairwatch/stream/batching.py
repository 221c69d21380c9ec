"""How the worker cuts its input into batches and keeps them until a flush: short takes gathered into batches, batches cut into sub-batches the loop can afford, and the batches pending since the last flush."""

from __future__ import annotations

import asyncio

from fairwatch.core.join import LabelJoin
from fairwatch.stream.processor import ResidentJoins

MAX_SUB_BATCH_BYTES = 4 << 20  # ~16k records: batch envelopes would otherwise block the loop for seconds


MAX_PENDING_RECORDS = 200_000  # flush before the commit timer when this many records wait (memory, replay)


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
