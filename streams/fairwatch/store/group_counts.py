"""Reads of the stored per-group bucket counts: the one module that queries ``group_counts``.

Every read uses FINAL, so a bucket that was rewritten (late outcomes, a rebuilt partition) counts
once, with its newest totals. The sink writes the table (:mod:`fairwatch.store.sink`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from fairwatch.core.layout import COLUMNS, INTERSECTION_SEP, GroupKey
from fairwatch.store.clickhouse import Store
from fairwatch.store.sums import exact_sum


def scope_filter(deployment: str | None, algorithm: str | None) -> tuple[str, dict[str, Any]]:
    """`` AND deployment = ... AND algorithm = ...`` for the scopes given, and its parameters."""
    conditions, params = [], {}
    if deployment:
        conditions.append("deployment = %(deployment)s")
        params["deployment"] = deployment
    if algorithm:
        conditions.append("algorithm = %(algorithm)s")
        params["algorithm"] = algorithm
    return "".join(f" AND {c}" for c in conditions), params


_SUMS = ", ".join(exact_sum(c) for c in COLUMNS)  # the same on one server, later, or on a cluster


def read_counts(
    store: Store, start: datetime, end: datetime, deployment: str | None = None, algorithm: str | None = None
) -> tuple[list[GroupKey], np.ndarray]:
    """Summed counts per group over the buckets in ``[start, end)``."""
    scope, params = scope_filter(deployment, algorithm)
    params.update(start=start, end=end)
    sums = _SUMS
    rows = store.query(
        f"SELECT deployment, algorithm, toString(mode), attribute, group_label, {sums} FROM group_counts FINAL"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{scope}"
        " GROUP BY deployment, algorithm, mode, attribute, group_label"
        " ORDER BY deployment, algorithm, mode, attribute, group_label",
        params,
    )
    keys = [GroupKey(*row[:5]) for row in rows]
    values = np.array([row[5:] for row in rows], dtype=np.float64).reshape(len(rows), len(COLUMNS))
    return keys, values


def bucket_counts(store: Store, deployment: str, start: datetime, end: datetime, attributes: tuple[str, ...],
                  algorithms: tuple[str, ...] = (), by_algorithm: bool = True) -> list[tuple]:
    """Summed counts per group and bucket in ``[start, end)`` for the attribute sets given.

    Rows are ``(algorithm, mode, attribute, group_label, bucket_seconds, *sums)``, or without
    algorithm and mode (summed over both) when ``by_algorithm`` is false. ``algorithms`` limits
    the algorithms read (all when empty).
    """
    conditions = ["deployment = %(d)s", "bucket >= %(start)s", "bucket < %(end)s", "attribute IN %(sets)s"]
    params: dict[str, Any] = {"d": deployment, "start": start, "end": end, "sets": attributes}
    if algorithms:
        conditions.append("algorithm IN %(algorithms)s")
        params["algorithms"] = algorithms
    if by_algorithm:
        select, group = "algorithm, toString(mode), attribute, group_label", "algorithm, mode, attribute, group_label"
    else:
        select = group = "attribute, group_label"
    return store.query(
        f"SELECT {select}, toUInt32(bucket), {_SUMS} FROM group_counts FINAL"
        f" WHERE {' AND '.join(conditions)} GROUP BY {group}, bucket", params)


def first_bucket(store: Store, deployment: str) -> tuple[int, datetime | None]:
    """How many count rows a deployment has, and its earliest bucket (None when it has none)."""
    rows = store.query("SELECT count(), min(bucket) FROM group_counts WHERE deployment = %(d)s", {"d": deployment})
    return (rows[0][0], rows[0][1]) if rows and rows[0][0] else (0, None)


def counted_deployments(store: Store) -> list[str]:
    """Every deployment with counts."""
    return [row[0] for row in store.query("SELECT DISTINCT deployment FROM group_counts")]


def counted_intersections(store: Store, start: datetime, end: datetime, deployment: str | None = None,
                          algorithm: str | None = None) -> tuple[tuple[str, ...], ...]:
    """The intersections (attribute sets of two or more, e.g. ``("sex", "race")``) counted in ``[start, end)``."""
    scope, params = scope_filter(deployment, algorithm)
    params.update(start=start, end=end)
    rows = store.query("SELECT DISTINCT attribute FROM group_counts WHERE bucket >= %(start)s AND bucket < %(end)s"
                       f" AND position(attribute, '{INTERSECTION_SEP}') > 0{scope} ORDER BY attribute", params)
    return tuple(tuple(row[0].split(INTERSECTION_SEP)) for row in rows)


def counted_groups(store: Store, deployment: str) -> list[tuple[str, str, str]]:
    """``(algorithm, attribute, group)`` of every group counted for ``deployment``."""
    return [tuple(row) for row in store.query(
        "SELECT DISTINCT algorithm, attribute, group_label FROM group_counts WHERE deployment = %(d)s",
        {"d": deployment})]
