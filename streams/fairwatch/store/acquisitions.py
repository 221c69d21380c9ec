"""Acquisition attempts in the store: their rows, and per group the attempts, the failures and the
clustering sums of failure to acquire (table ``acquisitions``, migration 017).

Reads take the table ``FINAL`` (an attempt sent twice is one row) and count an attempt in the
overall row, in each of its labels and in each configured intersection it carries, as the
comparisons are counted (:func:`~fairwatch.store.group_expansion.group_expansion_sql`).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, Sequence

import numpy as np

from fairwatch.contracts.acquisition import ACQUIRED, Acquisition, context_text
from fairwatch.core.clusters import N_MOMENTS
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.group_expansion import group_expansion_sql

__all__ = ["ACQUISITION_COLUMNS", "COUNT_FIELDS", "AcquisitionKey", "acquisition_columns", "read_acquisition_counts",
           "read_acquisition_moments", "write_acquisitions"]

ACQUISITION_COLUMNS = ("attempt_id", "occurred_at", "deployment", "algorithm", "outcome", "subject_keys",
                       "subject_values", "cluster_id", "use_id", "context", "ingested_at")
# per group: attempts, failures (both kinds), and each kind of failure
COUNT_FIELDS = ("attempts", "failures", "no_face", "low_quality")


class AcquisitionKey(NamedTuple):
    deployment: str
    algorithm: str
    attribute: str
    group: str


def acquisition_columns(attempts: Sequence[Acquisition], ingested_at: datetime) -> list[list]:
    """The :data:`ACQUISITION_COLUMNS` of some attempts, a column at a time (DateTime columns as epoch
    seconds, as the sink writes them)."""
    subjects = [sorted((a.subject or {}).items()) for a in attempts]
    return [
        [a.attempt_id for a in attempts], [int(a.occurred_at.timestamp()) for a in attempts],
        [a.deployment for a in attempts], [a.algorithm for a in attempts], [a.outcome for a in attempts],
        [[k for k, _ in s] for s in subjects], [[v for _, v in s] for s in subjects],
        [a.cluster_id or "" for a in attempts], [a.use_id or "" for a in attempts], [context_text(a) for a in attempts],
        [int(ingested_at.timestamp())] * len(attempts),
    ]


def write_acquisitions(store: Store, attempts: Sequence[Acquisition], ingested_at: datetime) -> int:
    if not attempts:
        return 0
    return store.insert_columns("acquisitions", ACQUISITION_COLUMNS, acquisition_columns(attempts, ingested_at))


def _attempts_sql(start_param: str, end_param: str, where: str, columns: str) -> str:
    return (f"SELECT {columns} FROM acquisitions FINAL"
            f" WHERE occurred_at >= %({start_param})s AND occurred_at < %({end_param})s{where}")


def read_acquisition_counts(store: Store, start: datetime, end: datetime, intersections: Sequence[Sequence[str]] = (),
                            deployment: str | None = None, algorithm: str | None = None
                            ) -> dict[AcquisitionKey, np.ndarray]:
    """``AcquisitionKey -> float64[4]`` of :data:`COUNT_FIELDS` for the attempts that occurred in
    ``[start, end)``."""
    where, params = scope_filter(deployment, algorithm)
    params.update(start=start, end=end)
    attempts = _attempts_sql("start", "end", where, "deployment, algorithm, outcome, subject_keys, subject_values")
    rows = store.query(
        "SELECT deployment, algorithm, tupleElement(pair, 1) AS attribute, tupleElement(pair, 2) AS group_label,"
        f" toFloat64(count()), toFloat64(sum(outcome != '{ACQUIRED}')), toFloat64(sum(outcome = 'no_face')),"
        " toFloat64(sum(outcome = 'low_quality'))"
        f" FROM ({attempts}) ARRAY JOIN {group_expansion_sql(intersections)} AS pair"
        " GROUP BY deployment, algorithm, attribute, group_label", params)
    return {AcquisitionKey(*row[:4]): np.asarray(row[4:], dtype=float) for row in rows}


def read_acquisition_moments(store: Store, start: datetime, end: datetime, intersections: Sequence[Sequence[str]] = (),
                             deployment: str | None = None, algorithm: str | None = None
                             ) -> dict[AcquisitionKey, np.ndarray]:
    """``AcquisitionKey -> float64[4]`` of :data:`~fairwatch.core.clusters.MOMENT_FIELDS` of the
    attempts keyed by ``cluster_id`` (every weight 1: a cluster of ``b`` attempts with ``a``
    failures adds ``a^2 - a``, ``a b - a``, ``b^2 - b`` and ``b - 1``), for the groups with keyed attempts."""
    where, params = scope_filter(deployment, algorithm)
    params.update(start=start, end=end)
    attempts = _attempts_sql("start", "end", f" AND cluster_id != ''{where}",
                             "deployment, algorithm, outcome, subject_keys, subject_values, cluster_id")
    per_cluster = (
        "SELECT deployment, algorithm, tupleElement(pair, 1) AS attribute, tupleElement(pair, 2) AS group_label,"
        f" cluster_id, toFloat64(sum(outcome != '{ACQUIRED}')) AS a, toFloat64(count()) AS b"
        f" FROM ({attempts}) ARRAY JOIN {group_expansion_sql(intersections)} AS pair"
        " GROUP BY deployment, algorithm, attribute, group_label, cluster_id")
    rows = store.query(
        "SELECT deployment, algorithm, attribute, group_label, sum(a * a - a), sum(a * b - a), sum(b * b - b),"
        f" sum(b - 1) FROM ({per_cluster}) GROUP BY deployment, algorithm, attribute, group_label", params)
    return {AcquisitionKey(*row[:4]): np.asarray(row[4:], dtype=float).reshape(N_MOMENTS) for row in rows}
