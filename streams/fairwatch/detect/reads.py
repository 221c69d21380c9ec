"""The detection cycle's reads of the store: the baseline period, bucket counts, score tails, the label backlog and the stored incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from fairwatch.core.config import CoreConfig
from fairwatch.detect.dispersion import CLUSTER_MOMENTS
from fairwatch.detect.incidents import ALERT_COLUMNS, Alert, utc
from fairwatch.detect.policy import Policy
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import bucket_counts, first_bucket
from fairwatch.store.group_expansion import group_expansion_sql


def baseline_period(store: Store, policy: Policy) -> tuple[datetime, datetime] | None:
    if policy.baseline_from is not None:
        return policy.baseline_from, policy.baseline_to
    _, start = first_bucket(store, policy.deployment)
    if start is None and policy.label_backlog is not None:
        # no outcome counted yet: the worst backlog of all, so the data starts with the first match
        rows = store.query("SELECT count(), min(occurred_at) FROM match_events WHERE deployment = %(d)s",
                           {"d": policy.deployment})
        start = rows[0][1] if rows and rows[0][0] else None
    if start is None:
        return None
    return start, utc(start.timestamp() + policy.baseline_seconds)


def read_counts(store: Store, policy: Policy, start: datetime, end: datetime) -> list[tuple]:
    return bucket_counts(store, policy.deployment, start, end, policy.attribute_sets, policy.algorithms)


def read_score_tails(store: Store, policy: Policy, config: CoreConfig, start: datetime, base_end: datetime,
                 end: datetime) -> list[tuple]:
    """Per (algorithm, mode, attribute, group, bucket): non-match decisions and those above the
    baseline's ``score_quantile`` of non-match scores (one cutoff per algorithm x mode)."""
    params: dict[str, Any] = {"d": policy.deployment, "start": start, "base_end": base_end, "end": end,
                              "q": policy.score_quantile}
    cutoffs = store.query(
        "SELECT algorithm, toString(mode), quantileExact(%(q)s)(score) FROM match_events FINAL"
        " WHERE deployment = %(d)s AND decision = 'non_match' AND occurred_at >= %(start)s AND occurred_at < %(base_end)s"
        " GROUP BY algorithm, mode", params)
    rows = []
    expansion = group_expansion_sql(policy.intersections)
    bucket = config.bucket_seconds
    for algorithm, mode, cutoff in cutoffs:
        if policy.algorithms and algorithm not in policy.algorithms:
            continue
        rows += [(algorithm, mode, *row) for row in store.query(
            f"SELECT tupleElement(pair, 1) AS attribute, tupleElement(pair, 2) AS group_label,"
            f" intDiv(toUInt32(occurred_at), {bucket}) * {bucket} AS b, count(), toFloat64(sum(score > %(cutoff)s))"
            f" FROM match_events FINAL ARRAY JOIN {expansion} AS pair"
            " WHERE deployment = %(d)s AND algorithm = %(a)s AND toString(mode) = %(m)s AND decision = 'non_match'"
            " AND occurred_at >= %(start)s AND occurred_at < %(end)s AND attribute IN %(sets)s"
            " GROUP BY attribute, group_label, b",
            {**params, "a": algorithm, "m": mode, "cutoff": float(cutoff), "sets": policy.attribute_sets})]
    return rows


