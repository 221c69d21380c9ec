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
import operator
import struct
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import repeat
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from fairwatch.contracts.records import (
    MatchEvent,
    RejectCode,
    Rejection,
    VerifiedOutcome,
)
from fairwatch.core import blob_framing as blobs
from fairwatch.core.config import CoreConfig

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# bits of the per-slot flags byte
_HAS_EVENT = 1
_HAS_OUTCOME = 2
_MATCH = 4
_GENUINE = 8
_LISTED = 16  # an identification search that carried its candidate list


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
    # bool: decision == "match"; for a mated search with its candidate list, whether the mate was
    # identified (its rank at most the number of candidates at or above the threshold)
    match: np.ndarray
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
    listed: bool = False  # a search with its candidate list: its mate is found by rank
    above: int = 0  # candidates at or above the threshold (searches with a list)


@dataclass(frozen=True, slots=True)
class HeldOutcome:
    fingerprint: int
    revision: int
    genuine: bool
    inclusion_prob: float
    mate_rank: int = 0  # a mated search's mate in the candidate list; 0: not in it (or not a search)


@dataclass(frozen=True, slots=True)
class EventState:
    """Everything the join keeps about one event_id, portable between processes.

    This is the value of the future changelog table (key = event_id): ``LabelJoin.state_of``
    exports it, ``LabelJoin.restore`` puts it back, ``to_bytes`` / ``from_bytes`` give a compact
    JSON encoding. Fingerprints are stable hashes (see ``_fingerprint``), valid in any process.

    >>> state = EventState(1767323045, None, HeldOutcome(4242, 3, True, 0.25))
    >>> EventState.from_bytes(state.to_bytes()) == state
    True
    """

    last_seen: int  # epoch seconds of the latest record applied; the TTL runs from here
    event: HeldEvent | None
    outcome: HeldOutcome | None

    def to_bytes(self) -> bytes:
        ev, oc = self.event, self.outcome
        # the search fields are written only when set, so states without them keep their bytes
        return _COMPACT.encode([
            self.last_seen,
            None if ev is None else [ev.fingerprint, ev.occurred_at_us, list(ev.profile), ev.match]
            + ([ev.listed, ev.above] if ev.listed else []),
            None if oc is None else [oc.fingerprint, oc.revision, oc.genuine, oc.inclusion_prob]
            + ([oc.mate_rank] if oc.mate_rank else []),
        ]).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> EventState:
        last_seen, ev, oc = json.loads(raw)
        if ev is not None:
            deployment, algorithm, mode, subject = ev[2]
            profile = Profile(deployment, algorithm, mode, tuple((a, g) for a, g in subject))
            ev = HeldEvent(ev[0], ev[1], profile, *ev[3:])
        return cls(last_seen, ev, None if oc is None else HeldOutcome(*oc))


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # one encoder: json.dumps(**kwargs) builds one per call
_STATE_MAGIC = b"FWJS2"
_STATE_COLUMNS = (  # the per-slot columns a state blob carries, in order
    ("_flags", np.uint8), ("_last_seen", np.int64), ("_event_fp", np.uint32), ("_occurred_us", np.int64),
    ("_profile", np.int32), ("_outcome_fp", np.uint32), ("_revision", np.int32), ("_inclusion_prob", np.float64),
    ("_above", np.int16), ("_mate_rank", np.int16),
)
_STATE_MAGIC_V1 = b"FWJS1"  # before identification searches: the first eight columns (still read)
_STATE_COLUMNS_V1 = _STATE_COLUMNS[:8]
_float_pair_bits = struct.Struct("<QQ").unpack
_pack_float_pair = struct.Struct("<dd").pack
_M64 = (1 << 64) - 1
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64's finalizer
# one salt per field, so that swapping two fields' values changes the fingerprint
_EVENT_SALTS = (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89,
                0x452821E638D01377, 0xBE5466CF34E90C6C)  # occurred_us, score, threshold, match, profile, extras
_OUTCOME_SALTS = (0xC0AC29B7C97C50DD, 0x3F84D5B5B5470917, 0x9216D5D98979FB1B, 0xD1310BA698DFB5AC)
# verified_at, inclusion_prob, genuine, reviewer
_EVENT_SALTS_ARRAY = np.array(_EVENT_SALTS, np.uint64)
_OUTCOME_SALTS_ARRAY = np.array(_OUTCOME_SALTS, np.uint64)


def _mix64(x: int) -> int:
    x ^= x >> 30
    x = (x * _MIX1) & _M64
    x ^= x >> 27
    x = (x * _MIX2) & _M64
    return x ^ (x >> 31)


def _mix64_array(x: np.ndarray) -> np.ndarray:
    """:func:`_mix64` of every element of a uint64 array, in place."""
    x ^= x >> 30
    x *= _MIX1
    x ^= x >> 27
    x *= _MIX2
    x ^= x >> 31
    return x


def _fingerprint(fields: Sequence[int], salts: Sequence[int]) -> int:
    """A 32-bit hash of 64-bit ``fields``, the same in every process (``hash()`` of a str is not).

    It only tells a conflicting redelivery from an identical one: a collision (odds 2**-32 per
    conflict) makes a conflict pass as a duplicate, which keeps the first version either way.
    Each field goes through a bijection (odd multiplier, xorshift) before the sum, so a change
    in one field always changes the sum, which is then fully mixed. :func:`_fingerprints` is the
    same function over columns; both must agree.
    """
    total = 0
    for value, salt in zip(fields, salts):
        lane = ((value ^ salt) * _MIX1) & _M64
        total += lane ^ (lane >> 32)
    return _mix64(total & _M64) >> 32


