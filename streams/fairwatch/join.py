"""The label-delay join: match events wait for their verified outcome, or the outcome for its event.

A verified outcome arrives minutes to weeks after its match event, sometimes before it (the two
topics are consumed independently), sometimes twice (at-least-once delivery), sometimes revised
(a reviewer corrects a label). :class:`LabelJoin` turns these into *labeled deltas*: +1 when an
event meets its outcome, and -1 (old) / +1 (new) when a higher revision supersedes the outcome.
Summing the deltas always gives exactly one contribution per event, from its latest revision.

The state is one slot per event_id in columnar numpy arrays plus a compact hash table from
event_id to slot, so that a million pending events cost under 200 bytes each, id string
included (see ``benchmarks/bench_core.py``). Time only moves when the caller says so
(:meth:`LabelJoin.expire`); there is no wall clock inside.
"""

from __future__ import annotations

import hashlib
import json
import struct
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from fairwatch.config import CoreConfig
from fairwatch.contracts import MatchEvent, RejectCode, Rejection, VerifiedOutcome

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# bits of the per-slot flags byte
_HAS_EVENT = 1
_HAS_OUTCOME = 2
_MATCH = 4
_GENUINE = 8


def epoch_seconds(t: datetime | float) -> float:
    """Seconds since 1970-01-01 UTC of an aware datetime (numbers pass through)."""
    return t.timestamp() if isinstance(t, datetime) else float(t)


class Profile(NamedTuple):
    """What decides the groups of an event: where, by which algorithm, in which mode, and who.

    ``subject`` is the event's (attribute, label) pairs sorted by attribute, so that equal
    subjects give equal profiles whatever the key order of the message.
    """

    deployment: str
    algorithm: str
    mode: str
    subject: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, eq=False)
class LabeledDeltas:
    """Changes to the set of labeled outcomes, one row per change, as parallel columns.

    A row says: the comparison ``event_id`` (its groups given by ``profiles[profile]``, made at
    ``occurred_at_us``, in the event-time bucket starting at ``bucket``) with system decision
    ``match`` and verified truth ``genuine``, weighted ``weight = 1 / inclusion_prob``, enters
    (``sign`` +1) or leaves (-1) the labeled set. ``revision`` is the outcome revision the row
    adds or takes back, so a sink can key rows by (event_id, revision, sign) and stay idempotent.
    """

    profiles: Sequence[Profile]  # the join's append-only profile table, shared, not copied
    event_id: list[str]
    profile: np.ndarray  # int32, index into ``profiles``
    occurred_at_us: np.ndarray  # int64, the event's occurred_at in microseconds since the epoch
    bucket: np.ndarray  # int64, start of its bucket in seconds since the epoch (UTC)
    match: np.ndarray  # bool, decision == "match"
    genuine: np.ndarray  # bool, truth == "genuine"
    weight: np.ndarray  # float64
    sign: np.ndarray  # int8, +1 or -1
    revision: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.event_id)

    @property
    def error(self) -> np.ndarray:
        """False match (impostor judged a match) or false non-match (genuine judged a non-match)."""
        return self.genuine != self.match


class Rejected(NamedTuple):
    record: MatchEvent | VerifiedOutcome
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class JoinOutput:
    deltas: LabeledDeltas
    rejected: list[Rejected]


@dataclass(slots=True)
class JoinCounters:
    """Gauges (``pending``, ``orphans``) and running totals of what the join has seen.

    ``pending``: events waiting for an outcome; ``orphans``: outcomes waiting for their event;
    ``paired``: event-outcome pairs made; ``expired_pending`` / ``expired_orphans``: unpaired
    records dropped after the TTL; ``retired``: paired records dropped after the TTL (their
    contribution stays counted); ``duplicates``: identical redeliveries ignored; ``stale``:
    outcomes of a lower revision than the one held, ignored; ``retractions``: outcomes replaced
    by a higher revision; ``rejected``: conflicting duplicates refused.
    """

    pending: int = 0
    orphans: int = 0
    paired: int = 0
    expired_pending: int = 0
    expired_orphans: int = 0
    retired: int = 0
    duplicates: int = 0
    stale: int = 0
    retractions: int = 0
    rejected: int = 0

    @property
    def expired(self) -> int:
        return self.expired_pending + self.expired_orphans


