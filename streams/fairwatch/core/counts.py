"""Per-group error counts in event-time buckets, fed by the join's labeled deltas.

Each labeled comparison counts in several groups of its deployment x algorithm x mode: the
overall row (attribute = group = ``"*"``), one row per attribute of its subject, and one per
configured intersection whose attributes the subject all has. Counts are kept per (group,
bucket start) in the shared 12-column layout of :mod:`fairwatch.core.layout`, so any window
is a sum of buckets. Updates are vectorized: each delta is spread to its profile's groups
(a profile's groups are worked out once), cells are found in a numpy hash table, and the sums
are added with one ``np.add.at``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, NamedTuple

import numpy as np

from fairwatch.core import blob_framing as blobs
from fairwatch.core.config import CoreConfig
from fairwatch.core.join import LabeledDeltas, Profile, epoch_seconds
from fairwatch.core.layout import INTERSECTION_SEP, N_COLUMNS, OVERALL, GroupKey

_CELLS_MAGIC = b"FWBC1"
_CELLS_COMPACT = json.JSONEncoder(separators=(",", ":"))

# a cell's index key packs (group id < 2**23, bucket start): starts from year 1 to 9999 fit in 39 bits
_BUCKET_BITS = 40
_BUCKET_OFFSET = 1 << 39


def profile_groups(profile: Profile, intersections: tuple[tuple[str, ...], ...] = ()) -> list[GroupKey]:
    """The groups a comparison of this profile counts in: overall, each attribute, intersections.

    >>> profile_groups(Profile("gate-a", "algo-1", "verification", (("race", "Black"), ("sex", "F"))),
    ...                (("sex", "race"), ("sex", "age")))[-1]
    GroupKey(deployment='gate-a', algorithm='algo-1', mode='verification', attribute='sex&race', group='F&Black')
    """
    where = profile[:3]
    labels = dict(profile.subject)
    keys = [GroupKey(*where, OVERALL, OVERALL)]
    keys += [GroupKey(*where, attribute, label) for attribute, label in profile.subject]
    keys += [
        GroupKey(*where, INTERSECTION_SEP.join(combo), INTERSECTION_SEP.join(labels[a] for a in combo))
        for combo in intersections
        if all(a in labels for a in combo)
    ]
    return keys


class BucketRow(NamedTuple):
    key: GroupKey
    bucket_start: int  # epoch seconds, UTC
    row: np.ndarray  # float64[12], layout of fairwatch.core.layout


@dataclass(frozen=True, slots=True, eq=False)
class CountsFrame:
    """Summed counts of a window: ``rows[i]`` (float64[12]) belongs to ``keys[i]``; keys sorted."""

    keys: list[GroupKey]
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def row(self, key: GroupKey) -> np.ndarray:
        try:
            return self.rows[self.keys.index(key)]
        except ValueError:
            raise KeyError(key) from None


class _CellIndex:
    """Non-negative int64 keys -> cell numbers: open addressing, linear probing, vectorized.

    A ``dict`` costs ~100 bytes and ~300 ns per lookup at a million cells (Python ints, cache
    misses); this table costs at most 32 bytes a key and does a batch of lookups in numpy.
    """

    _EMPTY = -1
    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads structured keys

    def __init__(self, capacity: int = 1024):
        self._allocate(capacity)
        self._size = 0

    def _allocate(self, capacity: int) -> None:
        bits = max(int(capacity - 1).bit_length(), 4)
        self._keys = np.full(1 << bits, self._EMPTY, np.int64)
        self._cells = np.zeros(1 << bits, np.int64)
        self._shift = np.uint64(64 - bits)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * self._GOLDEN) >> self._shift).astype(np.int64)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The cell of each key, -1 where absent."""
        found = np.full(len(keys), -1, np.int64)
        pos = self._home(keys)
        todo = np.arange(len(keys))
        mask = len(self._keys) - 1
        while len(todo):
            at = pos[todo]
            held = self._keys[at]
            hit = held == keys[todo]
            found[todo[hit]] = self._cells[at[hit]]
            todo = todo[~hit & (held != self._EMPTY)]
            pos[todo] = (pos[todo] + 1) & mask
        return found

    def insert(self, keys: np.ndarray, cells: np.ndarray) -> None:
        """Add keys that are distinct and absent."""
        if 2 * (self._size + len(keys)) > len(self._keys):  # keep the load under one half
            used = self._keys != self._EMPTY
            old_keys, old_cells = self._keys[used], self._cells[used]
            self._allocate(4 * (self._size + len(keys)))
            self._place(old_keys, old_cells)
        self._place(keys, cells)
        self._size += len(keys)

    def _place(self, keys: np.ndarray, cells: np.ndarray) -> None:
        pos = self._home(keys)
        todo = np.arange(len(keys))
        mask = len(self._keys) - 1
        while len(todo):
            at = pos[todo]
            free = self._keys[at] == self._EMPTY
            self._keys[at[free]] = keys[todo[free]]  # of several keys aiming at one slot, the last stays
            won = free & (self._keys[at] == keys[todo])
            self._cells[at[won]] = cells[todo[won]]
            todo = todo[~won]
            pos[todo] = (pos[todo] + 1) & mask


