"""Which input offsets are safe to commit: the worker's own ledger, independent of faust's acks.

faust commits a partition only through its ack bookkeeping, and after ``kill -9`` and the
rebalance that follows we saw it stop committing for good (the lag stayed at the whole workload)
while every message had been processed. The worker therefore keeps its own ledger: per input
partition, the first offset not yet fully processed (written to ClickHouse, the join table and
dead-letter). Only that offset is ever committed, so a crash replays at most what was in flight,
and replays are harmless (the sink is idempotent per event and revision).

The ledger starts each partition at the offset committed in Kafka (or the log start when the
group never committed) and advances over contiguous processed offsets only. Offsets processed
beyond a hole wait; if the hole persists, :meth:`OffsetLedger.stuck` names the partition so the
worker re-reads it from the ledger's offset. A hole that survives several re-reads is one the
broker cannot fill (offsets of transaction markers, or data removed by retention): the ledger
then steps over it and reports it.

Examples
--------
>>> ledger = OffsetLedger(patience=10.0, max_rereads=3)
>>> ledger.start("p0", 100)
>>> ledger.processed("p0", [100, 101, 102], now=0.0)
>>> ledger.committable()
{'p0': 103}
>>> ledger.mark_committed({"p0": 103})
>>> ledger.processed("p0", [105, 106], now=1.0)  # 103 and 104 were dropped in a rebalance
>>> ledger.committable(), ledger.stuck(now=5.0)
({}, {})
>>> ledger.stuck(now=11.5)  # after `patience` seconds: re-read from 103
{'p0': 103}
>>> ledger.processed("p0", [103, 104, 105], now=12.0)
>>> ledger.committable()
{'p0': 107}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable


@dataclass
class _Partition:
    next_offset: int  # every offset below this one is fully processed
    committed: int  # what Kafka holds for the group
    ahead: set[int] = field(default_factory=set)  # processed, but behind a hole
    hole_since: float | None = None
    rereads: int = 0  # re-reads of the same hole
    last_seen: float | None = None  # when this partition last delivered anything


@dataclass(frozen=True)
class SkippedGap:
    partition: Hashable
    first: int  # first offset stepped over
    end: int  # first offset kept (exclusive end of the gap)


class OffsetLedger:
    """Per partition, the first offset that is not yet fully processed.

    Parameters
    ----------
    patience
        Seconds a hole may persist before the partition is re-read from the ledger's offset.
    max_rereads
        Re-reads of the same hole after which it is taken as one the broker cannot fill and
        stepped over (reported by :meth:`take_skipped`).
    """

    def __init__(self, patience: float = 10.0, max_rereads: int = 3):
        self.patience = patience
        self.max_rereads = max_rereads
        self._partitions: dict[Hashable, _Partition] = {}
        self._skipped: list[SkippedGap] = []

    def __contains__(self, partition: Hashable) -> bool:
        return partition in self._partitions

    def start(self, partition: Hashable, offset: int, now: float = 0.0) -> None:
        """Begin tracking at ``offset``: the group's committed offset, or the log start."""
        self._partitions[partition] = _Partition(next_offset=offset, committed=offset, last_seen=now)

    def forget(self, partitions: Iterable[Hashable] | None = None) -> None:
        """Drop partitions (all when None): after a rebalance they start again from Kafka."""
        if partitions is None:
            self._partitions.clear()
        else:
            for partition in partitions:
                self._partitions.pop(partition, None)

    def processed(self, partition: Hashable, offsets: Iterable[int], now: float) -> None:
        """Record offsets whose effects are all written (replays and stale offsets are ignored)."""
        state = self._partitions[partition]
        state.last_seen = now
        state.ahead.update(o for o in offsets if o >= state.next_offset)
        self._advance(state)
        if state.ahead and state.hole_since is None:
            state.hole_since = now

    def _advance(self, state: _Partition) -> None:
        moved = False
        while state.next_offset in state.ahead:
            state.ahead.discard(state.next_offset)
            state.next_offset += 1
            moved = True
        if moved:
            state.rereads = 0
            state.hole_since = None

    def committable(self) -> dict[Hashable, int]:
        """Offsets to commit now: partitions whose ledger moved past the last commit."""
        return {p: s.next_offset for p, s in self._partitions.items() if s.next_offset > s.committed}

    def mark_committed(self, offsets: dict[Hashable, int]) -> None:
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = max(state.committed, offset)

    def stuck(self, now: float, highwaters: dict[Hashable, int] | None = None) -> dict[Hashable, int]:
        """Partitions to re-read, with the offset to re-read from.

        A hole older than ``patience`` is re-read; after ``max_rereads`` re-reads that did not
        fill it, the ledger steps over it instead (see :meth:`take_skipped`). With
        ``highwaters`` (the end offset of each partition), a partition that has messages beyond
        the ledger but delivered nothing for ``patience`` seconds is re-read too: a dropped last
        batch leaves no later offset to reveal the hole. Call it while no batch is in progress.
        """
        out = {}
        for partition, state in self._partitions.items():
            end = (highwaters or {}).get(partition)
            if not state.ahead and end is not None and end > state.next_offset \
                    and state.last_seen is not None and now - state.last_seen >= self.patience:
                state.last_seen = now
                out[partition] = state.next_offset
                continue
            if not state.ahead or state.hole_since is None or now - state.hole_since < self.patience:
                continue
            if state.rereads >= self.max_rereads:
                end = min(state.ahead)
                self._skipped.append(SkippedGap(partition, state.next_offset, end))
                state.next_offset = end
                self._advance(state)
                state.rereads = 0
                state.hole_since = now if state.ahead else None
                continue
            state.rereads += 1
            state.hole_since = now
            out[partition] = state.next_offset
        return out

    def take_skipped(self) -> list[SkippedGap]:
        skipped, self._skipped = self._skipped, []
        return skipped

    def describe(self) -> dict[Hashable, dict]:
        return {
            p: {"next": s.next_offset, "committed": s.committed, "ahead": len(s.ahead),
                "ahead_min": min(s.ahead) if s.ahead else None, "rereads": s.rereads}
            for p, s in self._partitions.items()
        }
