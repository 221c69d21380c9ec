"""Reads of the verified mated identification searches by the rank their mate was identified at, per
group: what :mod:`fairwatch.core.identification_ranks` turns into FNIR at rank <= R.

Each labelled outcome of the window (the latest revision of its primary verdict, weight
``1 / inclusion_prob``) of mode ``identification`` and truth ``genuine`` whose event carried a
candidate list (``candidates_listed``), joined with its event's list and threshold and with the
counted verdict's ``mate_rank`` (:func:`fairwatch.store.verified_scores.verified_sql`). Its rank: the
``mate_rank`` when the candidate there scored at or above the event's threshold, else
:data:`~fairwatch.core.identification_ranks.MISSED` (the mate not listed, listed below the threshold,
or named beyond the list). Rows are expanded into the groups they count in as the sink counts them
(overall, each attribute, each intersection the subject has); the tables may be the stored ones or
those sealed up to checkpoints (:mod:`fairwatch.store.sealed_evidence`). Searches whose events carry a
``cluster_id`` are also read per cluster (:class:`~fairwatch.core.identification_ranks.RankClusters`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from fairwatch.core.identification_ranks import MISSED, RankTally
from fairwatch.core.layout import GroupKey
from fairwatch.store.sums import exact_sum
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.group_expansion import group_expansion_sql
from fairwatch.store.sealed_evidence import STORED, EvidenceTables
from fairwatch.store.verified_scores import verified_sql

__all__ = ["IDENTIFIED_RANK", "read_rank_tallies"]

# the rank a mated search's mate was identified at (scores do not increase with rank, so the mate at
# or above the threshold is listed within the candidates at or above it)
IDENTIFIED_RANK = ("if(mate_rank > 0 AND mate_rank <= length(candidate_scores)"
                   " AND candidate_scores[greatest(toUInt64(mate_rank), 1)] >= threshold, toUInt64(mate_rank),"
                   f" toUInt64({MISSED}))")
# the longest list a search could return: list_length, or its candidates when it gave none
LONGEST = "greatest(toUInt64(list_length), toUInt64(length(candidate_scores)))"


def read_rank_tallies(store: Store, start: datetime, end: datetime, intersections: Sequence[Sequence[str]] = (),
                      deployment: str | None = None, algorithm: str | None = None,
                      tables: EvidenceTables = STORED) -> dict[GroupKey, RankTally]:
    """Per group (mode ``identification``): its verified mated searches with a candidate list, by the
    rank their mate was identified at, and the longest list among them.

    ``[start, end)`` is in whole buckets (as :class:`~fairwatch.audit.window.Window` gives it). Groups
    without such a search are absent.
    """
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    searches = verified_sql(tables, where, ("list_length", "cluster_id"))
    rows = store.query(
        "SELECT deployment, algorithm, tupleElement(pair, 1) AS attribute, tupleElement(pair, 2) AS group_label,"
        f" identified, cluster_id, count() AS n, {exact_sum('weight')} AS w, {exact_sum('weight * weight')} AS w2,"
        " max(longest) AS longest"
        f" FROM (SELECT deployment, algorithm, subject_keys, subject_values, weight, cluster_id,"
        f"  {IDENTIFIED_RANK} AS identified, {LONGEST} AS longest FROM ({searches})"
        "  WHERE toString(mode) = 'identification' AND truth = 'genuine' AND candidates_listed = 1)"
        f" ARRAY JOIN {group_expansion_sql(intersections)} AS pair"
        " GROUP BY deployment, algorithm, attribute, group_label, identified, cluster_id"
        " ORDER BY deployment, algorithm, attribute, group_label, identified, cluster_id", params)  # summed in order
    found: dict[GroupKey, list[tuple]] = {}
    keyed: dict[GroupKey, list[tuple]] = {}
    for deployment_, algorithm_, attribute, group, identified, cluster, n, w, w2, longest in rows:
        key = GroupKey(deployment_, algorithm_, "identification", attribute, group)
        found.setdefault(key, []).append((int(identified), float(n), float(w), float(w2), int(longest)))
        if cluster:
            keyed.setdefault(key, []).append((cluster, int(identified), float(w), float(w2), float(n)))
    return {key: RankTally.from_rows([r[:4] for r in parts], max(r[4] for r in parts), keyed.get(key, ()))
            for key, parts in sorted(found.items())}
