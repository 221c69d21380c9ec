"""The ClickHouse sink: what a processed batch leaves behind, written idempotently.

Every table is a ReplacingMergeTree, so writing the same batch twice (a retry, or a replay after a
crash) leaves the same rows. Counts are never incremented: ``labeled_outcomes`` holds one row per
event (its latest revision wins) and the touched ``group_counts`` buckets are recomputed from it as
absolute values with a version taken before the recompute starts, so the newest recompute, which
saw every row written before it, is the one that stays.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

from fairwatch.config import CoreConfig
from fairwatch.contracts import MatchEvent, VerifiedOutcome, decode_valid_batch
from fairwatch.counts_layout import COLUMNS, INTERSECTION_SEP, OVERALL
from fairwatch.join import LabeledDeltas
from fairwatch.store import Store

EVENT_COLUMNS = (
    "event_id", "occurred_at", "occurred_at_us", "deployment", "algorithm", "mode", "score", "threshold", "decision",
    "subject_keys", "subject_values", "reference_keys", "reference_values", "context", "ingested_at",
)
OUTCOME_COLUMNS = ("event_id", "verified_at", "truth", "reviewer", "revision", "inclusion_prob", "ingested_at")
LABELED_COLUMNS = (
    "event_id", "occurred_at", "occurred_at_us", "bucket", "deployment", "algorithm", "mode", "subject_keys",
    "subject_values", "decision", "truth", "revision", "weight", "kafka_partition",
)
DEAD_LETTER_COLUMNS = (
    "source_topic", "kafka_partition", "kafka_offset", "key_b64", "value_b64", "reason_code", "field", "reason",
    "rejected_at", "record_index",
)
GROUP_KEY_COLUMNS = ("deployment", "algorithm", "mode", "attribute", "group_label", "bucket", "kafka_partition")


_SORTED = json.JSONEncoder(sort_keys=True)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def event_row(event: MatchEvent, ingested_at: datetime) -> tuple:
    reference = event.reference or {}
    return (
        event.event_id, event.occurred_at, event.occurred_at.microsecond, event.deployment, event.algorithm,
        event.mode, event.score, event.threshold, event.decision, list(event.subject), list(event.subject.values()),
        list(reference), list(reference.values()), _SORTED.encode(event.context) if event.context else "{}", ingested_at,
    )


def outcome_row(outcome: VerifiedOutcome, ingested_at: datetime) -> tuple:
    return (
        outcome.event_id, outcome.verified_at, outcome.truth, outcome.reviewer, outcome.revision,
        outcome.inclusion_prob, ingested_at,
    )


def labeled_rows(deltas: LabeledDeltas, partition: int) -> list[tuple]:
    """Rows entering the labeled set (sign +1); a retraction is implied by the higher revision.

    DateTime columns are given as epoch seconds (both stores take them), built column by column.
    """
    entering = (deltas.sign > 0).nonzero()[0]
    if not len(entering):
        return []
    occurred_us = deltas.occurred_at_us[entering]
    profiles = deltas.profiles
    # one (deployment, algorithm, mode, keys, labels) per distinct profile, shared by its rows
    shapes = {p: (profile.deployment, profile.algorithm, profile.mode, [a for a, _ in profile.subject],
                  [g for _, g in profile.subject])
              for p in set(deltas.profile[entering].tolist()) for profile in (profiles[p],)}
    by_row = [shapes[p] for p in deltas.profile[entering].tolist()]
    event_ids = deltas.event_id
    return [
        (event_ids[i], seconds, micros, bucket, shape[0], shape[1], shape[2], shape[3], shape[4],
         "match" if match else "non_match", "genuine" if genuine else "impostor", revision, weight, partition)
        for i, seconds, micros, bucket, shape, match, genuine, revision, weight in zip(
            entering.tolist(), (occurred_us // 1_000_000).tolist(), (occurred_us % 1_000_000).tolist(),
            deltas.bucket[entering].tolist(), by_row, deltas.match[entering].tolist(),
            deltas.genuine[entering].tolist(), deltas.revision[entering].tolist(), deltas.weight[entering].tolist())
    ]


def group_expansion_sql(intersections: Sequence[Sequence[str]]) -> str:
    """An array of (attribute, group) pairs per labeled row: overall, each attribute, intersections.

    Written with functions ClickHouse 18.16 has; an intersection whose attributes the subject
    lacks gets an empty label and is filtered out (labels are never empty by contract).
    """
    parts = [f"('{OVERALL}', '{OVERALL}')"]
    for combo in intersections:
        present = " AND ".join(f"has(subject_keys, '{a}')" for a in combo)
        labels = f", '{INTERSECTION_SEP}', ".join(f"subject_values[indexOf(subject_keys, '{a}')]" for a in combo)
        parts.append(f"('{INTERSECTION_SEP.join(combo)}', if({present}, concat({labels}), ''))")
    pairs = f"arrayConcat([{', '.join(parts)}], arrayMap((k, v) -> (k, v), subject_keys, subject_values))"
    return f"arrayFilter(p -> tupleElement(p, 2) != '', {pairs})"


def _population_sums(truth: str, error_decision: str) -> list[str]:
    population = f"truth = '{truth}'"
    error = f"{population} AND decision = '{error_decision}'"
    return [
        f"toFloat64(sum({population}))",
        f"toFloat64(sum({error}))",
        f"sum(if({population}, weight, 0.))",
        f"sum(if({error}, weight, 0.))",
        f"sum(if({population}, weight * weight, 0.))",
        f"sum(if({error}, weight * weight, 0.))",
    ]


def recompute_counts_sql(intersections: Sequence[Sequence[str]]) -> str:
    """INSERT ... SELECT that rewrites the group_counts rows of some buckets of some partitions.

    One statement scans labeled_outcomes once for all the partitions of a batch (one statement per
    partition scanned it once each). It also rewrites (partition, bucket) pairs the batch did not
    touch when another partition touched that bucket: harmless, the rows are absolute.
    """
    sums = _population_sums("impostor", "match") + _population_sums("genuine", "non_match")
    return (
        f"INSERT INTO group_counts ({', '.join(GROUP_KEY_COLUMNS + COLUMNS)}, version) "
        f"SELECT deployment, algorithm, mode, tupleElement(pair, 1) AS attribute, tupleElement(pair, 2) AS group_label,"
        f" bucket, kafka_partition, {', '.join(sums)}, toUInt64(%(version)s) "
        f"FROM labeled_outcomes FINAL ARRAY JOIN {group_expansion_sql(intersections)} AS pair "
        f"WHERE kafka_partition IN %(partitions)s AND bucket IN %(buckets)s "
        f"GROUP BY deployment, algorithm, mode, attribute, group_label, bucket, kafka_partition"
    )


@dataclass
class SinkBatch:
    """What one processed batch must leave in ClickHouse.

    Rows of whole batch envelopes and of join deltas may be left unbuilt (``envelopes``,
    ``deltas``): the live worker's sink process builds them (:meth:`built`), so the worker's
    event loop spends nothing on them and sends bytes and arrays rather than row tuples.
    """

    events: list[tuple] = field(default_factory=list)
    outcomes: list[tuple] = field(default_factory=list)
    labeled: list[tuple] = field(default_factory=list)
    dead_letters: list[tuple] = field(default_factory=list)
    touched: dict[int, set[int]] = field(default_factory=dict)  # partition -> bucket starts (epoch s)
    # (record kind, envelope bytes, records): envelopes all of whose records are stored as they are
    envelopes: list[tuple[str, bytes, int]] = field(default_factory=list)
    deltas: list[tuple[LabeledDeltas, int]] = field(default_factory=list)  # (join deltas, partition)
    ingested_at: datetime | None = None  # of the envelopes' rows

    def touch(self, partition: int, buckets: Iterable[int]) -> None:
        self.touched.setdefault(partition, set()).update(int(b) for b in buckets)

    def __len__(self) -> int:
        return (len(self.events) + len(self.outcomes) + len(self.labeled) + len(self.dead_letters)
                + sum(n for _, _, n in self.envelopes) + sum(int((d.sign > 0).sum()) for d, _ in self.deltas))

    def built(self) -> SinkBatch:
        """This batch with every row built: envelopes decoded again, deltas turned into rows."""
        if not self.envelopes and not self.deltas:
            return self
        return SinkBatch(self.event_rows(), self.outcome_rows(), self.labeled_outcome_rows(), list(self.dead_letters),
                         self.touched)

    def _envelope_records(self, kind: str) -> Iterable:
        for envelope_kind, raw, count in self.envelopes:
            if envelope_kind == kind:
                decoded = decode_valid_batch(raw, kind)
                if decoded is None or len(decoded.records) != count:  # the same bytes decoded before: never
                    raise RuntimeError(f"a {kind} envelope decoded differently in the sink")
                yield from decoded.records

    def event_rows(self) -> list[tuple]:
        return self.events + [event_row(record, self.ingested_at) for record in self._envelope_records("match_event")]

    def outcome_rows(self) -> list[tuple]:
        return self.outcomes + [outcome_row(record, self.ingested_at)
                                for record in self._envelope_records("verified_outcome")]

    def labeled_outcome_rows(self) -> list[tuple]:
        return self.labeled + [row for deltas, partition in self.deltas for row in labeled_rows(deltas, partition)]


class ClickHouseSink:
    """Writes :class:`SinkBatch` es; the worker retries a failed write (``fairwatch.app``)."""

    # bucket lists longer than this are recomputed in chunks to keep the statement small
    MAX_BUCKETS_PER_STATEMENT = 500

    def __init__(self, store: Store, config: CoreConfig = CoreConfig()):
        self.store = store
        self._recompute_sql = recompute_counts_sql(config.intersections)

    def write(self, batch: SinkBatch) -> None:
        """The batch's rows, then the counts of the buckets it touched."""
        self.write_rows(batch)
        self.recompute(batch.touched)

    def write_rows(self, batch: SinkBatch) -> None:
        for table, columns, rows in row_inserts(batch):
            self.store.insert(table, columns, rows())

    def recompute(self, touched: dict[int, set[int]]) -> None:
        """Rewrite the group_counts of the (partition -> bucket starts) from labeled_outcomes.

        The live worker calls this once per flush for every batch since the last one (the
        buckets of many batches coalesce), before it persists the join state of those batches.
        """
        partitions = tuple(sorted(p for p, buckets in touched.items() if buckets))
        ordered = sorted(set().union(*touched.values())) if partitions else []
        for start in range(0, len(ordered), self.MAX_BUCKETS_PER_STATEMENT):
            chunk = tuple(_utc(b) for b in ordered[start : start + self.MAX_BUCKETS_PER_STATEMENT])
            # the version is taken before the recompute reads: a later recompute saw more
            self.store.execute(self._recompute_sql, {"version": time.time_ns(), "partitions": partitions,
                                                     "buckets": chunk})