@dataclass(frozen=True, slots=True)
class HeldEvent:
    fingerprint: int  # of the full event content, to tell a redelivery from a conflict
    occurred_at_us: int  # microseconds since the epoch
    profile: Profile
    match: bool


@dataclass(frozen=True, slots=True)
class HeldOutcome:
    fingerprint: int
    revision: int
    genuine: bool
    inclusion_prob: float


@dataclass(frozen=True, slots=True)
class EventState:
    """Everything the join keeps about one event_id, portable between processes.

    This is the value of the future changelog table (key = event_id): ``LabelJoin.state_of``
    exports it, ``LabelJoin.restore`` puts it back, ``to_bytes`` / ``from_bytes`` give a compact
    JSON encoding. Fingerprints are stable hashes (BLAKE2b), valid in any process.

    >>> state = EventState(1767323045, None, HeldOutcome(4242, 3, True, 0.25))
    >>> EventState.from_bytes(state.to_bytes()) == state
    True
    """

    last_seen: int  # epoch seconds of the latest record applied; the TTL runs from here
    event: HeldEvent | None
    outcome: HeldOutcome | None

    def to_bytes(self) -> bytes:
        ev, oc = self.event, self.outcome
        return _COMPACT.encode([
            self.last_seen,
            None if ev is None else [ev.fingerprint, ev.occurred_at_us, list(ev.profile), ev.match],
            None if oc is None else [oc.fingerprint, oc.revision, oc.genuine, oc.inclusion_prob],
        ]).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> EventState:
        last_seen, ev, oc = json.loads(raw)
        if ev is not None:
            deployment, algorithm, mode, subject = ev[2]
            profile = Profile(deployment, algorithm, mode, tuple((a, g) for a, g in subject))
            ev = HeldEvent(ev[0], ev[1], profile, ev[3])
        return cls(last_seen, ev, None if oc is None else HeldOutcome(*oc))


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # one encoder: json.dumps(**kwargs) builds one per call
_STATE_MAGIC = b"FWJS1"
_STATE_COLUMNS = (  # the per-slot columns a state blob carries, in order
    ("_flags", np.uint8), ("_last_seen", np.int64), ("_event_fp", np.uint32), ("_occurred_us", np.int64),
    ("_profile", np.int32), ("_outcome_fp", np.uint32), ("_revision", np.int32), ("_inclusion_prob", np.float64),
)
_pack_event = struct.Struct("<qdd?").pack  # occurred_at_us, score, threshold, match
_pack_outcome = struct.Struct("<dd?").pack  # verified_at, inclusion_prob, genuine


def _fingerprint(content: bytes) -> int:
    """A 32-bit hash that is the same in every process (``hash()`` of a str is not).

    It only tells a conflicting redelivery from an identical one: a collision (odds 2**-32 per
    conflict) makes a conflict pass as a duplicate, which keeps the first version either way.
    """
    return int.from_bytes(hashlib.blake2b(content, digest_size=4).digest(), "little")