def _fingerprints(fields: np.ndarray, salts: np.ndarray) -> np.ndarray:
    """:func:`_fingerprint` of each row of a (records, fields) uint64 array (overwritten), as uint32."""
    fields ^= salts
    fields *= _MIX1
    fields ^= fields >> 32
    total = fields.sum(axis=1, dtype=np.uint64)
    return (_mix64_array(total) >> 32).astype(np.uint32)


def _text_hash(content: bytes) -> int:
    """64 bits of BLAKE2b: a string field's contribution to a fingerprint."""
    return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "little")


def _extras_hash(reference: Mapping[str, str] | None, context: Mapping[str, Any] | None,
                 cluster_id: str | None = None, search: tuple | None = None, use_id: str | None = None) -> int:
    """The event fingerprint's field for the optional reference, context, cluster_id, search
    (candidates, list_length, gallery_size) and use_id: 0 when all are absent; without a cluster_id,
    a search or a use_id the same as before they existed, so stored join states keep their fingerprints."""
    if reference is None and context is None and cluster_id is None and search is None and use_id is None:
        return 0
    return _text_hash(
        (b"-" if reference is None else b"R" + repr(sorted(reference.items())).encode())
        + b"\0"  # a repr has no raw NUL, so the parts cannot run into each other
        + (b"-" if context is None else b"C" + json.dumps(context, sort_keys=True, separators=(",", ":")).encode())
        + (b"" if cluster_id is None else b"\0K" + cluster_id.encode())
        + (b"" if search is None else b"\0S" + _search_text(*search))
        + (b"" if use_id is None else b"\0U" + use_id.encode())
    )


def _search_text(candidates, list_length: int | None, gallery_size: int | None) -> bytes:
    """A search's list and bounds as bytes for its fingerprint (scores as their IEEE bits)."""
    entries = [(c.rank, struct.pack("<d", c.score).hex(), c.candidate_id,
                None if c.groups is None else sorted(c.groups.items())) for c in candidates or ()]
    return repr((candidates is None, entries, list_length, gallery_size)).encode()


def _mate_field(mate_rank: int | None) -> int:
    """What a mate_rank adds to an outcome's reviewer field: 0 without one, so that outcomes
    without it keep the fingerprints stored join states hold."""
    return 0 if not mate_rank else _mix64(mate_rank ^ 0x6A09E667F3BCC909)


def _search_of(ev: MatchEvent) -> tuple | None:
    if ev.candidates is None and ev.list_length is None and ev.gallery_size is None:
        return None
    return ev.candidates, ev.list_length, ev.gallery_size


class _SlotIndex:
    """event_id <-> slot number, for about 24 bytes a slot beside the id string itself.

    A ``dict[str, int]`` costs ~63 bytes an entry at a million (its table, its entries and one
    int object per value), a third of the budget; this open-addressing table of int32 over
    Python's cached ``hash(str)`` costs ~8, plus 8 for the slot -> id list and 8 for the slot's
    hash, which lets a probe skip other ids and :meth:`_rebuild` place the slots without reading
    their id strings (a cache miss each). Freed entries become tombstones until the next rebuild.

    :meth:`find_many` and :meth:`add_many` are plain loops: at ~100 ids a call, numpy's cost
    per operation makes vectorized probing slower than this.
    """

    _EMPTY = -1
    _DELETED = -2

    def __init__(self) -> None:
        self.ids: list[str | None] = []  # slot -> event_id, None when the slot is free
        self._hashes = array("q")  # slot -> hash(event_id)
        self._free: list[int] = []
        self._live = self._deleted = 0
        self._rebuild(16)

    def __len__(self) -> int:
        return self._live

    def find(self, event_id: str) -> int:
        """The slot of ``event_id``, or -1."""
        table, ids, slot_hashes = self._table, self.ids, self._hashes
        mask = len(table) - 1
        hashed = hash(event_id)
        pos = hashed & mask
        while (slot := table[pos]) != self._EMPTY:
            if slot >= 0 and slot_hashes[slot] == hashed and ids[slot] == event_id:
                return slot
            pos = (pos + 1) & mask
        return -1

    def find_many(self, event_ids: Iterable[str], hashes: Iterable[int]) -> list[int]:
        """The slot of each of ``event_ids`` (-1 when absent), given their ``hash()``."""
        table, ids, slot_hashes = self._table, self.ids, self._hashes
        mask = len(table) - 1
        slots = []
        for event_id, hashed in zip(event_ids, hashes):
            pos = hashed & mask
            while (slot := table[pos]) != -1:  # _EMPTY
                if slot >= 0 and slot_hashes[slot] == hashed and ids[slot] == event_id:
                    break
                pos = (pos + 1) & mask
            slots.append(slot)
        return slots

    def add(self, event_id: str) -> int:
        """Give an absent ``event_id`` a slot."""
        if 2 * (self._live + self._deleted + 1) > len(self._table):
            self._rebuild(3 * (self._live + 1))
        hashed = hash(event_id)
        if self._free:
            slot = self._free.pop()
            self.ids[slot] = event_id
            self._hashes[slot] = hashed
        else:
            slot = len(self.ids)
            self.ids.append(event_id)
            self._hashes.append(hashed)
        table = self._table
        mask = len(table) - 1
        pos = hashed & mask
        while table[pos] >= 0:
            pos = (pos + 1) & mask
        if table[pos] == self._DELETED:
            self._deleted -= 1
        table[pos] = slot
        self._live += 1
        return slot

    def add_many(self, event_ids: list[str], hashes: list[int]) -> list[int]:
        """Give distinct absent ``event_ids`` slots (freed slots first, last freed first), given their ``hash()``."""
        n = len(event_ids)
        if 2 * (self._live + self._deleted + n) > len(self._table):
            self._rebuild(3 * (self._live + n))
        ids, slot_hashes, free = self.ids, self._hashes, self._free
        reused = free[len(free) - min(n, len(free)):][::-1]  # pop() order
        if reused:
            del free[-len(reused):]
            for slot, event_id, hashed in zip(reused, event_ids, hashes):
                ids[slot] = event_id
                slot_hashes[slot] = hashed
        slots = reused + list(range(len(ids), len(ids) + n - len(reused)))
        ids.extend(event_ids[len(reused):])
        slot_hashes.extend(hashes[len(reused):])
        table = self._table
        mask = len(table) - 1
        reused_tombstones = 0
        for slot, hashed in zip(slots, hashes):
            pos = hashed & mask
            while (entry := table[pos]) >= 0:
                pos = (pos + 1) & mask
            if entry == -2:  # _DELETED
                reused_tombstones += 1
            table[pos] = slot
        self._deleted -= reused_tombstones
        self._live += n
        return slots

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
        live = np.ones(len(self.ids), bool)
        live[self._free] = False
        slots = np.flatnonzero(live)
        pos = np.frombuffer(self._hashes, np.int64)[slots] & (len(table) - 1)  # a copy: _hashes stays resizable
        while len(slots):  # vectorized linear probing; of several slots aiming at one entry, the last stays
            free = table[pos] == self._EMPTY
            table[pos[free]] = slots[free]
            placed = free & (table[pos] == slots)
            slots, pos = slots[~placed], (pos[~placed] + 1) & (len(table) - 1)
        self._table = array("i", table.tobytes())
        self._deleted = 0