def read_backlog(store: Store, policy: Policy, mon_start: int, horizon: int, bucket: int) -> dict[str, np.ndarray]:
    """Label backlog at each monitored bucket end ``t = mon_start + (k + 1) * bucket`` (``k < T``),
    per algorithm: ``int[2, T]`` of (matches unverified at ``t``, matches counted), where a match
    (decision ``match``) is counted when ``t - lookback <= occurred_at <= t - after`` and is
    unverified when none of its outcomes has ``verified_at <= t`` (event times: a replay agrees).

    One query: each match gives the first and last ``k`` at which it is counted and the first at
    which it is verified; the store sums +1/-1 steps at those indexes (clamped to ``[0, T]``) and
    the running sums here are the per-bucket counts, so the cost is one pass over the window's
    matches and their outcomes, whatever ``after`` and ``lookback`` are."""
    spec = policy.label_backlog
    T = max(0, (horizon - mon_start) // bucket)
    if spec is None or T == 0:
        return {}
    params: dict[str, Any] = {
        "d": policy.deployment, "m0": mon_start, "b": bucket, "T": T, "after": spec.after,
        "lookback": policy.lookback, "o_from": utc(mon_start + bucket - policy.lookback),
        "o_to": utc(horizon - spec.after), "v_to": utc(horizon)}
    matches = ["deployment = %(d)s", "decision = 'match'", "occurred_at >= %(o_from)s", "occurred_at <= %(o_to)s"]
    if policy.algorithms:
        matches.append("algorithm IN %(algorithms)s")
        params["algorithms"] = policy.algorithms
    where = " AND ".join(matches)
    clamp = "greatest(toInt64(0), least(toInt64(%(T)s), {}))"
    # index of the first bucket end at or after x seconds: ceil((x - m0) / b) - 1 (exact in Float64)
    first_at = "toInt64(ceil((toInt64(toUInt32({})) + {} - %(m0)s) / %(b)s)) - 1"
    rows = store.query(
        "SELECT algorithm, tupleElement(step, 1) AS k, sum(tupleElement(step, 2)), sum(tupleElement(step, 3))"
        " FROM (SELECT algorithm, arrayJoin(["
        f"  ({clamp.format('first_in')}, toInt64(1), toInt64(1)),"
        f"  ({clamp.format('last_in + 1')}, toInt64(-1), toInt64(0)),"
        f"  ({clamp.format('greatest(first_in, least(last_in + 1, verified_in))')}, toInt64(0), toInt64(-1))]) AS step"
        f" FROM (SELECT algorithm, {first_at.format('occurred_at', '%(after)s')} AS first_in,"
        "  toInt64(floor((toInt64(toUInt32(occurred_at)) + %(lookback)s - %(m0)s) / %(b)s)) - 1 AS last_in,"
        f"  if(verified = 1, {first_at.format('first_verified', '0')}, toInt64(%(T)s)) AS verified_in"
        f"  FROM match_events FINAL ANY LEFT JOIN"
        "   (SELECT event_id, min(verified_at) AS first_verified, toUInt8(1) AS verified FROM verified_outcomes"
        f"    WHERE verified_at <= %(v_to)s AND event_id IN (SELECT event_id FROM match_events WHERE {where})"
        "    GROUP BY event_id) AS outcomes USING event_id"
        f"  WHERE {where}))"
        " GROUP BY algorithm, k", params)
    steps: dict[str, np.ndarray] = {}
    for algorithm, k, d_counted, d_unverified in rows:
        steps.setdefault(algorithm, np.zeros((2, T + 1), np.int64))[:, int(k)] += (int(d_unverified), int(d_counted))
    return {algorithm: np.cumsum(step, axis=1)[:, :T] for algorithm, step in steps.items()}


def read_alerts(store: Store, start: datetime | None = None, end: datetime | None = None, state: str = "all",
                deployment: str | None = None) -> list[Alert]:
    """Incidents (latest version of each) open at some time in ``[start, end)``, newest first."""
    conditions, params = ["1"], {}
    if end is not None:
        conditions.append("opened_at < %(end)s")
        params["end"] = end
    if start is not None:
        conditions.append("(resolved_at IS NULL OR resolved_at >= %(start)s)")
        params["start"] = start
    if state != "all":
        conditions.append("toString(state) = %(state)s")
        params["state"] = state
    if deployment:
        conditions.append("deployment = %(deployment)s")
        params["deployment"] = deployment
    columns = ", ".join(f"toString({c})" if c in ("type", "severity", "state") else c for c in ALERT_COLUMNS)
    rows = store.query(f"SELECT {columns} FROM alerts FINAL WHERE {' AND '.join(conditions)}"
                       " ORDER BY opened_at DESC, id", params)
    return [Alert.from_row(row) for row in rows]


def read_cluster_moments(store: Store, policy: Policy, start: datetime, end: datetime) -> dict[tuple, dict]:
    """The baseline's comparisons and errors per clustering key, per stream, where the policy names a
    ``cluster_unit``: ``(algorithm, mode, attribute, group, metric) ->`` the sums of
    :data:`~fairwatch.detect.dispersion.CLUSTER_MOMENTS` over the keys (the verified comparisons of
    ``[start, end)`` that share a match event's ``cluster_id``; one without a key is a key of its
    own), for :func:`~fairwatch.detect.dispersion.cluster_dispersion`; empty without a ``cluster_unit``."""
    if policy.cluster_unit is None:
        return {}
    params: dict[str, Any] = {"d": policy.deployment, "start": start, "end": end, "sets": policy.attribute_sets}
    only = ""
    if policy.algorithms:
        only = " AND algorithm IN %(algorithms)s"
        params["algorithms"] = policy.algorithms
    keyed = ("SELECT event_id, cluster_id FROM match_events FINAL WHERE deployment = %(d)s"
             " AND occurred_at >= %(start)s AND occurred_at < %(end)s AND cluster_id != ''")
    rows = ("SELECT event_id, algorithm, mode, subject_keys, subject_values, truth, cluster_id,"
            " toUInt8((truth = 'impostor' AND decision = 'match') OR (truth = 'genuine' AND decision = 'non_match'))"
            f" AS error FROM labeled_outcomes FINAL ANY LEFT JOIN ({keyed}) AS keyed USING event_id"
            f" WHERE deployment = %(d)s AND bucket >= %(start)s AND bucket < %(end)s{only}")
    units = ("SELECT algorithm, toString(mode) AS mode_name, tupleElement(pair, 1) AS attribute,"
             " tupleElement(pair, 2) AS group_label, if(truth = 'impostor', 'fmr', 'fnmr') AS metric,"
             " if(cluster_id = '', event_id, cluster_id) AS unit, toFloat64(count()) AS n, toFloat64(sum(error)) AS c"
             f" FROM ({rows}) ARRAY JOIN {group_expansion_sql(policy.intersections)} AS pair"
             " WHERE attribute IN %(sets)s GROUP BY algorithm, mode_name, attribute, group_label, metric, unit")
    where = {"all": "", "multi": ", n >= 2", "erring": ", n >= 2 AND c > 0"}
    sums = ", ".join(f"sum{'If' if where[part] else ''}({_power('c', i, 'n', j)}{where[part]})"
                     for part, i, j in CLUSTER_MOMENTS)
    found = store.query(f"SELECT algorithm, mode_name, attribute, group_label, metric, {sums} FROM ({units})"
                        " GROUP BY algorithm, mode_name, attribute, group_label, metric", params)
    return {tuple(row[:5]): dict(zip(CLUSTER_MOMENTS, map(float, row[5:]))) for row in found}


def _power(c: str, i: int, n: str, j: int) -> str:
    """``c^i * n^j`` as a product ClickHouse 18.16 computes (``1`` for no factor)."""
    return " * ".join([c] * i + [n] * j) or "1"
