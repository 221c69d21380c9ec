"""Reads of the clustering sums per group: what comparisons that share a ``cluster_id`` add to the
variance of a group's rate (:mod:`fairwatch.core.clusters`).

Each labelled outcome of the window (the revision that counts, weight ``1 / inclusion_prob``) whose
match event carries a ``cluster_id`` is expanded into the groups it counts in (as the sink counts
them, :func:`~fairwatch.store.group_expansion.group_expansion_sql`); per group, population and
cluster its weighted errors ``A`` and weight ``B`` are summed, and per group and population the
sums of :data:`~fairwatch.core.clusters.MOMENT_FIELDS` are returned. Events without a key add
nothing (their sums are 0), so a window without keys reads no row. The tables may be the stored
ones or those sealed up to checkpoints (:mod:`fairwatch.store.sealed_evidence`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np

from fairwatch.core.clusters import N_MOMENTS
from fairwatch.core.layout import GroupKey
from fairwatch.store.sums import exact_sum
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.group_expansion import group_expansion_sql
from fairwatch.store.sealed_evidence import STORED, EvidenceTables
from fairwatch.store.sink import ERROR_SQL

__all__ = ["read_cluster_moments"]

def read_cluster_moments(store: Store, start: datetime, end: datetime, intersections: Sequence[Sequence[str]] = (),
                         deployment: str | None = None, algorithm: str | None = None,
                         tables: EvidenceTables = STORED) -> dict[GroupKey, np.ndarray]:
    """``GroupKey -> float64[2, 4]`` (impostor, genuine) of :data:`~fairwatch.core.clusters.MOMENT_FIELDS`
    over the labelled outcomes whose bucket is in ``[start, end)`` (whole buckets, as
    :class:`~fairwatch.audit.window.Window` gives them), for the groups with keyed events."""
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    # one JOIN per SELECT (18.16): the keyed labelled rows first, the group expansion around them
    keyed = (f"SELECT deployment, algorithm, mode, subject_keys, subject_values, truth, decision, weight, cluster_id"
             f" FROM {tables.labeled} ANY INNER JOIN"
             f" (SELECT event_id, cluster_id FROM {tables.events} WHERE occurred_at >= %(start)s"
             f"  AND occurred_at < %(end)s AND cluster_id != ''{where}) AS keyed_events USING (event_id)"
             f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}")
    per_cluster = (
        "SELECT deployment, algorithm, toString(mode) AS mode_name, tupleElement(pair, 1) AS attribute,"
        " tupleElement(pair, 2) AS group_label, toString(truth) AS truth_name, cluster_id,"
        f" {exact_sum(f'if({ERROR_SQL}, weight, 0.)')} AS a, {exact_sum('weight')} AS b,"
        f" {exact_sum(f'if({ERROR_SQL}, weight * weight, 0.)')} AS self_aa,"
        f" {exact_sum('weight * weight')} AS self_bb, count() AS members"
        f" FROM ({keyed}) ARRAY JOIN {group_expansion_sql(intersections)} AS pair"
        " GROUP BY deployment, algorithm, mode_name, attribute, group_label, truth_name, cluster_id")
    rows = store.query(
        f"SELECT deployment, algorithm, mode_name, attribute, group_label, truth_name, {exact_sum('a * a - self_aa')},"
        f" {exact_sum('a * b - self_aa')}, {exact_sum('b * b - self_bb')}, toFloat64(sum(members - 1))"
        f" FROM ({per_cluster}) GROUP BY deployment, algorithm, mode_name, attribute, group_label, truth_name",
        params)
    out: dict[GroupKey, np.ndarray] = {}
    for row in rows:
        moments = out.setdefault(GroupKey(*row[:5]), np.zeros((2, N_MOMENTS)))
        moments[0 if row[5] == "impostor" else 1] = np.asarray(row[6:], dtype=float)
    return out
