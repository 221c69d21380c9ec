"""The tables a report's numbers read, either as stored or rebuilt from the evidence rows sealed
up to given checkpoints.

A report reads match events, verdicts, independent reviews and the labelled outcomes derived
from them (and the per-group counts derived from those). :data:`STORED` names the stored tables.
:func:`sealed_tables` names the same tables as of a set of checkpoints: only the rows whose leaf
in their deployment's evidence log (:mod:`fairwatch.store.evidence`) has an index below that
log's checkpoint size, so rows stored or sealed after the checkpoint (late outcomes, new events)
are left out. The labelled outcomes are then derived from those rows as the join derives
``labeled_outcomes`` (:class:`fairwatch.core.join.LabelJoin`): each sealed match event with the
highest sealed revision of its verdict, weight ``1 / inclusion_prob``, in the event-time bucket of
its ``occurred_at``; and :func:`labeled_counts` sums them per group as the sink sums
``group_counts`` (:func:`fairwatch.store.sink.recompute_counts_sql`).

The rows are read as stored now (``FINAL``): they equal what was sealed only where the evidence
log verifies (:mod:`fairwatch.audit.evidence_verify`), which a caller checks first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

import numpy as np

from fairwatch.core.layout import COLUMNS, GroupKey
from fairwatch.store.clickhouse import Store
from fairwatch.store.evidence import BY_KIND
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.group_expansion import group_expansion_sql
from fairwatch.store.sink import population_sums

__all__ = ["EvidenceTables", "STORED", "sealed_tables", "labeled_counts"]


@dataclass(frozen=True)
class EvidenceTables:
    """Table expressions for ``FROM``: match events, verdicts (every revision), independent
    reviews and labelled outcomes (one row per event, the revision that counts), with the
    parameters they use (merge them into a query's own)."""

    events: str = "match_events FINAL"
    verdicts: str = "verified_outcomes FINAL"
    reviews: str = "independent_reviews FINAL"
    labeled: str = "labeled_outcomes FINAL"
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sealed(self) -> bool:
        return bool(self.params)


STORED = EvidenceTables()


def _sealed_keys(kind: str) -> str:
    """The row keys of ``kind`` logged below each origin's size (every copy of a leaf: IN ignores repeats)."""
    return (f"(SELECT row_key FROM evidence_leaves WHERE kind = '{kind}' AND origin IN %(sealed_origins)s"
            " AND leaf_index < transform(origin, %(sealed_origin_list)s, %(sealed_sizes)s, toUInt64(0)))")


def _sealed(kind: str, table: str) -> str:
    # a subquery with an alias: current servers refuse one without it on either side of a JOIN
    return f"(SELECT * FROM {table} FINAL WHERE {BY_KIND[kind].key_sql} IN {_sealed_keys(kind)}) AS sealed_{table}"


def sealed_tables(sizes: Mapping[str, int], bucket_seconds: int) -> EvidenceTables:
    """The tables as of the checkpoints ``sizes`` (origin -> tree size); ``bucket_seconds``: the
    width of the event-time buckets the labelled outcomes are put in."""
    if not sizes:
        raise ValueError("no checkpoint: the tables as of no checkpoint would be empty")
    bucket = int(bucket_seconds)
    events = _sealed("match_event", "match_events")
    verdicts = _sealed("verified_outcome", "verified_outcomes")
    reviews = _sealed("independent_review", "independent_reviews")
    # the verdict that counts: the highest revision (names apart from the columns they aggregate)
    labeled = (
        "(SELECT event_id, occurred_at, occurred_at_us,"
        f" toDateTime(intDiv(toUInt32(occurred_at), {bucket}) * {bucket}, 'UTC') AS bucket, deployment, algorithm,"
        " mode, subject_keys, subject_values, decision, counted_truth AS truth, counted_revision AS revision,"
        " counted_weight AS weight FROM"
        " (SELECT event_id, occurred_at, occurred_at_us, deployment, algorithm, mode, subject_keys, subject_values,"
        f" decision FROM {events}) AS sealed_event ALL INNER JOIN"
        " (SELECT event_id, argMax(truth, revision) AS counted_truth, max(revision) AS counted_revision,"
        f" 1 / argMax(inclusion_prob, revision) AS counted_weight FROM {verdicts} GROUP BY event_id)"
        " AS sealed_verdict USING (event_id)) AS sealed_labeled_outcomes"
    )
    origins = sorted(sizes)
    params = {"sealed_origins": tuple(origins), "sealed_origin_list": origins,
              "sealed_sizes": [int(sizes[o]) for o in origins]}
    return EvidenceTables(events, verdicts, reviews, labeled, params)


def labeled_counts(store: Store, tables: EvidenceTables, intersections: Sequence[Sequence[str]], start: datetime,
                   end: datetime, deployment: str | None = None, algorithm: str | None = None
                   ) -> tuple[list[GroupKey], np.ndarray]:
    """Summed counts per group over the buckets in ``[start, end)`` of ``tables.labeled``, in the
    layout and order of :func:`fairwatch.store.group_counts.read_counts`: overall, each
    attribute, and each of ``intersections`` the subject has (as the sink counts them)."""
    scope, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    sums = ", ".join(population_sums("impostor") + population_sums("genuine"))
    rows = store.query(
        "SELECT deployment, algorithm, toString(mode), tupleElement(pair, 1) AS attribute,"
        f" tupleElement(pair, 2) AS group_label, {sums}"
        f" FROM {tables.labeled} ARRAY JOIN {group_expansion_sql(intersections)} AS pair"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{scope}"
        " GROUP BY deployment, algorithm, mode, attribute, group_label"
        " ORDER BY deployment, algorithm, mode, attribute, group_label", params)
    keys = [GroupKey(*row[:5]) for row in rows]
    values = np.array([row[5:] for row in rows], dtype=np.float64).reshape(len(rows), len(COLUMNS))
    return keys, values
