"""One processing step of the live worker, without Kafka: raw messages in, everything to write out.

The faust agent (``fairwatch.stream.app``) only moves bytes: it hands a batch of raw messages to
:class:`BatchProcessor`, which decodes them and joins them in the partitions' in-memory joins
(:class:`ResidentJoins`), and writes the returned :class:`SinkBatch` rows to ClickHouse and the
dead letters to Kafka. Later, at a flush, it takes the join state and bucket counts those batches
changed (:meth:`ResidentJoins.persist`), writes the counts to ClickHouse (recomputing from the rows
the few buckets too old to be counted in memory), then the join log, and only then lets their
offsets be committed. Replaying a batch is harmless: the join recognises redeliveries and the
sink writes absolute, replacing rows. File replay and tests may instead keep one state per event
id themselves (``load_state`` / ``state_changes``).
"""

from __future__ import annotations

import base64
import json
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, NamedTuple

import numpy as np

from fairwatch.contracts.envelopes import (
    InputItem,
    ValidBatch,
    decode_message_fully,
    decode_valid_batch,
)
from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.partitioning import partitions_for
from fairwatch.contracts.records import (
    INDEPENDENT,
    PRIMARY,
    RejectCode,
    Rejection,
    format_timestamp,
)
from fairwatch.contracts.signing import FORWARDED_HEADER, SignatureClaim
from fairwatch.contracts.topics import MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.core.counts import BucketCounts
from fairwatch.core.join import EventState, LabeledDeltas, LabelJoin
from fairwatch.store.sink import SinkBatch, review_row
from fairwatch.stream.input_verification import InputVerifier, Verdict

RECORD_KINDS = {MATCH_EVENTS: "match_event", VERIFIED_OUTCOMES: "verified_outcome"}


class RawMessage(NamedTuple):
    kind: str  # MATCH_EVENTS or VERIFIED_OUTCOMES
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple = ()  # Kafka record headers, (name, bytes) pairs: a signature travels there
    timestamp: int | None = None  # the Kafka record's timestamp, ms since the epoch (None: not from Kafka)


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
            record["value_b64"], record["reason_code"], record["field"], record["reason"], int(self.rejected_at.timestamp()),
            -1 if self.record_index is None else self.record_index,
        )


