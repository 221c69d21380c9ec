"""One processing step of the live worker, without Kafka: raw messages in, everything to write out.

The faust agent (``fairwatch.app``) only moves bytes: it hands a batch of raw messages and a way
to read the join state to :class:`BatchProcessor`, writes the returned :class:`SinkBatch` to
ClickHouse, then the returned state changes to its changelog-backed table, then the dead
letters, and only then lets the batch's offsets be committed. Replaying a batch is harmless: the
join recognises redeliveries and the sink writes absolute, replacing rows.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, NamedTuple

from fairwatch.config import CoreConfig
from fairwatch.contracts import (
    InputItem,
    MatchEvent,
    Rejection,
    decode_message,
    format_timestamp,
)
from fairwatch.join import EventState, LabelJoin
from fairwatch.partitioning import partition_for
from fairwatch.sink import SinkBatch, event_row, labeled_rows, outcome_row

MATCH_EVENTS = "match-events"
VERIFIED_OUTCOMES = "verified-outcomes"
RECORD_KINDS = {MATCH_EVENTS: "match_event", VERIFIED_OUTCOMES: "verified_outcome"}


class RawMessage(NamedTuple):
    kind: str  # MATCH_EVENTS or VERIFIED_OUTCOMES
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: RawMessage
    rejection: Rejection
    rejected_at: datetime
    record_index: int | None = None  # the record's position in a batch envelope
    record_bytes: bytes | None = None  # that record alone (None: the whole message is rejected)

    def to_record(self) -> dict:
        """The record of schemas/dead_letter.schema.json."""
        key = self.message.key
        return {
            "source_topic": self.message.topic,
            "partition": self.message.partition if self.message.partition >= 0 else None,
            "offset": self.message.offset if self.message.offset >= 0 else None,
            "key_b64": None if key is None else base64.b64encode(key).decode(),
            "value_b64": base64.b64encode(self.message.value if self.record_bytes is None
                                          else self.record_bytes).decode(),
            "record_index": self.record_index,
            "reason_code": self.rejection.code.value,
            "field": self.rejection.field,
            "reason": self.rejection.message,
            "rejected_at": format_timestamp(self.rejected_at),
        }

    def to_row(self) -> tuple:
        record = self.to_record()
        return (
            record["source_topic"], self.message.partition, self.message.offset, record["key_b64"],
            record["value_b64"], record["reason_code"], record["field"], record["reason"], self.rejected_at,
            -1 if self.record_index is None else self.record_index,
        )


class Reroute(NamedTuple):
    """A record that arrived on a partition that is not its event_id's: sent on to the right one."""

    topic: str
    partition: int
    key: bytes
    value: bytes


@dataclass
class ProcessedBatch:
    sink: SinkBatch
    # event_id -> (partition, new state bytes or None to delete); only keys whose state changed
    state_changes: dict[str, tuple[int, bytes | None]]
    dead_letters: list[DeadLetter]
    reroutes: list[Reroute] = field(default_factory=list)
    consumed: Counter = field(default_factory=Counter)  # kind -> messages
    records: Counter = field(default_factory=Counter)  # kind -> records (a batch envelope holds many)
    rejected: Counter = field(default_factory=Counter)  # reason code -> messages
    pending_change: int = 0  # change of the number of events waiting for an outcome
    orphan_change: int = 0  # change of the number of outcomes waiting for their event
    paired: int = 0


def _gauge(state: EventState | None) -> tuple[int, int]:
    if state is None:
        return 0, 0
    return int(state.event is not None and state.outcome is None), int(state.outcome is not None and state.event is None)


class BatchProcessor:
    """Decode -> join against the stored state -> rows to write.

    Parameters
    ----------
    config
        Bucket width, TTL and intersections of the statistics core.
    clock
        Wall clock for ``ingested_at`` / ``rejected_at`` columns (a test may pin it).
    partitions
        Partition count of the input topics. When given, a record that arrived on a partition
        other than ``partition_for(event_id)`` is not joined here (its event or outcomes live on
        the other partition) but returned in ``reroutes`` to be sent there. None for file replay.
    """

    def __init__(self, config: CoreConfig = CoreConfig(), clock: Callable[[], datetime] | None = None,
                 partitions: int | None = None):
        self.config = config
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.partitions = partitions

    def process(
        self, messages: Iterable[RawMessage], load_state: Callable[[str, int], bytes | None]
    ) -> ProcessedBatch:
        """``load_state(event_id, partition)`` reads the stored join state of one event id."""
        now = self.clock().replace(microsecond=0)
        batch = ProcessedBatch(SinkBatch(), {}, [])
        by_partition: dict[int, list[tuple[RawMessage, InputItem]]] = {}
        partitions = self.partitions
        for message in messages:
            batch.consumed[message.kind] += 1
            _, items = decode_message(message.value, RECORD_KINDS[message.kind])
            batch.records[message.kind] += len(items)
            for item in items:
                if isinstance(item.record, Rejection):
                    self._reject(batch, message, item.record, now, item)
                    continue
                if partitions is not None:
                    home = partition_for(item.record.event_id, partitions)
                    if home != message.partition:
                        key = item.record.event_id.encode()
                        batch.reroutes.append(Reroute(message.topic, home, key, item.raw))
                        continue
                by_partition.setdefault(message.partition, []).append((message, item))
        for partition, items in by_partition.items():
            self._join_partition(batch, partition, items, load_state, now)
        return batch

    def _reject(self, batch: ProcessedBatch, message: RawMessage, rejection: Rejection, now: datetime,
                item: InputItem | None = None) -> None:
        in_batch = item is not None and item.index is not None
        letter = DeadLetter(message, rejection, now, item.index if in_batch else None,
                            item.raw if in_batch else None)
        batch.dead_letters.append(letter)
        batch.sink.dead_letters.append(letter.to_row())
        batch.rejected[rejection.code.value] += 1

    def _join_partition(self, batch, partition, items, load_state, now) -> None:
        # A join that lives for this batch only: the durable state is the caller's table.
        join = LabelJoin(self.config, capacity=len(items))
        before: dict[str, EventState | None] = {}
        for _, item in items:
            record = item.record
            if record.event_id not in before:
                raw = load_state(record.event_id, partition)
                before[record.event_id] = EventState.from_bytes(raw) if raw is not None else None
                join.restore(record.event_id, before[record.event_id])
        output = join.update(item.record for _, item in items)
        refused = {id(r.record): r.rejection for r in output.rejected}
        for message, item in items:
            record = item.record
            rejection = refused.get(id(record))
            if rejection is not None:
                self._reject(batch, message, rejection, now, item)
            elif isinstance(record, MatchEvent):
                batch.sink.events.append(event_row(record, now))
            else:
                batch.sink.outcomes.append(outcome_row(record, now))
        batch.sink.labeled.extend(labeled_rows(output.deltas, partition))
        batch.sink.touch(partition, output.deltas.bucket.tolist())
        batch.paired += int((output.deltas.sign > 0).sum() - (output.deltas.sign < 0).sum())
        for event_id, old in before.items():
            new = join.state_of(event_id)
            if new != old:
                batch.state_changes[event_id] = (partition, None if new is None else new.to_bytes())
                (old_pending, old_orphan), (new_pending, new_orphan) = _gauge(old), _gauge(new)
                batch.pending_change += new_pending - old_pending
                batch.orphan_change += new_orphan - old_orphan
