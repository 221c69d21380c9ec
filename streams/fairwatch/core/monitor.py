"""The statistics core in one object: batches of records in, per-group results out.

:class:`Monitor` chains the label-delay join, the event-time bucket counts and the estimators.
File replay and tests drive it directly; the live worker uses the same join and the same
estimators with its state in Kafka and its counts in ClickHouse.

Examples
--------
>>> from datetime import datetime, timedelta, timezone
>>> from fairwatch.core.config import CoreConfig
>>> from fairwatch.contracts.records import MatchEvent, VerifiedOutcome
>>> t0 = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
>>> monitor = Monitor(CoreConfig(min_comparisons=1))
>>> records = []
>>> for i in range(40):
...     race = "Black" if i % 2 else "White"
...     decision = "match" if i in (1, 3, 5) else "non_match"  # three false matches, all Black
...     records.append(MatchEvent(f"e{i}", t0, "gate-a", "algo-1", "verification", 0.5, 0.6,
...                               decision, {"race": race}))
...     records.append(VerifiedOutcome(f"e{i}", t0 + timedelta(days=1), "impostor", "r1", 0))
>>> monitor.update(records).rejected
[]
>>> frame = monitor.snapshot()
>>> for key, group in frame.by_group.items():
...     print(key.group, group.fmr.errors, group.fmr.n, round(group.fmr.rate, 3))
Black 3 20 0.15
White 0 20 0.0
>>> [ratio] = frame.ratio("fmr").values()  # max/min does not exist: White has no false match
>>> ratio.value, ratio.status.value, ratio.max_group, ratio.min_group
(None, 'undefined', 'Black', 'White')
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from fairwatch.contracts.records import PRIMARY, MatchEvent, VerifiedOutcome
from fairwatch.core.config import CoreConfig
from fairwatch.core.clusters import ClusterTally
from fairwatch.core.counts import BucketCounts, profile_groups
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.join import JoinCounters, JoinOutput, LabelJoin, epoch_seconds


class Monitor:
    """Join, count and estimate, batch in, batch out.

    Parameters
    ----------
    config
        Bucket width, TTL, intersections, interval level, targets and differential weights.
    """

    def __init__(self, config: CoreConfig = CoreConfig()):
        self.config = config
        self.join = LabelJoin(config)
        self.counts = BucketCounts(config)
        self.clusters = ClusterTally()
        self._cluster_of: dict[str, str] = {}  # event_id -> cluster_id, for the events that have one
        self._groups_of: dict[int, list] = {}

    def update(self, records: Iterable[MatchEvent | VerifiedOutcome]) -> JoinOutput:
        """Apply a batch of decoded records in arrival order; return the deltas and rejections.
        Independent reviews are not verdicts that count: they are left out."""
        records = [r for r in records if not (isinstance(r, VerifiedOutcome) and r.review != PRIMARY)]
        for record in records:
            if isinstance(record, MatchEvent) and record.cluster_id:
                self._cluster_of.setdefault(record.event_id, record.cluster_id)
        output = self.join.update(records)
        self.counts.update(output.deltas)
        if self._cluster_of:
            self.clusters.update(output.deltas, self._profile_groups, self._cluster_of.get)
        return output

    def _profile_groups(self, index: int) -> list:
        if index not in self._groups_of:
            self._groups_of[index] = profile_groups(self.join.profiles[index], self.config.intersections)
        return self._groups_of[index]

    def expire(self, now: datetime | float) -> list[str]:
        """Drop unpaired (and settled) records idle for the TTL; their counts stay."""
        return self.join.expire(now)

    @property
    def counters(self) -> JoinCounters:
        return self.join.counters

    def snapshot(
        self,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
        deployment: str | None = None,
        algorithm: str | None = None,
    ) -> GroupFrame:
        """Per-group estimates and differentials over the buckets in [start, end) (all if None)."""
        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        window = self.counts.window(lo, hi, deployment=deployment, algorithm=algorithm)
        clustering = self.clusters.window(epoch_seconds(lo), epoch_seconds(hi)) if self._cluster_of else None
        return GroupFrame.from_counts(window.keys, window.rows, self.config, clustering=clustering)