class BucketCounts:
    """Weighted error counts per (group, event-time bucket).

    Parameters
    ----------
    config
        Its ``intersections`` (attribute sets counted beside the single attributes) are used;
        the deltas arrive already floored to ``bucket_seconds`` by the join.
    capacity
        Cells allocated up front; the table doubles when full.

    Examples
    --------
    >>> from datetime import datetime, timedelta, timezone
    >>> from fairwatch.core.config import CoreConfig
    >>> from fairwatch.core.layout import IMPOSTOR
    >>> from fairwatch.contracts.records import MatchEvent, VerifiedOutcome
    >>> from fairwatch.core.join import LabelJoin
    >>> config = CoreConfig(intersections=(("sex", "race"),))
    >>> t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    >>> records = [
    ...     MatchEvent("e1", t0, "gate-a", "algo-1", "verification", 0.91, 0.8, "match", {"sex": "F", "race": "Black"}),
    ...     MatchEvent("e2", t0, "gate-a", "algo-1", "verification", 0.42, 0.8, "non_match", {"sex": "M"}),
    ...     VerifiedOutcome("e1", t0, "impostor", "r7", 0),
    ...     VerifiedOutcome("e2", t0, "impostor", "r7", 0, inclusion_prob=0.25),
    ... ]
    >>> counts = BucketCounts(config)
    >>> counts.update(LabelJoin(config).update(records).deltas)
    >>> day = datetime(2026, 1, 2, tzinfo=timezone.utc)  # windows are in bucket starts: 03:04:00 here
    >>> frame = counts.window(day, day + timedelta(days=1))
    >>> for key, row in zip(frame.keys, frame.rows):
    ...     print(key.attribute, key.group, row[IMPOSTOR].tolist())
    * * [2.0, 1.0, 5.0, 1.0, 17.0, 1.0]
    race Black [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    sex F [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    sex M [1.0, 0.0, 4.0, 0.0, 16.0, 0.0]
    sex&race F&Black [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]

    References
    ----------
    .. [1] Horvitz, D. G. and Thompson, D. J. (1952). A generalization of sampling without
           replacement from a finite universe. *JASA* 47(260), 663-685.
    .. [2] Kish, L. (1965). *Survey Sampling*. Wiley (effective sample size (sum w)^2 / sum w^2).
    """

    def __init__(self, config: CoreConfig = CoreConfig(), capacity: int = 1024):
        self.intersections = config.intersections
        self._groups: list[GroupKey] = []
        self._group_id: dict[GroupKey, int] = {}
        self._profile_id: dict[Profile, int] = {}
        self._profile_groups: list[list[int]] = []
        self._group_start = self._group_count = self._group_members = np.zeros(0, np.int64)
        self._index = _CellIndex(2 * capacity)
        self._n_cells = 0
        self._rows = np.zeros((capacity, N_COLUMNS))
        self._cell_group = np.zeros(capacity, np.int64)
        self._cell_bucket = np.zeros(capacity, np.int64)
        self._changed = np.zeros(capacity, bool)

    def __len__(self) -> int:
        """Number of (group, bucket) cells."""
        return self._n_cells

    def update(self, deltas: LabeledDeltas) -> None:
        """Add the deltas' signed contributions to every group of each delta's event."""
        if not len(deltas):
            return
        values = self._population_values(deltas)
        profile = self._local_profiles(deltas)
        # one row per (delta, group of its profile)
        fan_out = self._group_count[profile]
        source = np.repeat(np.arange(len(deltas)), fan_out)
        ends = np.cumsum(fan_out)
        member = np.arange(ends[-1]) - np.repeat(ends - fan_out - self._group_start[profile], fan_out)
        cells = self._cells(self._group_members[member], deltas.bucket[source])
        columns = (cells * N_COLUMNS + deltas.genuine[source] * 6)[:, None] + np.arange(6)
        np.add.at(self._rows.reshape(-1), columns.reshape(-1), values[source].reshape(-1))
        self._changed[cells] = True

    def window(
        self,
        start: datetime | float,
        end: datetime | float,
        deployment: str | None = None,
        algorithm: str | None = None,
    ) -> CountsFrame:
        """Sum the buckets with ``start <= bucket start < end``, per group (optionally filtered)."""
        n = self._n_cells
        bucket = self._cell_bucket[:n]
        keep = (bucket >= epoch_seconds(start)) & (bucket < epoch_seconds(end))
        if deployment is not None or algorithm is not None:
            wanted = np.array([
                (deployment is None or k.deployment == deployment) and (algorithm is None or k.algorithm == algorithm)
                for k in self._groups
            ], dtype=bool)
            keep &= wanted[self._cell_group[:n]]
        cells = np.flatnonzero(keep)
        groups, inverse = np.unique(self._cell_group[cells], return_inverse=True)
        rows = np.zeros((len(groups), N_COLUMNS))
        np.add.at(rows, inverse, self._rows[cells])
        keys = [self._groups[g] for g in groups.tolist()]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        return CountsFrame([keys[i] for i in order], rows[order])

    def rows(self, start: datetime | float | None = None, end: datetime | float | None = None) -> Iterator[BucketRow]:
        """Every cell whose bucket start is in [start, end) (unbounded where None)."""
        bucket = self._cell_bucket[: self._n_cells]
        keep = np.ones(len(bucket), bool)
        if start is not None:
            keep &= bucket >= epoch_seconds(start)
        if end is not None:
            keep &= bucket < epoch_seconds(end)
        return self._bucket_rows(np.flatnonzero(keep))

    def drain_changed(self) -> list[BucketRow]:
        """The cells updated since the last call, with their current totals (for an upserting sink)."""
        return list(self._bucket_rows(self.take_changed()))

    def take_changed(self) -> np.ndarray:
        """The cells updated since the last call (cell numbers, for :meth:`export_cells`)."""
        cells = np.flatnonzero(self._changed[: self._n_cells])
        self._changed[cells] = False
        return cells

    def cells_from(self, floor: int) -> np.ndarray:
        """Every cell whose bucket starts at ``floor`` or later."""
        return np.flatnonzero(self._cell_bucket[: self._n_cells] >= floor)

    def newest_bucket(self) -> int | None:
        return int(self._cell_bucket[: self._n_cells].max()) if self._n_cells else None

    def export_cells(self, cells: np.ndarray) -> bytes:
        """The cells' keys and current totals as one blob (see :func:`decode_cells`)."""
        groups, local = np.unique(self._cell_group[cells], return_inverse=True)
        header = _CELLS_COMPACT.encode({"n": len(cells), "groups": [list(self._groups[g]) for g in groups.tolist()]})
        parts = [header.encode(), local.astype(np.int32).tobytes(), self._cell_bucket[cells].tobytes(),
                 np.ascontiguousarray(self._rows[cells]).tobytes()]
        return blobs.pack(_CELLS_MAGIC, parts)

    def evict_before(self, floor: int) -> int:
        """Drop the cells of buckets starting before ``floor`` (a table rebuilt without them);
        returns how many went."""
        n = self._n_cells
        keep = np.flatnonzero(self._cell_bucket[:n] >= floor)
        if len(keep) == n:
            return 0
        capacity = max(1024, 2 * len(keep))
        kept = {name: getattr(self, name)[keep] for name in ("_rows", "_cell_group", "_cell_bucket", "_changed")}
        self._n_cells = 0
        self._rows = np.zeros((capacity, N_COLUMNS))
        self._cell_group, self._cell_bucket = np.zeros(capacity, np.int64), np.zeros(capacity, np.int64)
        self._changed = np.zeros(capacity, bool)
        self._index = _CellIndex(2 * capacity)
        cells = self._cells(kept["_cell_group"], kept["_cell_bucket"])
        self._rows[cells], self._changed[cells] = kept["_rows"], kept["_changed"]
        return n - len(keep)

    def _bucket_rows(self, cells: np.ndarray) -> Iterator[BucketRow]:
        groups = self._cell_group[cells].tolist()
        buckets = self._cell_bucket[cells].tolist()
        for cell, group, bucket in zip(cells.tolist(), groups, buckets):
            yield BucketRow(self._groups[group], bucket, self._rows[cell].copy())

    @staticmethod
    def _population_values(deltas: LabeledDeltas) -> np.ndarray:
        """Each delta's signed n, errors, w, w_err, w2, w2_err (its population's six sums)."""
        values = np.empty((len(deltas), 6))
        values[:, 0] = deltas.sign
        values[:, 2] = values[:, 0] * deltas.weight
        values[:, 4] = values[:, 2] * deltas.weight
        values[:, 1::2] = values[:, 0::2] * deltas.error[:, None]
        return values

    def _local_profiles(self, deltas: LabeledDeltas) -> np.ndarray:
        """Map the join's profile ids to ours (the join's ids are not stable across restores)."""
        theirs = np.flatnonzero(np.bincount(deltas.profile))
        ours = np.zeros(theirs[-1] + 1, np.int64)
        ours[theirs] = [self._profile(deltas.profiles[p]) for p in theirs.tolist()]
        return ours[deltas.profile]

    def _profile(self, profile: Profile) -> int:
        pid = self._profile_id.get(profile)
        if pid is None:
            pid = self._profile_id[profile] = len(self._profile_groups)
            self._profile_groups.append([self._group(key) for key in profile_groups(profile, self.intersections)])
            self._group_count = np.array([len(g) for g in self._profile_groups], np.int64)
            self._group_start = np.cumsum(self._group_count) - self._group_count
            self._group_members = np.array([g for groups in self._profile_groups for g in groups], np.int64)
        return pid

    def _group(self, key: GroupKey) -> int:
        gid = self._group_id.get(key)
        if gid is None:
            gid = self._group_id[key] = len(self._groups)
            self._groups.append(key)
        return gid

    def _cells(self, groups: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Cell number of each (group, bucket start), creating the missing cells."""
        keys = (groups << _BUCKET_BITS) + (buckets + _BUCKET_OFFSET)
        cells = self._index.lookup(keys)
        missing = np.flatnonzero(cells < 0)
        if len(missing):
            new_keys, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
            new_cells = np.arange(self._n_cells, self._n_cells + len(new_keys))
            if new_cells[-1] >= len(self._cell_group):
                self._grow(max(new_cells[-1] + 1, 2 * len(self._cell_group)))
            self._cell_group[new_cells] = groups[missing[first]]
            self._cell_bucket[new_cells] = buckets[missing[first]]
            self._index.insert(new_keys, new_cells)
            self._n_cells += len(new_keys)
            cells[missing] = new_cells[inverse]
        return cells

    def _grow(self, capacity: int) -> None:
        n = self._n_cells
        for name in ("_rows", "_cell_group", "_cell_bucket", "_changed"):
            old = getattr(self, name)
            fresh = np.zeros((capacity, *old.shape[1:]), old.dtype)
            fresh[:n] = old[:n]
            setattr(self, name, fresh)


def decode_cells(blob: bytes) -> tuple[list[GroupKey], np.ndarray, np.ndarray, np.ndarray]:
    """(groups, group index of each cell, bucket starts, float64[n, 12] totals) of a cells blob."""
    parts = blobs.unpack(blob, _CELLS_MAGIC, 4, "bucket counts")
    header = json.loads(parts[0])
    n = header["n"]
    group_of = np.frombuffer(parts[1], np.int32)
    buckets = np.frombuffer(parts[2], np.int64)
    rows = np.frombuffer(parts[3], np.float64).reshape(-1, N_COLUMNS)
    if not len(group_of) == len(buckets) == len(rows) == n:
        raise ValueError("bucket counts blob is truncated")
    return [GroupKey(*key) for key in header["groups"]], group_of, buckets, rows