class _SlotIndex:
    """event_id <-> slot number, for about 16 bytes a slot beside the id string itself.

    A ``dict[str, int]`` costs ~63 bytes an entry at a million (its table, its entries and one
    int object per value), a third of the budget; this open-addressing table of int32 over
    Python's cached ``hash(str)`` costs ~8, plus 8 for the slot -> id list. Freed entries become
    tombstones until the next rebuild.
    """

    _EMPTY = -1
    _DELETED = -2

    def __init__(self) -> None:
        self.ids: list[str | None] = []  # slot -> event_id, None when the slot is free
        self._free: list[int] = []
        self._live = self._deleted = 0
        self._rebuild(16)

    def __len__(self) -> int:
        return self._live

    def find(self, event_id: str) -> int:
        """The slot of ``event_id``, or -1."""
        table, ids = self._table, self.ids
        mask = len(table) - 1
        pos = hash(event_id) & mask
        while (slot := table[pos]) != self._EMPTY:
            if slot >= 0 and ids[slot] == event_id:
                return slot
            pos = (pos + 1) & mask
        return -1

    def add(self, event_id: str) -> int:
        """Give an absent ``event_id`` a slot."""
        if 2 * (self._live + self._deleted + 1) > len(self._table):
            self._rebuild(3 * (self._live + 1))
        if self._free:
            slot = self._free.pop()
            self.ids[slot] = event_id
        else:
            slot = len(self.ids)
            self.ids.append(event_id)
        table = self._table
        mask = len(table) - 1
        pos = hash(event_id) & mask
        while table[pos] >= 0:
            pos = (pos + 1) & mask
        if table[pos] == self._DELETED:
            self._deleted -= 1
        table[pos] = slot
        self._live += 1
        return slot

    def remove(self, event_id: str) -> int:
        """Free the slot of a present ``event_id``; return it."""
        table, ids = self._table, self.ids
        mask = len(table) - 1
        pos = hash(event_id) & mask
        while (slot := table[pos]) < 0 or ids[slot] != event_id:
            pos = (pos + 1) & mask
        table[pos] = self._DELETED
        ids[slot] = None
        self._free.append(slot)
        self._live -= 1
        self._deleted += 1
        return slot

    def _rebuild(self, size: int) -> None:
        """A fresh table of at least ``size`` entries (a power of two) holding the live slots."""
        table = np.full(1 << max(size - 1, 15).bit_length(), self._EMPTY, np.int32)
        slots = np.array([slot for slot, event_id in enumerate(self.ids) if event_id is not None], np.int64)
        pos = np.array([hash(self.ids[slot]) for slot in slots.tolist()], np.int64) & (len(table) - 1)
        while len(slots):  # vectorized linear probing; of several slots aiming at one entry, the last stays
            free = table[pos] == self._EMPTY
            table[pos[free]] = slots[free]
            placed = free & (table[pos] == slots)
            slots, pos = slots[~placed], (pos[~placed] + 1) & (len(table) - 1)
        self._table = array("i", table.tobytes())
        self._deleted = 0


class _DeltaRows:
    """Rows of one update's deltas; event fields are gathered from the slots at the end."""

    __slots__ = ("slot", "sign", "genuine", "weight", "revision")

    def __init__(self) -> None:
        self.slot: list[int] = []
        self.sign: list[int] = []
        self.genuine: list[bool] = []
        self.weight: list[float] = []
        self.revision: list[int] = []

    def add(self, slot: int, sign: int, genuine: bool, inclusion_prob: float, revision: int) -> None:
        self.slot.append(slot)
        self.sign.append(sign)
        self.genuine.append(genuine)
        self.weight.append(1.0 / inclusion_prob)
        self.revision.append(revision)