class _DeltaRows:
    """Rows of one update's deltas; event fields are gathered from the slots at the end.

    Rows come one by one (the lists) or in columns from the bulk path; ``segments`` keeps them
    in the order they came, so that an event's retraction stays after its pairing.
    """

    __slots__ = ("slot", "sign", "genuine", "weight", "revision", "mate_rank", "segments")

    def __init__(self) -> None:
        self.slot: list[int] = []
        self.sign: list[int] = []
        self.genuine: list[bool] = []
        self.weight: list[float] = []
        self.revision: list[int] = []
        self.mate_rank: list[int] = []  # of the outcome the row adds or takes back
        self.segments: list[tuple[np.ndarray, ...]] = []  # (slot, sign, genuine, weight, revision, mate_rank)

    def add(self, slot: int, sign: int, genuine: bool, inclusion_prob: float, revision: int, mate_rank: int) -> None:
        self.slot.append(slot)
        self.sign.append(sign)
        self.genuine.append(genuine)
        self.weight.append(1.0 / inclusion_prob)
        self.revision.append(revision)
        self.mate_rank.append(mate_rank)

    def add_pairs(self, slots: np.ndarray, genuine: np.ndarray, inclusion_prob: np.ndarray,
                  revision: np.ndarray, mate_rank: np.ndarray) -> None:
        """+1 rows of newly paired slots."""
        self._close_segment()
        self.segments.append((slots.astype(np.intp, copy=False), np.ones(len(slots), np.int8),
                              genuine.astype(bool, copy=False), 1.0 / inclusion_prob,
                              revision.astype(np.int32, copy=False), mate_rank.astype(np.int16, copy=False)))

    def columns(self) -> tuple[np.ndarray, ...]:
        """(slot, sign, genuine, weight, revision, mate_rank) of every row, in order."""
        self._close_segment()
        if len(self.segments) == 1:
            return self.segments[0]
        if not self.segments:
            return (np.zeros(0, np.intp), np.zeros(0, np.int8), np.zeros(0, bool), np.zeros(0, np.float64),
                    np.zeros(0, np.int32), np.zeros(0, np.int16))
        return tuple(np.concatenate(column) for column in zip(*self.segments))

    def _close_segment(self) -> None:
        if self.slot:
            self.segments.append((np.array(self.slot, dtype=np.intp), np.array(self.sign, dtype=np.int8),
                                  np.array(self.genuine, dtype=bool), np.array(self.weight, dtype=np.float64),
                                  np.array(self.revision, dtype=np.int32), np.array(self.mate_rank, dtype=np.int16)))
            self.slot, self.sign, self.genuine, self.weight, self.revision, self.mate_rank = [], [], [], [], [], []


_EVENT_FIELDS = operator.attrgetter("event_id", "occurred_at", "deployment", "algorithm", "mode", "score", "threshold",
                                    "decision", "subject", "reference", "context", "cluster_id", "candidates",
                                    "list_length", "gallery_size", "use_id")
_OUTCOME_FIELDS = operator.attrgetter("event_id", "verified_at", "truth", "reviewer", "revision", "inclusion_prob",
                                      "mate_rank")
_timestamp = operator.methodcaller("timestamp")
_is_outcome = VerifiedOutcome.__instancecheck__
_NOTHING = np.zeros(0, np.intp)
_MIN_BULK = 8  # shorter runs go record by record: there numpy's cost per call outweighs its speed
_CACHE_LIMIT = 100_000  # entries of the profile and reviewer caches before they start afresh