class Reroute(NamedTuple):
    """A record that arrived on a partition that is not its event_id's: sent on to the right one.
    A signed message is sent on whole, with its headers (a record taken out of it would lose its
    signature), marked as forwarded."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: tuple = ()


@dataclass
class ProcessedBatch:
    sink: SinkBatch
    # event_id -> (partition, new state bytes or None to delete); only keys whose state changed
    state_changes: dict[str, tuple[int, bytes | EventState | None]]  # EventState: state_objects
    dead_letters: list[DeadLetter]
    reroutes: list[Reroute] = field(default_factory=list)
    consumed: Counter = field(default_factory=Counter)  # kind -> messages
    records: Counter = field(default_factory=Counter)  # kind -> records (a batch envelope holds many)
    rejected: Counter = field(default_factory=Counter)  # reason code -> messages
    pending_change: int = 0  # change of the number of events waiting for an outcome
    orphan_change: int = 0  # change of the number of outcomes waiting for their event
    paired: int = 0
    signed: Counter = field(default_factory=Counter)  # deployment -> messages whose signature was verified


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
    verifier
        Checks signatures against a keyring (:mod:`fairwatch.stream.input_verification`): a
        message it refuses goes to dead-letter whole, records that break the keyring's rules
        (``unsigned``, ``deployment_mismatch``) alone, and nothing of them is joined or counted;
        verified messages leave a ``signed_input`` row. None: signatures are not looked at.
    """

    def __init__(self, config: CoreConfig = CoreConfig(), clock: Callable[[], datetime] | None = None,
                 partitions: int | None = None, verifier: InputVerifier | None = None):
        self.config = config
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.partitions = partitions
        self.verifier = verifier
        # load_state's states given back as EventState objects rather than bytes (file replay keeps
        # them in a dict: the bytes are for a durable table)
        self.state_objects = False
        # partition -> (its join, profiles seen, their deployments): see _SignatureRules._may_refuse
        self._held_deployments: dict[int, tuple] = {}

    def process(
        self, messages: Iterable[RawMessage], load_state: Callable[[str, int], bytes | None] | None = None,
        resident: ResidentJoins | None = None,
    ) -> ProcessedBatch:
        """Join against ``resident`` joins (the live worker: state in memory, persisted by the caller
        through :meth:`ResidentJoins.persist`), or against per-event states read with
        ``load_state(event_id, partition)`` and returned in ``state_changes`` (replay, tests)."""
        if (resident is None) == (load_state is None):
            raise TypeError("give exactly one of load_state and resident")
        now = self.clock().replace(microsecond=0)
        batch = ProcessedBatch(SinkBatch(ingested_at=now), {}, [])
        messages = messages if isinstance(messages, list) else list(messages)
        kinds = [RECORD_KINDS[message.kind] for message in messages]
        checking = self.verifier.start(messages, kinds) if self.verifier is not None else None
        # decoded while the signatures are checked (a helper process may do that); nothing of a
        # message is used before its verdict
        opened = []
        for message, kind in zip(messages, kinds):
            fast = decode_valid_batch(message.value, kind) if isinstance(message.value, bytes) else None
            opened.append((fast, None) if fast is not None else (None, decode_message_fully(message.value, kind)[1]))
        rules = None
        if checking is not None:
            rules = _SignatureRules(self, checking.keyring, checking.result(), messages, kinds, opened,
                                    load_state, resident, now)
        # each message: a batch envelope of valid records (the common case, kept whole), or its items
        decoded: list[tuple[RawMessage, ValidBatch | list[InputItem], SignatureClaim | None]] = []
        ids: list[str] = []
        for position, (message, kind, (fast, items)) in enumerate(zip(messages, kinds, opened)):
            batch.consumed[message.kind] += 1
            batch.records[message.kind] += len(fast.records) if fast is not None else len(items)
            claim = None
            if rules is not None:
                fast, items, claim = rules.apply(batch, position, fast, items)
                if fast is None and items is None:
                    continue  # refused whole
            if fast is not None:
                if kind == "verified_outcome" and _any_independent(fast.records):
                    # an envelope with independent reviews is taken apart: they never join
                    primary = self._keep_primary(batch, [InputItem(index, record, fast)
                                                         for index, record in enumerate(fast.records)], now)
                    ids += [item.record.event_id for item in primary]
                    decoded.append((message, primary, claim))
                    continue
                ids += [record.event_id for record in fast.records]
                decoded.append((message, fast, claim))
                continue
            valid = []
            for item in items:
                if isinstance(item.record, Rejection):
                    self._reject(batch, message, item.record, now, item)
                else:
                    valid.append(item)
            if kind == "verified_outcome":
                valid = self._keep_primary(batch, valid, now)
            ids += [item.record.event_id for item in valid]
            decoded.append((message, valid, claim))
        if self.partitions is not None:
            homes = partitions_for(ids, self.partitions).tolist()
        else:
            homes = [message.partition for message, entry, _ in decoded
                     for _ in (entry.records if isinstance(entry, ValidBatch) else entry)]
        # per partition, its segments in arrival order: a whole envelope, or items of one message
        by_partition: dict[int, list[tuple[RawMessage, ValidBatch | list[InputItem]]]] = {}
        position = 0
        for message, entry, claim in decoded:
            records = entry.records if isinstance(entry, ValidBatch) else [item.record for item in entry]
            here = homes[position : position + len(records)]
            position += len(records)
            if isinstance(entry, ValidBatch):
                if here.count(message.partition) == len(here):
                    by_partition.setdefault(message.partition, []).append((message, entry))
                    continue
                entry = [InputItem(index, record, entry) for index, record in enumerate(records)]
            if claim is not None:  # signed: sent on whole (once) to the other partitions it holds records of
                if not claim.forwarded:
                    headers = (*message.headers, (FORWARDED_HEADER, b"%s:%d:%d" % (
                        message.topic.encode(), message.partition, message.offset)))
                    for home in sorted(set(here) - {message.partition}):
                        batch.reroutes.append(Reroute(message.topic, home, message.key, message.value, headers))
                staying = [item for item, home in zip(entry, here) if home == message.partition]
            else:
                staying = []
                for item, home in zip(entry, here):
                    if home != message.partition:
                        key = item.record.event_id.encode()
                        batch.reroutes.append(Reroute(message.topic, home, key, item.raw))
                    else:
                        staying.append(item)
            if staying:
                by_partition.setdefault(message.partition, []).append((message, staying))
        for partition, segments in by_partition.items():
            if resident is not None:
                self._join_resident(batch, partition, segments, resident, now)
            else:
                items = [(message, item) for message, entry in segments for item in _items(entry)]
                self._join_partition(batch, partition, items, load_state, now)
        return batch

    @staticmethod
    def _keep_primary(batch: ProcessedBatch, items: list[InputItem], now: datetime) -> list[InputItem]:
        """The items that count; independent reviews go straight to their own rows (they are
        not joined, so their partition does not matter)."""
        primary = []
        for item in items:
            record = item.record
            if record.review == INDEPENDENT:
                batch.sink.reviews.append(review_row(record, now))
            else:
                primary.append(item)
        return primary

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
                # bytes from a durable table; an EventState from a caller that keeps them in memory
                before[record.event_id] = EventState.from_bytes(raw) if isinstance(raw, bytes) else raw
                join.restore(record.event_id, before[record.event_id])
        output = join.update(item.record for _, item in items)
        self._rows(batch, partition, items, output, now)
        for event_id, old in before.items():
            new = join.state_of(event_id)
            if new != old:
                kept = new if new is None or self.state_objects else new.to_bytes()
                batch.state_changes[event_id] = (partition, kept)
                (old_pending, old_orphan), (new_pending, new_orphan) = _gauge(old), _gauge(new)
                batch.pending_change += new_pending - old_pending
                batch.orphan_change += new_orphan - old_orphan

    def _join_resident(self, batch, partition, segments, resident: ResidentJoins, now) -> None:
        join = resident.join(partition)
        pending, orphans = join.counters.pending, join.counters.orphans
        records = [record for _, entry in segments
                   for record in (entry.records if isinstance(entry, ValidBatch) else [item.record for item in entry])]
        output = join.update(records)  # the join notes the states it changes, for the next persist
        cold = resident.count(partition, output.deltas)  # buckets behind the floor: recomputed
        if output.rejected:  # rare (conflicting redeliveries): record by record
            self._rows(batch, partition, [(message, item) for message, entry in segments for item in _items(entry)],
                       output, now, cold)
        else:  # rows of whole envelopes are built where they are written (SinkBatch.built)
            for message, entry in segments:
                if isinstance(entry, ValidBatch):
                    batch.sink.envelopes.append((RECORD_KINDS[message.kind], entry.raw, len(entry.records)))
                else:
                    batch.sink.records += [item.record for item in entry]
            self._delta_rows(batch, partition, output, cold)
        batch.pending_change += join.counters.pending - pending
        batch.orphan_change += join.counters.orphans - orphans

    def _rows(self, batch, partition, items, output, now, recompute: set[int] | None = None) -> None:
        refused = {id(r.record): r.rejection for r in output.rejected}
        for message, item in items:
            rejection = refused.get(id(item.record))
            if rejection is not None:
                self._reject(batch, message, rejection, now, item)
            else:
                batch.sink.records.append(item.record)
        self._delta_rows(batch, partition, output, recompute)

    @staticmethod
    def _delta_rows(batch, partition, output, recompute: set[int] | None = None) -> None:
        """The join's deltas, whose labeled rows the sink builds; the buckets whose counts are
        recomputed from those rows: ``recompute``, or all of them (no resident counts)."""
        deltas = output.deltas
        if len(deltas):
            batch.sink.deltas.append((deltas, partition))
        batch.sink.touch(partition, deltas.bucket.tolist() if recompute is None else recompute)
        batch.paired += int((deltas.sign > 0).sum() - (deltas.sign < 0).sum())