def split_by_partition(touched: dict[int, set[int]], shares: int) -> list[dict[int, set[int]]]:
    """``touched`` (partition -> buckets) dealt into at most ``shares`` non-empty parts of about
    equal work (buckets), whole partitions each; the parts' recomputes together rewrite the same rows."""
    parts: list[dict[int, set[int]]] = [{} for _ in range(max(1, shares))]
    load = [0] * len(parts)
    for partition, buckets in sorted(touched.items(), key=lambda item: (-len(item[1]), item[0])):
        if buckets:
            lightest = load.index(min(load))
            parts[lightest][partition] = buckets
            load[lightest] += len(buckets)
    return [part for part in parts if part]


def row_inserts(batch: SinkBatch) -> list[tuple[str, Sequence[str], Callable[[], list[tuple]]]]:
    """The inserts of a batch's rows: (table, columns, a function building the rows). They may run
    in any order or at once; only a recompute of their buckets must come after all of them."""
    return [
        ("match_events", EVENT_COLUMNS, batch.event_rows),
        ("verified_outcomes", OUTCOME_COLUMNS, batch.outcome_rows),
        ("labeled_outcomes", LABELED_COLUMNS, batch.labeled_outcome_rows),
        ("dead_letters", DEAD_LETTER_COLUMNS, lambda: batch.dead_letters),
    ]