def _distinct_spans(event_ids: list[str]) -> list[tuple[int, int]]:
    """Cut ``event_ids`` into consecutive spans without a repeated id (greedily, longest first)."""
    if len(set(event_ids)) == len(event_ids):
        return [(0, len(event_ids))]
    spans, seen, start = [], set(), 0
    for i, event_id in enumerate(event_ids):
        if event_id in seen:
            spans.append((start, i))
            seen, start = set(), i
        seen.add(event_id)
    spans.append((start, len(event_ids)))
    return spans


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
    >>> from fairwatch.contracts.records import MatchEvent, VerifiedOutcome
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
        self._profile_hashes: list[int] = []  # of each profile's repr, a field of event fingerprints
        self._profile_hash_array = np.zeros(0, np.uint64)  # the same, for the bulk path
        # (deployment, algorithm, mode, subject items in the record's key order) -> profile id,
        # to skip the sort; the same subject in another key order is another entry, same id
        self._profile_of_raw_key: dict[tuple, int] = {}
        self._reviewer_hashes: dict[str, int] = {}
        # what changed since the last take_changes(): slots whose state was written, ids let go
        self._forgotten: dict[str, None] = {}
        self._allocate_columns(max(capacity, 1))

    def _allocate_columns(self, capacity: int) -> None:
        old = getattr(self, "_flags", None)
        columns = {
            "_flags": np.uint8, "_last_seen": np.int64, "_event_fp": np.uint32,
            "_occurred_us": np.int64, "_profile": np.int32, "_outcome_fp": np.uint32,
            "_revision": np.int32, "_inclusion_prob": np.float64, "_above": np.int16, "_mate_rank": np.int16,
            "_dirty": bool,
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
        """Apply records in arrival order; return the labeled deltas and the rejected records.

        The result is the one of applying them one by one (:meth:`_update_one_by_one`), up to the
        order of rows of different event ids. Runs of consecutive records of one kind go through
        a columnar path: within a run of distinct event ids the records commute.
        """
        records = records if isinstance(records, list) else list(records)
        rows = _DeltaRows()
        rejected: list[Rejected] = []
        is_outcome = list(map(_is_outcome, records))
        if not any(is_outcome) or all(is_outcome):
            bounds = [0, len(records)]
        else:
            kinds = np.array(is_outcome, bool)
            bounds = [0, *(np.flatnonzero(kinds[1:] != kinds[:-1]) + 1).tolist(), len(records)]
        for start, stop in zip(bounds, bounds[1:]):
            run = records[start:stop]
            if len(run) < _MIN_BULK:
                self._apply_one_by_one(run, rows, rejected)
            elif is_outcome[start]:
                self._add_outcomes(run, rows, rejected)
            else:
                self._add_events(run, rows, rejected)
        return JoinOutput(self._deltas(rows), rejected)

    def _update_one_by_one(self, records: Iterable[MatchEvent | VerifiedOutcome]) -> JoinOutput:
        """:meth:`update` record by record: the reference semantics, which the tests compare it to."""
        rows = _DeltaRows()
        rejected: list[Rejected] = []
        self._apply_one_by_one(records, rows, rejected)
        return JoinOutput(self._deltas(rows), rejected)

    def _apply_one_by_one(self, records: Iterable[MatchEvent | VerifiedOutcome], rows: _DeltaRows,
                          rejected: list[Rejected]) -> None:
        for record in records:
            if isinstance(record, VerifiedOutcome):
                rejection = self._add_outcome(record, rows)
            else:
                rejection = self._add_event(record, rows)
            if rejection is not None:
                rejected.append(Rejected(record, rejection))

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
        self._dirty[slots] = False
        self._forgotten.update(dict.fromkeys(event_ids))
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
                              self._profiles[self._profile[slot]], bool(flags & _MATCH), bool(flags & _LISTED),
                              int(self._above[slot]))
        if flags & _HAS_OUTCOME:
            outcome = HeldOutcome(int(self._outcome_fp[slot]), int(self._revision[slot]),
                                  bool(flags & _GENUINE), float(self._inclusion_prob[slot]), int(self._mate_rank[slot]))
        return EventState(int(self._last_seen[slot]), event, outcome)

    def deployments_of(self, event_ids: list[str]) -> list[str | None]:
        """The deployment of each id's held event (None when the join holds no event of that id):
        what a signed outcome is checked against (fairwatch.stream.processor)."""
        if not event_ids:
            return []
        slots = np.array(self._index.find_many(event_ids, map(hash, event_ids)), np.intp)
        held = slots >= 0
        held[held] = (self._flags[slots[held]] & _HAS_EVENT) != 0
        profiles = self._profiles
        names = [None] * len(event_ids)
        for k, profile in zip(np.flatnonzero(held).tolist(), self._profile[slots[held]].tolist()):
            names[k] = profiles[profile].deployment
        return names

    def restore(self, event_id: str, state: EventState | None) -> None:
        """Make the join hold ``state`` for ``event_id`` (None forgets it), as after recovery.

        Gauges follow; running totals and the counts downstream are not touched (no deltas).
        """
        slot = self._index.find(event_id)
        if slot >= 0:
            self._count_gauges(int(self._flags[slot]), -1)
            self._flags[slot] = 0
            self._dirty[slot] = False
            self._index.remove(event_id)
            self._forgotten[event_id] = None
        if state is None or (state.event is None and state.outcome is None):
            return
        slot = self._allocate(event_id)
        self._last_seen[slot] = state.last_seen
        if state.event is not None:
            ev = state.event
            self._hold_event(slot, ev.fingerprint, ev.occurred_at_us, self._intern(tuple(ev.profile)), ev.match,
                             ev.listed, ev.above)
        if state.outcome is not None:
            oc = state.outcome
            self._hold_outcome(slot, oc.fingerprint, oc.revision, oc.genuine, oc.inclusion_prob, oc.mate_rank)
        self._count_gauges(int(self._flags[slot]), +1)

    def latest_activity(self) -> int | None:
        """The latest last-activity time (epoch seconds) of any held record: the join's stream time."""
        n = len(self._index.ids)
        held = self._flags[:n] != 0
        return int(self._last_seen[:n][held].max()) if held.any() else None

    def labeled(self, from_bucket: int | None = None) -> LabeledDeltas:
        """The labeled set as the join holds it: one +1 delta per held (event, outcome) pair, its
        latest revision, in buckets starting at ``from_bucket`` or later (all when None). Summed,
        these are the counts of every pair that has not expired."""
        n = len(self._index.ids)
        paired = (self._flags[:n] & (_HAS_EVENT | _HAS_OUTCOME)) == (_HAS_EVENT | _HAS_OUTCOME)
        slots = np.flatnonzero(paired)
        if from_bucket is not None:
            bucket = self._occurred_us[slots] // (1_000_000 * self.bucket_seconds) * self.bucket_seconds
            slots = slots[bucket >= from_bucket]
        rows = _DeltaRows()
        rows.add_pairs(slots, (self._flags[slots] & _GENUINE) != 0, self._inclusion_prob[slots], self._revision[slots],
                       self._mate_rank[slots])
        return self._deltas(rows)

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
            return self.export_slots(self.held_slots())
        ids = list(dict.fromkeys(event_ids))
        return self._export(ids, np.array(self._index.find_many(ids, map(hash, ids)), np.int64))

    def held_slots(self) -> np.ndarray:
        """The slot of every event id the join holds, in slot order."""
        return np.flatnonzero(self._flags[: len(self._index.ids)] != 0)

    def take_changes(self) -> tuple[np.ndarray, list[str]]:
        """What changed since the last call: (slots whose state was written and are still held,
        ids let go: expired or replaced), for :meth:`export_slots`. Marks nothing changed."""
        n = len(self._index.ids)
        slots = np.flatnonzero(self._dirty[:n] & (self._flags[:n] != 0))
        self._dirty[:n] = False
        forgotten, self._forgotten = list(self._forgotten), {}
        return slots, forgotten

    def slot_id_lengths(self, slots: np.ndarray) -> np.ndarray:
        ids = self._index.ids
        return np.fromiter((len(ids[slot]) for slot in slots.tolist()), np.int64, len(slots))

    def export_slots(self, slots: np.ndarray, forgotten: Sequence[str] = ()) -> bytes:
        """A blob of :meth:`export_states`: "forget" for each of ``forgotten``, then the states of
        the held ``slots`` (an id both let go and held again ends up held)."""
        ids = list(forgotten) + [self._index.ids[slot] for slot in slots.tolist()]
        return self._export(ids, np.concatenate([np.full(len(forgotten), -1, np.int64), slots.astype(np.int64)]))

    def _export(self, ids: list[str], slots: np.ndarray) -> bytes:
        """Blob of ``ids`` with their ``slots`` (-1: not held, exported as "forget")."""
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
        return blobs.pack(_STATE_MAGIC, parts)

    def import_states(self, blob: bytes) -> int:
        """Apply a blob of :meth:`export_states`: hold each id's state as exported (or forget it).

        Gauges follow; running totals and the counts downstream are not touched (no deltas).
        Returns the number of ids in the blob.
        """
        if blob.startswith(_STATE_MAGIC_V1):
            parts = blobs.unpack(blob, _STATE_MAGIC_V1, 2 + len(_STATE_COLUMNS_V1), "join state")
            width = len(parts[2])  # one byte of flags per id: the search columns are all 0 then
            parts += [bytes(2 * width), bytes(2 * width)]
        else:
            parts = blobs.unpack(blob, _STATE_MAGIC, 2 + len(_STATE_COLUMNS), "join state")
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
                self._dirty[slot] = False
                remove(event_id)
                self._forgotten[event_id] = None
            slots[i] = self._allocate(event_id) if flags[i] else -1
        keep = slots >= 0
        target = slots[keep]
        for name, _ in _STATE_COLUMNS:
            values = columns[name][keep]
            if name == "_profile":
                mapping = np.array(local + [0], np.int32)  # -1 (no event) maps to the last entry
                values = mapping[values]
            getattr(self, name)[target] = values
        self._dirty[target] = True
        for value in flags[keep].tolist():
            count(int(value), +1)
        return n

    # ---- records, one by one: the reference semantics ------------------------------------

    def _add_event(self, ev: MatchEvent, rows: _DeltaRows, prepared: tuple | None = None) -> Rejection | None:
        """``prepared``: (occurred_us, match, profile, fingerprint, listed, above) when the bulk path
        computed them."""
        if prepared is None:
            occurred_us = (ev.occurred_at - _EPOCH) // _MICROSECOND  # exact, unlike timestamp()
            match = ev.decision == "match"
            profile = self._intern((ev.deployment, ev.algorithm, ev.mode, tuple(sorted(ev.subject.items()))))
            fingerprint = self._event_fingerprint(ev, occurred_us, match, profile)
            listed = ev.candidates is not None
            above = ev.candidates_above if listed else 0
        else:
            occurred_us, match, profile, fingerprint, listed, above = prepared
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
            rows.add(slot, 1, bool(flags & _GENUINE), float(self._inclusion_prob[slot]), int(self._revision[slot]),
                     int(self._mate_rank[slot]))
        self._hold_event(slot, fingerprint, occurred_us, profile, match, listed, above)
        return None

    def _add_outcome(self, oc: VerifiedOutcome, rows: _DeltaRows, prepared: tuple | None = None) -> Rejection | None:
        """``prepared``: (verified_at timestamp, genuine, fingerprint) when the bulk path computed them."""
        if prepared is None:
            ts = oc.verified_at.timestamp()
            genuine = oc.truth == "genuine"
            fingerprint = self._outcome_fingerprint(oc, ts, genuine)
        else:
            ts, genuine, fingerprint = prepared
        mate_rank = oc.mate_rank or 0
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
                rows.add(slot, 1, genuine, oc.inclusion_prob, oc.revision, mate_rank)
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
                    rows.add(slot, -1, bool(flags & _GENUINE), float(self._inclusion_prob[slot]), int(held),
                             int(self._mate_rank[slot]))
                    rows.add(slot, 1, genuine, oc.inclusion_prob, oc.revision, mate_rank)
            self._touch(slot, int(ts // 1))
        self._hold_outcome(slot, fingerprint, oc.revision, genuine, oc.inclusion_prob, mate_rank)
        return None

    def _event_fingerprint(self, ev: MatchEvent, occurred_us: int, match: bool, profile: int) -> int:
        """Of the event's whole content; equal to the bulk path's (:meth:`_prepare_events`)."""
        score_bits, threshold_bits = _float_pair_bits(_pack_float_pair(ev.score, ev.threshold))
        fields = (occurred_us & _M64, score_bits, threshold_bits, int(match), self._profile_hashes[profile],
                  _extras_hash(ev.reference, ev.context, ev.cluster_id, _search_of(ev), ev.use_id))
        return _fingerprint(fields, _EVENT_SALTS)

    def _outcome_fingerprint(self, oc: VerifiedOutcome, ts: float, genuine: bool) -> int:
        """Of the outcome's content but its revision; equal to the bulk path's (:meth:`_add_outcomes`)."""
        ts_bits, prob_bits = _float_pair_bits(_pack_float_pair(ts, oc.inclusion_prob))
        who = self._reviewer_hash(oc.reviewer) ^ _mate_field(oc.mate_rank)
        return _fingerprint((ts_bits, prob_bits, int(genuine), who), _OUTCOME_SALTS)

    def _reviewer_hash(self, reviewer: str) -> int:
        known = self._reviewer_hashes.get(reviewer)
        if known is None:
            if len(self._reviewer_hashes) >= _CACHE_LIMIT:
                self._reviewer_hashes.clear()
            known = self._reviewer_hashes[reviewer] = _text_hash(reviewer.encode())
        return known

    # ---- records, in columns -------------------------------------------------------------

    def _add_events(self, events: list[MatchEvent], rows: _DeltaRows, rejected: list[Rejected]) -> None:
        """Apply a run of events as :meth:`_add_event` one by one would."""
        (ids, occurred_at, deployments, algorithms, modes, scores, thresholds, decisions, subjects, references,
         contexts, cluster_ids, candidates, list_lengths, gallery_sizes, use_ids) = zip(*map(_EVENT_FIELDS, events))
        ids = list(ids)
        n = len(ids)
        occurred_us = np.fromiter(map(operator.floordiv, map(operator.sub, occurred_at, repeat(_EPOCH)),
                                      repeat(_MICROSECOND)), np.int64, n)
        match = np.fromiter(map(operator.eq, decisions, repeat("match")), bool, n)
        profile = np.array(self._intern_many(deployments, algorithms, modes, subjects), np.int32)
        fields = np.empty((n, len(_EVENT_SALTS)), np.uint64)
        fields[:, 0] = occurred_us.view(np.uint64)
        fields[:, 1] = np.array(scores, np.float64).view(np.uint64)
        fields[:, 2] = np.array(thresholds, np.float64).view(np.uint64)
        fields[:, 3] = match
        fields[:, 4] = self._profile_hash_array[profile]
        plain = candidates.count(None) == n and list_lengths.count(None) == n and gallery_sizes.count(None) == n
        if plain:
            searches = repeat(None)
            listed = np.zeros(n, bool)
            above = np.zeros(n, np.int16)
        else:
            searches = map(_search_of, events)
            listed = np.fromiter((c is not None for c in candidates), bool, n)
            above = np.fromiter((ev.candidates_above if ev.candidates is not None else 0 for ev in events), np.int16, n)
        if (plain and references.count(None) == n and contexts.count(None) == n and cluster_ids.count(None) == n
                and use_ids.count(None) == n):
            fields[:, 5] = 0
        else:
            fields[:, 5] = np.fromiter(map(_extras_hash, references, contexts, cluster_ids, searches, use_ids),
                                       np.uint64, n)
        fingerprint = _fingerprints(fields, _EVENT_SALTS_ARRAY)
        hashes = list(map(hash, ids))
        self._apply_in_spans(
            ids, events, (occurred_us, match, profile, fingerprint, listed, above), self._add_event, rows, rejected,
            lambda span: self._add_distinct_events(ids[span], hashes[span], occurred_us[span], match[span],
                                                   profile[span], fingerprint[span], listed[span], above[span], rows))

    def _add_distinct_events(self, ids: list[str], hashes: list[int], occurred_us: np.ndarray, match: np.ndarray,
                             profile: np.ndarray, fingerprint: np.ndarray, listed: np.ndarray, above: np.ndarray,
                             rows: _DeltaRows) -> np.ndarray:
        """Apply the events of distinct ids that start a slot or pair with an orphan; return the
        positions of the others (the event id already holds an event), left untouched."""
        slots, flags, new, pairing = self._place_distinct(ids, hashes, occurred_us // 1_000_000, _HAS_OUTCOME)
        c = self.counters
        added, paired = int(np.count_nonzero(new)), int(np.count_nonzero(pairing))
        c.pending += added
        if paired:
            pairs = slots[pairing]
            rows.add_pairs(pairs, (flags[pairing] & _GENUINE) != 0, self._inclusion_prob[pairs], self._revision[pairs],
                           self._mate_rank[pairs])
            c.orphans -= paired
            c.paired += paired
        if added + paired < len(ids):
            hold = new | pairing
            slots, flags, occurred_us, match = slots[hold], flags[hold], occurred_us[hold], match[hold]
            profile, fingerprint, listed, above = profile[hold], fingerprint[hold], listed[hold], above[hold]
        self._dirty[slots] = True
        self._event_fp[slots] = fingerprint
        self._occurred_us[slots] = occurred_us
        self._profile[slots] = profile
        self._above[slots] = above
        self._flags[slots] = (flags | _HAS_EVENT | match.view(np.uint8) * np.uint8(_MATCH)
                              | listed.view(np.uint8) * np.uint8(_LISTED))
        return np.flatnonzero(~(new | pairing)) if added + paired < len(ids) else _NOTHING

    def _add_outcomes(self, outcomes: list[VerifiedOutcome], rows: _DeltaRows, rejected: list[Rejected]) -> None:
        """Apply a run of outcomes as :meth:`_add_outcome` one by one would."""
        ids, verified_at, truths, reviewers, revisions, probs, mate_ranks = zip(*map(_OUTCOME_FIELDS, outcomes))
        ids = list(ids)
        n = len(ids)
        ts = np.fromiter(map(_timestamp, verified_at), np.float64, n)
        genuine = np.fromiter(map(operator.eq, truths, repeat("genuine")), bool, n)
        inclusion_prob = np.array(probs, np.float64)
        revision = np.array(revisions, np.int32)
        fields = np.empty((n, len(_OUTCOME_SALTS)), np.uint64)
        fields[:, 0] = ts.view(np.uint64)
        fields[:, 1] = inclusion_prob.view(np.uint64)
        fields[:, 2] = genuine
        reviewer_hashes = list(map(self._reviewer_hashes.get, reviewers))
        if None in reviewer_hashes:
            reviewer_hashes = list(map(self._reviewer_hash, reviewers))
        if mate_ranks.count(None) == n:
            mate_rank = np.zeros(n, np.int16)
        else:
            mate_rank = np.array([rank or 0 for rank in mate_ranks], np.int16)
            reviewer_hashes = [h ^ _mate_field(rank) for h, rank in zip(reviewer_hashes, mate_ranks)]
        fields[:, 3] = reviewer_hashes
        fingerprint = _fingerprints(fields, _OUTCOME_SALTS_ARRAY)
        hashes = list(map(hash, ids))
        self._apply_in_spans(
            ids, outcomes, (ts, genuine, fingerprint), self._add_outcome, rows, rejected,
            lambda span: self._add_distinct_outcomes(ids[span], hashes[span], ts[span], genuine[span],
                                                     inclusion_prob[span], revision[span], fingerprint[span],
                                                     mate_rank[span], rows))

    def _add_distinct_outcomes(self, ids: list[str], hashes: list[int], ts: np.ndarray, genuine: np.ndarray,
                               inclusion_prob: np.ndarray, revision: np.ndarray, fingerprint: np.ndarray,
                               mate_rank: np.ndarray, rows: _DeltaRows) -> np.ndarray:
        """Apply the outcomes of distinct ids that start a slot or pair with a pending event; return
        the positions of the others (the event id already holds an outcome), left untouched."""
        seen = np.floor(ts).astype(np.int64)  # int(ts // 1) of each
        slots, flags, new, pairing = self._place_distinct(ids, hashes, seen, _HAS_EVENT)
        c = self.counters
        added, paired = int(np.count_nonzero(new)), int(np.count_nonzero(pairing))
        c.orphans += added
        if paired:
            rows.add_pairs(slots[pairing], genuine[pairing], inclusion_prob[pairing], revision[pairing],
                           mate_rank[pairing])
            c.pending -= paired
            c.paired += paired
        if added + paired < len(ids):
            hold = new | pairing
            slots, flags, genuine, inclusion_prob = slots[hold], flags[hold], genuine[hold], inclusion_prob[hold]
            revision, fingerprint, mate_rank = revision[hold], fingerprint[hold], mate_rank[hold]
        self._dirty[slots] = True
        self._outcome_fp[slots] = fingerprint
        self._revision[slots] = revision
        self._inclusion_prob[slots] = inclusion_prob
        self._mate_rank[slots] = mate_rank
        self._flags[slots] = (flags & (0xFF ^ _GENUINE)) | _HAS_OUTCOME | genuine.view(np.uint8) * np.uint8(_GENUINE)
        return np.flatnonzero(~(new | pairing)) if added + paired < len(ids) else _NOTHING

    def _apply_in_spans(self, ids: list[str], records: list, prepared: tuple[np.ndarray, ...], add_one,
                        rows: _DeltaRows, rejected: list[Rejected], add_distinct) -> None:
        """A run of one kind: spans of distinct ids through ``add_distinct`` (which returns the
        positions it left: redeliveries, revisions, conflicts), the rest and short spans through
        ``add_one`` (:meth:`_add_event` / :meth:`_add_outcome`) with their ``prepared`` columns."""
        for start, stop in _distinct_spans(ids):
            span = slice(start, stop)
            if stop - start < _MIN_BULK:
                self._apply_prepared(records[span], [column[span] for column in prepared], add_one, rows, rejected)
            else:
                rest = add_distinct(span)
                if len(rest):
                    rest += start
                    self._apply_prepared([records[i] for i in rest.tolist()], [column[rest] for column in prepared],
                                         add_one, rows, rejected)

    @staticmethod
    def _apply_prepared(records: Sequence, prepared: list[np.ndarray], add_one, rows: _DeltaRows,
                        rejected: list[Rejected]) -> None:
        for record, values in zip(records, zip(*(column.tolist() for column in prepared))):
            rejection = add_one(record, rows, values)
            if rejection is not None:
                rejected.append(Rejected(record, rejection))

    def _place_distinct(self, ids: list[str], hashes: list[int], seen: np.ndarray, waiting: int):
        """Slots of records of distinct ids that bring the half the flag ``waiting`` lacks: a new
        slot for an absent id (its ``seen`` as last activity), the held slot when it pairs with
        ``waiting`` (activity extended). Returns (slots, their flags before, new, pairing)."""
        slots = np.array(self._index.find_many(ids, hashes), np.intp)
        new = slots < 0
        flags = self._flags[slots]
        flags[new] = 0
        pairing = (flags & (_HAS_EVENT | _HAS_OUTCOME)) == waiting
        added = int(np.count_nonzero(new))
        if added:
            fresh = self._allocate_many(ids, hashes, new, added)
            self._last_seen[fresh] = seen[new]
            slots[new] = fresh
        if pairing.any():
            pairs = slots[pairing]
            self._last_seen[pairs] = np.maximum(self._last_seen[pairs], seen[pairing])
        return slots, flags, new, pairing

    # ---- slots ----------------------------------------------------------------------------

    def _intern(self, key: tuple) -> int:
        """The id of profile ``key`` (a plain tuple: its repr goes into event fingerprints), new on first sight."""
        known = self._profile_id.get(key)
        if known is not None:
            return known
        profile = Profile(*key)
        pid = self._profile_id[profile] = len(self._profiles)
        self._profiles.append(profile)
        self._profile_hashes.append(_text_hash(repr(key).encode()))
        if pid >= len(self._profile_hash_array):
            self._profile_hash_array = np.resize(self._profile_hash_array, 2 * pid + 8)
        self._profile_hash_array[pid] = self._profile_hashes[pid]
        return pid

    def _intern_many(self, deployments: Sequence[str], algorithms: Sequence[str], modes: Sequence[str],
                     subjects: Sequence[Mapping[str, str]]) -> list[int]:
        """The profile id of each event, as :meth:`_intern` one by one (new ids in order of first sight)."""
        try:
            items = list(map(tuple, map(dict.items, subjects)))
        except TypeError:  # a Mapping that is not a dict
            items = [tuple(subject.items()) for subject in subjects]
        raw_keys = list(zip(deployments, algorithms, modes, items))
        profiles = list(map(self._profile_of_raw_key.get, raw_keys))
        if None in profiles:
            if len(self._profile_of_raw_key) >= _CACHE_LIMIT:
                self._profile_of_raw_key.clear()
            for i, raw_key in enumerate(raw_keys):
                if profiles[i] is None:
                    deployment, algorithm, mode, subject = raw_key
                    profiles[i] = self._profile_of_raw_key[raw_key] = self._intern(
                        (deployment, algorithm, mode, tuple(sorted(subject))))
        return profiles

    def _allocate_many(self, event_ids: list[str], hashes: list[int], chosen: np.ndarray, count: int) -> np.ndarray:
        """Slots for the ``chosen`` (a mask, ``count`` set) of ``event_ids``, in order."""
        if count < len(event_ids):
            where = np.flatnonzero(chosen).tolist()
            event_ids, hashes = [event_ids[i] for i in where], [hashes[i] for i in where]
        slots = self._index.add_many(event_ids, hashes)
        top = max(slots)
        if top >= len(self._flags):
            self._allocate_columns(top + top // 2 + 1)
        return np.array(slots, np.intp)

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

    def _hold_event(self, slot: int, fingerprint: int, occurred_us: int, profile: int, match: bool,
                    listed: bool = False, above: int = 0) -> None:
        self._dirty[slot] = True
        self._event_fp[slot] = fingerprint
        self._occurred_us[slot] = occurred_us
        self._profile[slot] = profile
        self._above[slot] = above
        self._flags[slot] |= _HAS_EVENT | (_MATCH if match else 0) | (_LISTED if listed else 0)

    def _hold_outcome(self, slot: int, fingerprint: int, revision: int, genuine: bool, inclusion_prob: float,
                      mate_rank: int = 0) -> None:
        self._dirty[slot] = True
        self._outcome_fp[slot] = fingerprint
        self._revision[slot] = revision
        self._inclusion_prob[slot] = inclusion_prob
        self._mate_rank[slot] = mate_rank
        self._flags[slot] = (int(self._flags[slot]) & ~_GENUINE) | _HAS_OUTCOME | (_GENUINE if genuine else 0)

    def _deltas(self, rows: _DeltaRows) -> LabeledDeltas:
        slots, sign, genuine, weight, revision, mate_rank = rows.columns()
        occurred_us = self._occurred_us[slots]
        flags = self._flags[slots]
        match = (flags & _MATCH) != 0
        by_rank = genuine & ((flags & _LISTED) != 0)
        if by_rank.any():  # a mated search with its list: identified when its mate is among those above threshold
            match[by_rank] = (mate_rank[by_rank] >= 1) & (mate_rank[by_rank] <= self._above[slots][by_rank])
        return LabeledDeltas(
            profiles=self._profiles,
            event_id=list(map(self._index.ids.__getitem__, slots.tolist())),
            profile=self._profile[slots],
            occurred_at_us=occurred_us,
            bucket=occurred_us // (1_000_000 * self.bucket_seconds) * self.bucket_seconds,
            match=match,
            genuine=genuine,
            weight=weight,
            sign=sign,
            revision=revision,
        )