class _SignatureRules:
    """What the keyring allows of each message of one batch, given its verdict (see
    :mod:`fairwatch.contracts.keyring`): a refused message goes whole, a record naming another
    deployment than its signature (``deployment_mismatch``) or unsigned where its deployment
    requires signatures (``unsigned``) alone; a verified message leaves a ``signed_input`` row."""

    def __init__(self, processor: BatchProcessor, keyring: Keyring, verdicts: list[Verdict], messages, kinds, opened,
                 load_state, resident, now: datetime):
        self.processor, self.keyring, self.verdicts = processor, keyring, verdicts
        self.messages, self.kinds, self.opened = messages, kinds, opened
        self.load_state, self.resident, self.now = load_state, resident, now
        self._events: dict[str, str] | None = None  # event_id -> deployment of this batch's events
        self._batch_deployments: set[str] | None = None

    def apply(self, batch: ProcessedBatch, position: int, fast: ValidBatch | None, items: list[InputItem] | None):
        """(fast, items, claim) of message ``position`` after the rules; (None, None, None) when it
        is refused whole."""
        message, kind, verdict = self.messages[position], self.kinds[position], self.verdicts[position]
        if isinstance(verdict, Rejection):
            self.processor._reject(batch, message, verdict, self.now)
            return None, None, None
        records = fast.records if fast is not None else [i.record for i in items if not isinstance(i.record, Rejection)]
        refused: dict[int, Rejection] = {}  # position among ``records`` -> why
        if kind == "match_event":
            if verdict is not None:
                claimed = verdict.deployment
                if [r.deployment for r in records].count(claimed) != len(records):
                    refused = {k: Rejection(RejectCode.DEPLOYMENT_MISMATCH, f"the event names deployment "
                                            f"{r.deployment!r}, its message is signed for {claimed!r}", "deployment")
                               for k, r in enumerate(records) if r.deployment != claimed}
            elif self.keyring.any_required:
                requires = self.keyring.requires
                needed = {d for d in {r.deployment for r in records} if requires(d)}
                if needed:
                    refused = {k: Rejection(RejectCode.UNSIGNED, f"deployment {r.deployment!r} requires signed "
                                            "input; this message carries no signature", "headers")
                               for k, r in enumerate(records) if r.deployment in needed}
        elif verdict is None and self.keyring.outcomes_require_signatures:
            self.processor._reject(batch, message, Rejection(
                RejectCode.UNSIGNED, "verified outcomes must be signed (the keyring requires signatures and an "
                "outcome names no deployment)", "headers"), self.now)
            return None, None, None
        elif records and (verdict is not None or self.keyring.any_required) and self._may_refuse(message, verdict):
            events = self._event_deployments(message, [r.event_id for r in records])
            for k, deployment in enumerate(events):
                if deployment is None:
                    continue  # its event is not known here (yet): not checked
                if verdict is not None and deployment != verdict.deployment:
                    refused[k] = Rejection(RejectCode.DEPLOYMENT_MISMATCH, f"the outcome's event is of deployment "
                                           f"{deployment!r}, its message is signed for {verdict.deployment!r}",
                                           "event_id")
                elif verdict is None and self.keyring.requires(deployment):
                    refused[k] = Rejection(RejectCode.UNSIGNED, f"the outcome's event is of deployment {deployment!r},"
                                           " which requires signed input; this message carries no signature",
                                           "headers")
        if verdict is not None:
            batch.signed[verdict.deployment] += 1
            batch.sink.signed.append((
                message.topic, message.partition, message.offset, kind, verdict.deployment, verdict.key_id,
                int(verdict.signed_time.timestamp()), -1 if message.timestamp is None else message.timestamp,
                verdict.signature_b64, message.value, len(records), int(self.now.timestamp())))
        if not refused:
            return fast, items, verdict
        if len(refused) == (len(fast.records) if fast is not None else len(items)):
            # every record refused by the rules: one dead letter for the message (an unsigned flood
            # costs a dead letter per message, not per record)
            first = refused[0]
            if len(refused) > 1:
                first = Rejection(first.code, f"{first.message} (and so all {len(refused)} records of the message)",
                                  first.field)
            self.processor._reject(batch, message, first, self.now)
            return None, None, verdict
        if fast is not None:
            items = [InputItem(index, record, fast) for index, record in enumerate(fast.records)]
        kept, k = [], 0
        for item in items:
            if isinstance(item.record, Rejection):
                kept.append(item)
                continue
            rejection = refused.get(k)
            k += 1
            if rejection is None:
                kept.append(item)
            elif item.index is None:  # a single-record message
                self.processor._reject(batch, message, rejection, self.now)
            else:
                self.processor._reject(batch, message, rejection, self.now, item)
        return None, kept, verdict

    def _may_refuse(self, message: RawMessage, verdict: SignatureClaim | None) -> bool:
        """Whether an outcome of this message could be refused for its event's deployment: not when
        every deployment the partition's join has ever held (its profiles, append-only) and every
        event of this batch is the one the message is signed for (or, unsigned, none requires
        signatures). Exact, and it spares a look-up per outcome on a worker that serves one deployment."""
        if self.resident is None:
            return True
        join = self.resident.join(message.partition)
        held = self.processor._held_deployments  # kept between batches: profiles only grow
        known = held.get(message.partition)
        if known is None or known[0]() is not join or known[1] != len(join.profiles):
            known = held[message.partition] = (weakref.ref(join), len(join.profiles),
                                               {p.deployment for p in join.profiles})
        deployments = known[2] | self._batch_deployments_let_through()
        if verdict is not None:
            return not deployments <= {verdict.deployment}
        return any(map(self.keyring.requires, deployments))

    def _event_deployments(self, message: RawMessage, event_ids: list[str]) -> list[str | None]:
        """The deployment of each event id's event where it is known: held by the join of the
        message's partition, or in this batch; None elsewhere. (Only that partition's join: an id
        of another partition is never held there; its records are sent on and checked at home.)"""
        partition = message.partition
        if self.resident is not None:
            found = self.resident.join(partition).deployments_of(event_ids)
        else:
            found = []
            for event_id in event_ids:
                raw = self.load_state(event_id, partition)
                state = EventState.from_bytes(raw) if raw is not None else None
                found.append(state.event.profile.deployment if state is not None and state.event is not None else None)
        if None in found:  # not held (yet): its event may be in this batch
            events = self._batch_events()
            found = [events.get(event_id) if deployment is None else deployment
                     for event_id, deployment in zip(event_ids, found)]
        return found

    def _batch_deployments_let_through(self) -> set[str]:
        """The deployments of the events of this batch that the rules let through (see apply): a
        signed message's own, the unsigned ones' that do not require signatures."""
        if self._batch_deployments is None:
            found: set[str] = set()
            for (fast, items), kind, verdict in zip(self.opened, self.kinds, self.verdicts):
                if kind != "match_event" or isinstance(verdict, Rejection):
                    continue
                if verdict is not None:
                    found.add(verdict.deployment)
                    continue
                records = fast.records if fast is not None else [i.record for i in items
                                                                 if not isinstance(i.record, Rejection)]
                found |= {d for d in {r.deployment for r in records} if not self.keyring.requires(d)}
            self._batch_deployments = found
        return self._batch_deployments

    def _batch_events(self) -> dict[str, str]:
        """event id -> deployment of the events of this batch that the rules let through (see apply)."""
        if self._events is not None:
            return self._events
        events: dict[str, str] = {}
        requires = self.keyring.requires
        for (fast, items), kind, verdict in zip(self.opened, self.kinds, self.verdicts):
            if kind != "match_event" or isinstance(verdict, Rejection):
                continue
            records = fast.records if fast is not None else [i.record for i in items
                                                             if not isinstance(i.record, Rejection)]
            ids, deployments = [r.event_id for r in records], [r.deployment for r in records]
            if verdict is not None and deployments.count(verdict.deployment) == len(deployments):
                events.update(dict.fromkeys(ids, verdict.deployment))  # the common case, at C speed
            elif verdict is None and not any(map(requires, set(deployments))):
                events.update(zip(ids, deployments))
            else:
                events.update((i, d) for i, d in zip(ids, deployments)
                              if (d == verdict.deployment if verdict is not None else not requires(d)))
        self._events = events
        return events