class LabelJoin:
    """Pairs match events with their verified outcomes, by event_id, in any arrival order.

    Parameters
    ----------
    config
        ``bucket_seconds`` (event-time bucket of each delta) and ``ttl_seconds`` (how long a
        record is kept after its last activity) are used.
    capacity
        Slots allocated up front; the arrays grow by half when full.

    Notes
    -----
    Rules, per event_id:

    - An event, or an outcome, waits in its slot until the other arrives; then a +1 delta.
    - An identical redelivery is a duplicate (ignored). A different event under a known
      event_id, or a different outcome with the revision held, is rejected
      (``RejectCode.CONFLICTING_DUPLICATE``); the first version received stays.
    - A higher revision replaces the outcome held (-1 old, +1 new once paired); a lower one
      is stale (ignored).
    - ``expire(now)`` drops every slot whose last activity (the latest ``occurred_at`` /
      ``verified_at`` applied to it) is ``ttl_seconds`` or more before ``now``. A record that
      arrives after its slot was dropped starts afresh, so deliveries of *both* an event and
      its outcome after the TTL would count again: the TTL must exceed the redelivery horizon.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from fairwatch.contracts import MatchEvent, VerifiedOutcome
    >>> t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    >>> event = MatchEvent("e1", t0, "gate-a", "algo-1", "verification", 0.91, 0.8, "match",
    ...                    {"sex": "F", "race": "Black"})
    >>> def outcome(truth, revision):
    ...     return VerifiedOutcome("e1", t0, truth, "r7", revision, inclusion_prob=0.5)
    >>> join = LabelJoin()
    >>> out = join.update([outcome("impostor", 0), event, event])
    >>> out.deltas.sign.tolist(), out.deltas.error.tolist(), out.deltas.weight.tolist()
    ([1], [True], [2.0])
    >>> join.counters.paired, join.counters.duplicates, join.counters.pending
    (1, 1, 0)
    >>> out = join.update([outcome("genuine", 1), outcome("impostor", 0)])
    >>> out.deltas.sign.tolist(), out.deltas.genuine.tolist()
    ([-1, 1], [False, True])
    >>> print(join.update([outcome("impostor", 1)]).rejected[0].rejection)
    conflicting_duplicate (revision): outcome e1 revision 1 was already received with different content
    >>> join.expire(datetime(2026, 3, 1, tzinfo=timezone.utc))
    ['e1']
    >>> join.counters.retired, len(join)
    (1, 0)

    References
    ----------
    .. [1] Kleppmann, M. (2017). *Designing Data-Intensive Applications*, ch. 11 "Stream joins".
    .. [2] Akidau, T. et al. (2015). The Dataflow Model. *Proc. VLDB Endowment* 8(12), 1792-1803
           (event time, watermarks and retractions).
    """

    def __init__(self, config: CoreConfig = CoreConfig(), capacity: int = 1024):
        self.bucket_seconds = config.bucket_seconds
        self.ttl_seconds = config.ttl_seconds
        self.counters = JoinCounters()
        self._index = _SlotIndex()
        self._profiles: list[Profile] = []
        self._profile_id: dict[tuple, int] = {}
        self._profile_bytes: list[bytes] = []  # repr of each profile, hashed into event fingerprints
        self._allocate_columns(max(capacity, 1))

    def _allocate_columns(self, capacity: int) -> None:
        old = getattr(self, "_flags", None)
        columns = {
            "_flags": np.uint8, "_last_seen": np.int64, "_event_fp": np.uint32,
            "_occurred_us": np.int64, "_profile": np.int32, "_outcome_fp": np.uint32,
            "_revision": np.int32, "_inclusion_prob": np.float64,
        }
        for name, dtype in columns.items():
            fresh = np.zeros(capacity, dtype=dtype)
            if old is not None:
                fresh[: len(old)] = getattr(self, name)
            setattr(self, name, fresh)

    def __len__(self) -> int:
        """Event ids held (pending, orphaned or paired)."""
        return len(self._index)

    def __contains__(self, event_id: str) -> bool:
        return self._index.find(event_id) >= 0

    @property
    def profiles(self) -> Sequence[Profile]:
        return self._profiles

    def update(self, records: Iterable[MatchEvent | VerifiedOutcome]) -> JoinOutput:
        """Apply records in arrival order; return the labeled deltas and the rejected records."""
        rows = _DeltaRows()
        rejected: list[Rejected] = []
        for record in records:
            if isinstance(record, VerifiedOutcome):
                rejection = self._add_outcome(record, rows)
            else:
                rejection = self._add_event(record, rows)
            if rejection is not None:
                rejected.append(Rejected(record, rejection))
        return JoinOutput(self._deltas(rows), rejected)

    def expire(self, now: datetime | float) -> list[str]:
        """Drop the slots idle for ``ttl_seconds`` or more before ``now``; return their event ids."""
        cutoff = epoch_seconds(now) - self.ttl_seconds
        n = len(self._index.ids)
        slots = np.flatnonzero((self._flags[:n] != 0) & (self._last_seen[:n] <= cutoff))
        flags = self._flags[slots]
        has_event = (flags & _HAS_EVENT) != 0
        has_outcome = (flags & _HAS_OUTCOME) != 0
        pending = int(np.count_nonzero(has_event & ~has_outcome))
        orphans = int(np.count_nonzero(has_outcome & ~has_event))
        c = self.counters
        c.pending -= pending
        c.orphans -= orphans
        c.expired_pending += pending
        c.expired_orphans += orphans
        c.retired += len(slots) - pending - orphans
        event_ids = [self._index.ids[slot] for slot in slots.tolist()]
        for event_id in event_ids:
            self._index.remove(event_id)
        self._flags[slots] = 0
        return event_ids

    def state_of(self, event_id: str) -> EventState | None:
        """What the join holds for ``event_id`` (None if nothing)."""
        slot = self._index.find(event_id)
        if slot < 0:
            return None
        flags = int(self._flags[slot])
        event = outcome = None
        if flags & _HAS_EVENT:
            event = HeldEvent(int(self._event_fp[slot]), int(self._occurred_us[slot]),
                              self._profiles[self._profile[slot]], bool(flags & _MATCH))
        if flags & _HAS_OUTCOME:
            outcome = HeldOutcome(int(self._outcome_fp[slot]), int(self._revision[slot]),
                                  bool(flags & _GENUINE), float(self._inclusion_prob[slot]))
        return EventState(int(self._last_seen[slot]), event, outcome)

    def restore(self, event_id: str, state: EventState | None) -> None:
        """Make the join hold ``state`` for ``event_id`` (None forgets it), as after recovery.

        Gauges follow; running totals and the counts downstream are not touched (no deltas).
        """
        slot = self._index.find(event_id)
        if slot >= 0:
            self._count_gauges(int(self._flags[slot]), -1)
            self._flags[slot] = 0
            self._index.remove(event_id)
        if state is None or (state.event is None and state.outcome is None):
            return
        slot = self._allocate(event_id)
        self._last_seen[slot] = state.last_seen
        if state.event is not None:
            ev = state.event
            self._hold_event(slot, ev.fingerprint, ev.occurred_at_us, self._intern(tuple(ev.profile)), ev.match)
        if state.outcome is not None:
            oc = state.outcome
            self._hold_outcome(slot, oc.fingerprint, oc.revision, oc.genuine, oc.inclusion_prob)
        self._count_gauges(int(self._flags[slot]), +1)

    def latest_activity(self) -> int | None:
        """The latest last-activity time (epoch seconds) of any held record: the join's stream time."""
        n = len(self._index.ids)
        held = self._flags[:n] != 0
        return int(self._last_seen[:n][held].max()) if held.any() else None

    def held_ids(self) -> list[str]:
        """Every event id the join holds, in slot order."""
        return [event_id for event_id in self._index.ids if event_id is not None]

    def export_states(self, event_ids: Iterable[str] | None = None) -> bytes:
        """The held states of ``event_ids`` (all held when None) as one compact blob.

        Ids the join does not hold are exported as "forget this id", so applying the blobs of a
        join's batches in order to another join with :meth:`import_states` reproduces its state.
        The columns are copied with numpy; this is how the live worker persists its join once per
        batch (one changelog record per partition and batch, not one per event id).
        """
        if event_ids is None:
            n = len(self._index.ids)
            slots = np.flatnonzero(self._flags[:n] != 0)
            ids = [self._index.ids[slot] for slot in slots.tolist()]
        else:
            ids = list(dict.fromkeys(event_ids))
            find = self._index.find
            slots = np.fromiter((find(event_id) for event_id in ids), np.int64, len(ids))
        held = slots >= 0
        safe = np.where(held, slots, 0)

        def column(name: str) -> np.ndarray:
            values = getattr(self, name)[safe]
            values[~held] = 0
            return values

        flags = column("_flags")
        profiles = column("_profile")
        has_event = (flags & _HAS_EVENT) != 0
        used, local = np.unique(profiles[has_event], return_inverse=True)
        profiles[has_event] = local
        profiles[~has_event] = -1
        header = _COMPACT.encode({"n": len(ids), "profiles": [list(self._profiles[p]) for p in used.tolist()]}).encode()
        id_blob = "\n".join(ids).encode()  # ids are printable ASCII without spaces (contract)
        parts = [header, id_blob] + [column(name).tobytes() if name != "_profile" else profiles.tobytes()
                                     for name, _ in _STATE_COLUMNS]
        return _STATE_MAGIC + b"".join(struct.pack("<I", len(part)) + part for part in parts)

    def import_states(self, blob: bytes) -> int:
        """Apply a blob of :meth:`export_states`: hold each id's state as exported (or forget it).

        Gauges follow; running totals and the counts downstream are not touched (no deltas).
        Returns the number of ids in the blob.
        """
        if not blob.startswith(_STATE_MAGIC):
            raise ValueError("not a join state blob (wrong magic)")
        parts, pos = [], len(_STATE_MAGIC)
        while pos < len(blob):
            (size,) = struct.unpack_from("<I", blob, pos)
            parts.append(blob[pos + 4 : pos + 4 + size])
            pos += 4 + size
        if len(parts) != 2 + len(_STATE_COLUMNS):
            raise ValueError(f"join state blob has {len(parts)} parts, expected {2 + len(_STATE_COLUMNS)}")
        header = json.loads(parts[0])
        n = header["n"]
        ids = parts[1].decode().split("\n") if n else []
        columns = {name: np.frombuffer(part, dtype) for (name, dtype), part in zip(_STATE_COLUMNS, parts[2:])}
        if len(ids) != n or any(len(values) != n for values in columns.values()):
            raise ValueError("join state blob is truncated")
        local = [self._intern((d, a, m, tuple((k, g) for k, g in s))) for d, a, m, s in header["profiles"]]
        flags = columns["_flags"]
        slots = np.empty(n, np.int64)
        find, remove, count = self._index.find, self._index.remove, self._count_gauges
        for i, event_id in enumerate(ids):
            slot = find(event_id)
            if slot >= 0:
                count(int(self._flags[slot]), -1)
                self._flags[slot] = 0
                remove(event_id)
            slots[i] = self._allocate(event_id) if flags[i] else -1
        keep = slots >= 0
        target = slots[keep]
        for name, _ in _STATE_COLUMNS:
            values = columns[name][keep]
            if name == "_profile":
                mapping = np.array(local + [0], np.int32)  # -1 (no event) maps to the last entry
                values = mapping[values]
            getattr(self, name)[target] = values
        for value in flags[keep].tolist():
            count(int(value), +1)
        return n

    # ---- records --------------------------------------------------------------------------

    def _add_event(self, ev: MatchEvent, rows: _DeltaRows) -> Rejection | None:
        occurred_us = (ev.occurred_at - _EPOCH) // _MICROSECOND  # exact, unlike timestamp()
        match = ev.decision == "match"
        key = (ev.deployment, ev.algorithm, ev.mode, tuple(sorted(ev.subject.items())))
        profile = self._intern(key)
        fingerprint = self._event_fingerprint(ev, occurred_us, match, profile)
        c = self.counters
        slot = self._index.find(ev.event_id)
        if slot < 0:
            slot = self._allocate(ev.event_id)
            self._last_seen[slot] = occurred_us // 1_000_000
            c.pending += 1
        else:
            flags = self._flags[slot]
            if flags & _HAS_EVENT:
                if self._event_fp[slot] == fingerprint:
                    c.duplicates += 1
                    return None
                c.rejected += 1
                return Rejection(RejectCode.CONFLICTING_DUPLICATE,
                                 f"event {ev.event_id} was already received with different content", "event_id")
            self._touch(slot, occurred_us // 1_000_000)
            c.orphans -= 1
            c.paired += 1
            rows.add(slot, 1, bool(flags & _GENUINE), float(self._inclusion_prob[slot]), int(self._revision[slot]))
        self._hold_event(slot, fingerprint, occurred_us, profile, match)
        return None

    def _add_outcome(self, oc: VerifiedOutcome, rows: _DeltaRows) -> Rejection | None:
        ts = oc.verified_at.timestamp()
        genuine = oc.truth == "genuine"
        fingerprint = _fingerprint(_pack_outcome(ts, oc.inclusion_prob, genuine) + oc.reviewer.encode())
        c = self.counters
        slot = self._index.find(oc.event_id)
        if slot < 0:
            slot = self._allocate(oc.event_id)
            self._last_seen[slot] = int(ts // 1)
            c.orphans += 1
        else:
            flags = self._flags[slot]
            if not flags & _HAS_OUTCOME:
                c.pending -= 1
                c.paired += 1
                rows.add(slot, 1, genuine, oc.inclusion_prob, oc.revision)
            else:
                held = self._revision[slot]
                if oc.revision < held:
                    c.stale += 1
                    return None
                if oc.revision == held:
                    if self._outcome_fp[slot] == fingerprint:
                        c.duplicates += 1
                        return None
                    c.rejected += 1
                    return Rejection(
                        RejectCode.CONFLICTING_DUPLICATE,
                        f"outcome {oc.event_id} revision {oc.revision} was already received with different content",
                        "revision",
                    )
                c.retractions += 1
                if flags & _HAS_EVENT:
                    rows.add(slot, -1, bool(flags & _GENUINE), float(self._inclusion_prob[slot]), int(held))
                    rows.add(slot, 1, genuine, oc.inclusion_prob, oc.revision)
            self._touch(slot, int(ts // 1))
        self._hold_outcome(slot, fingerprint, oc.revision, genuine, oc.inclusion_prob)
        return None

    def _event_fingerprint(self, ev: MatchEvent, occurred_us: int, match: bool, profile: int) -> int:
        content = _pack_event(occurred_us, ev.score, ev.threshold, match) + self._profile_bytes[profile]
        if ev.reference is not None:
            content += repr(sorted(ev.reference.items())).encode()
        if ev.context is not None:
            content += json.dumps(ev.context, sort_keys=True, separators=(",", ":")).encode()
        return _fingerprint(content)

    # ---- slots ----------------------------------------------------------------------------

    def _intern(self, key: tuple) -> int:
        """The id of profile ``key`` (a plain tuple: its repr goes into event fingerprints), new on first sight."""
        known = self._profile_id.get(key)
        if known is not None:
            return known
        profile = Profile(*key)
        pid = self._profile_id[profile] = len(self._profiles)
        self._profiles.append(profile)
        self._profile_bytes.append(repr(key).encode())
        return pid

    def _allocate(self, event_id: str) -> int:
        slot = self._index.add(event_id)
        if slot == len(self._flags):
            self._allocate_columns(slot + slot // 2 + 1)
        return slot

    def _count_gauges(self, flags: int, sign: int) -> None:
        if flags & (_HAS_EVENT | _HAS_OUTCOME) == _HAS_EVENT:
            self.counters.pending += sign
        elif flags & (_HAS_EVENT | _HAS_OUTCOME) == _HAS_OUTCOME:
            self.counters.orphans += sign

    def _touch(self, slot: int, seen: int) -> None:
        if seen > self._last_seen[slot]:
            self._last_seen[slot] = seen

    def _hold_event(self, slot: int, fingerprint: int, occurred_us: int, profile: int, match: bool) -> None:
        self._event_fp[slot] = fingerprint
        self._occurred_us[slot] = occurred_us
        self._profile[slot] = profile
        self._flags[slot] |= _HAS_EVENT | (_MATCH if match else 0)

    def _hold_outcome(self, slot: int, fingerprint: int, revision: int, genuine: bool, inclusion_prob: float) -> None:
        self._outcome_fp[slot] = fingerprint
        self._revision[slot] = revision
        self._inclusion_prob[slot] = inclusion_prob
        self._flags[slot] = (int(self._flags[slot]) & ~_GENUINE) | _HAS_OUTCOME | (_GENUINE if genuine else 0)

    def _deltas(self, rows: _DeltaRows) -> LabeledDeltas:
        slots = np.array(rows.slot, dtype=np.intp)
        ids = self._index.ids
        occurred_us = self._occurred_us[slots]
        return LabeledDeltas(
            profiles=self._profiles,
            event_id=[ids[slot] for slot in rows.slot],
            profile=self._profile[slots],
            occurred_at_us=occurred_us,
            bucket=occurred_us // (1_000_000 * self.bucket_seconds) * self.bucket_seconds,
            match=(self._flags[slots] & _MATCH) != 0,
            genuine=np.array(rows.genuine, dtype=bool),
            weight=np.array(rows.weight, dtype=np.float64),
            sign=np.array(rows.sign, dtype=np.int8),
            revision=np.array(rows.revision, dtype=np.int32),
        )