def _any_independent(records: list) -> bool:
    return any(record.review != PRIMARY for record in records)


def _items(entry: ValidBatch | list[InputItem]) -> list[InputItem]:
    if isinstance(entry, ValidBatch):
        return [InputItem(index, record, entry) for index, record in enumerate(entry.records)]
    return entry


COUNTS_RESIDENT_SECONDS = 2 * 86_400  # buckets this far behind a partition's newest stay counted in memory
_NO_FLOOR = -(1 << 62)
_FLUSH_MAGIC = b"FWFL1"  # a flush's last log record: it names the flush's blobs and the counts floor


@dataclass
class Persisted:
    """What :meth:`ResidentJoins.persist` gives: the join-log table writes in order (None
    deletes), and the counts cells changed since the last call (a :meth:`BucketCounts.export_cells`
    blob of absolute totals, for ``group_counts``; None when none changed)."""

    writes: list[tuple[str, bytes | None]] = field(default_factory=list)
    counts: bytes | None = None


class ResidentJoins:
    """The join state and bucket counts of the partitions a worker owns: in memory, the join
    persisted as a log.

    Counts are kept here, not recomputed from ClickHouse: each partition's :class:`BucketCounts`
    takes the deltas of its join, and a flush writes the changed cells' totals. Buckets behind the
    partition's *floor* are not resident: a late delta there is counted by recomputing that bucket
    from the stored labeled rows instead (:meth:`count` returns those buckets). The floor follows
    the newest bucket at ``resident_seconds`` (memory), and stays above every bucket a pair may
    have expired from (the TTL), so the counts of resident buckets are exactly what the join
    holds: a rebuilt partition derives them from its join (:meth:`LabelJoin.labeled`) and writes
    them all again at its first flush, so the counts need not reach ClickHouse before the log.

    The durable form is a key-value table (the worker's changelog-backed faust table): for each
    partition, keys ``"{partition}:{seq}"``. :meth:`persist` writes one *flush*: blobs of the join
    states changed since the last call (the join notes them: :meth:`LabelJoin.take_changes`,
    :meth:`LabelJoin.export_slots`), then a marker record
    naming the first seq of the flush and the floor. Only flushes whose marker is in the log are
    rebuilt: a crash part-way through a flush leaves blobs no marker names, which are ignored
    (their batches are read again). When the log holds more than ``compact_factor`` times the ids
    the join holds, a flush writes everything afresh, marked as a base (the rebuild starts at the
    last base), and then deletes the older keys.

    Parameters
    ----------
    read_log
        ``read_log(partition)`` -> the (key, blob) pairs stored for that partition, any order.
    clock
        Wall clock (epoch seconds): the floor never moves past it, whatever a record's date says.
    """

    MAX_BLOB_BYTES = 512 * 1024  # well under Kafka's default 1 MB message size

    def __init__(self, config: CoreConfig, read_log: Callable[[int], Iterable[tuple[str, bytes]]],
                 compact_factor: float = 2.0, compact_min_ids: int = 100_000,
                 resident_seconds: float = COUNTS_RESIDENT_SECONDS, clock: Callable[[], float] = time.time):
        self.config, self.read_log = config, read_log
        self.compact_factor, self.compact_min_ids = compact_factor, compact_min_ids
        self.resident_seconds, self.clock = resident_seconds, clock
        self._joins: dict[int, LabelJoin] = {}
        self._counts: dict[int, BucketCounts] = {}
        self._floor: dict[int, int] = {}
        self._keys: dict[int, list[str]] = {}  # live log keys, oldest first
        self._next_seq: dict[int, int] = {}
        self._logged_ids: dict[int, int] = {}  # ids in the log since its base

    def joins(self) -> dict[int, LabelJoin]:
        return dict(self._joins)

    def join(self, partition: int) -> LabelJoin:
        """The partition's join, rebuilt from its log on first use."""
        if partition not in self._joins:
            self._restore(partition)
        return self._joins[partition]

    def counts(self, partition: int) -> BucketCounts:
        """The partition's resident bucket counts (those of buckets at or after its floor)."""
        self.join(partition)
        return self._counts[partition]

    def floor(self, partition: int) -> int:
        """Buckets starting before this are not resident (see :meth:`count`)."""
        self.join(partition)
        return self._floor[partition]

    def _restore(self, partition: int) -> None:
        join = LabelJoin(self.config)
        entries = sorted((int(key.rsplit(":", 1)[1]), key, bytes(blob)) for key, blob in self.read_log(partition))
        blobs = {seq: blob for seq, _, blob in entries}
        flushes = [(seq, json.loads(blob[len(_FLUSH_MAGIC):])) for seq, _, blob in entries
                   if blob.startswith(_FLUSH_MAGIC)]
        bases = [i for i, (_, flush) in enumerate(flushes) if flush["base"]]
        floor, logged = _NO_FLOOR, 0
        for seq, flush in flushes[bases[-1] if bases else 0 :]:
            for part in range(flush["first"], seq):
                if part not in blobs:
                    raise ValueError(f"join log of partition {partition}: record {part} of the flush marked at "
                                     f"{seq} is missing (the log was edited or compacted by something else)")
                logged += join.import_states(blobs[part])
            floor = flush["floor"]
        counts = BucketCounts(self.config)
        counts.update(join.labeled(floor))  # marked changed: the log may be ahead of group_counts
        self._joins[partition], self._counts[partition], self._floor[partition] = join, counts, floor
        self._keys[partition] = [key for _, key, _ in entries]  # unmarked ones go at the next compaction
        self._next_seq[partition] = entries[-1][0] + 1 if entries else 0
        self._logged_ids[partition] = logged
        join.take_changes()  # what the log holds already

    def count(self, partition: int, deltas: LabeledDeltas) -> set[int]:
        """Add the join's deltas to the partition's counts. Returns the buckets of the deltas
        behind the floor, which are not resident: those must be recomputed from the stored rows."""
        counts, floor = self.counts(partition), self._floor[partition]
        if not len(deltas):
            return set()
        resident = deltas.bucket >= floor
        if resident.all():
            counts.update(deltas)
            return set()
        counts.update(_select(deltas, resident))
        return set(deltas.bucket[~resident].tolist())

    def expire(self, partition: int, now: float) -> list[str]:
        """Drop the partition's records idle for the TTL (see :meth:`LabelJoin.expire`), as of the
        earlier of ``now`` and the join's stream time (a replay of old data expires nothing it
        still needs, one record dated in the future expires nothing early); the next
        :meth:`persist` writes them away. Returns the expired ids."""
        join = self._joins.get(partition)
        latest = join.latest_activity() if join is not None else None
        if latest is None:
            return []
        return join.expire(min(now, latest))  # the join notes them for the next persist

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the in-memory state (revoked, or reassigned: the log is the truth again)."""
        for partition in partitions:
            for holder in (self._joins, self._counts, self._floor, self._keys, self._next_seq, self._logged_ids):
                holder.pop(partition, None)

    def persist(self, partition: int) -> Persisted:
        """One flush of the partition: what changed since the last call, for the log and for ClickHouse."""
        if partition not in self._joins:
            return Persisted()
        join, counts = self._joins[partition], self._counts[partition]
        cells = counts.take_changed()
        changed = counts.export_cells(cells) if len(cells) else None  # to the sink process, not Kafka
        slots, forgotten = join.take_changes()
        touched = len(slots) + len(forgotten)
        if not touched:
            return Persisted([], changed)
        floor = self._move_floor(partition)
        first = self._next_seq[partition]
        base = self._logged_ids[partition] + touched > max(self.compact_factor * len(join), self.compact_min_ids)
        old = self._keys[partition]
        if base:
            self._keys[partition] = []
            writes = self._append(partition, self._state_blobs(join, join.held_slots(), []))
            self._logged_ids[partition] = len(join)
        else:
            writes = self._append(partition, self._state_blobs(join, slots, forgotten))
            self._logged_ids[partition] += touched
        marker = _FLUSH_MAGIC + json.dumps({"first": first, "base": base, "floor": floor}).encode()
        writes += self._append(partition, [marker])
        if base:
            writes += [(key, None) for key in old]
        return Persisted(writes, changed)

    def _move_floor(self, partition: int) -> int:
        """The floor (see the class) moves up to the newest bucket minus ``resident_seconds``, and
        to just after the last bucket the TTL may have expired pairs from, never past the wall
        clock; cells behind it leave memory once they are a quarter of them."""
        join, counts, floor = self._joins[partition], self._counts[partition], self._floor[partition]
        now = self.clock()
        newest, latest = counts.newest_bucket(), join.latest_activity()
        if newest is not None:
            floor = max(floor, int(min(newest, now) - self.resident_seconds))
        floor = max(floor, int(min(now if latest is None else latest, now)) - self.config.ttl_seconds + 1)
        self._floor[partition] = floor
        behind = len(counts) - len(counts.cells_from(floor))
        if behind >= max(1024, len(counts) // 4):
            counts.evict_before(floor)
        return floor

    def _append(self, partition: int, blobs: list[bytes]) -> list[tuple[str, bytes]]:
        writes = []
        for blob in blobs:
            key = f"{partition}:{self._next_seq[partition]:012d}"
            self._next_seq[partition] += 1
            self._keys[partition].append(key)
            writes.append((key, blob))
        return writes

    def _state_blobs(self, join: LabelJoin, slots: np.ndarray, forgotten: list[str]) -> list[bytes]:
        """The ids let go (``forgotten``) and the states of ``slots``, in blobs of at most about
        MAX_BLOB_BYTES (an id, its newline and the state columns take about its length + 48)."""
        sizes = np.concatenate([np.fromiter(map(len, forgotten), np.int64, len(forgotten)),
                                join.slot_id_lengths(slots)]) + 48
        chunk_of = (np.cumsum(sizes) - 1) // self.MAX_BLOB_BYTES
        bounds = [0, *(np.flatnonzero(np.diff(chunk_of)) + 1).tolist(), len(sizes)]
        out = []
        for start, stop in zip(bounds, bounds[1:]):
            gone = forgotten[start:stop]
            held = slots[max(start - len(forgotten), 0) : max(stop - len(forgotten), 0)]
            out += self._fitted(join, held, gone)
        return out

    def _fitted(self, join: LabelJoin, slots: np.ndarray, forgotten: list[str]) -> list[bytes]:
        """One blob, or halves (in order: the ids let go first) until each fits (many distinct
        subjects make the header grow)."""
        blob = join.export_slots(slots, forgotten)
        if len(blob) <= self.MAX_BLOB_BYTES * 1.5 or len(slots) + len(forgotten) < 2:
            return [blob]
        if forgotten and len(slots):
            return self._fitted(join, slots[:0], forgotten) + self._fitted(join, slots, [])
        if forgotten:
            middle = len(forgotten) // 2
            return self._fitted(join, slots, forgotten[:middle]) + self._fitted(join, slots, forgotten[middle:])
        middle = len(slots) // 2
        return self._fitted(join, slots[:middle], []) + self._fitted(join, slots[middle:], [])


def _select(deltas: LabeledDeltas, keep) -> LabeledDeltas:
    """The deltas where ``keep`` (a bool mask) holds."""
    ids = deltas.event_id
    return LabeledDeltas(deltas.profiles, [ids[i] for i in keep.nonzero()[0].tolist()], deltas.profile[keep],
                         deltas.occurred_at_us[keep], deltas.bucket[keep], deltas.match[keep], deltas.genuine[keep],
                         deltas.weight[keep], deltas.sign[keep], deltas.revision[keep])
