"""Reads of acted-on identifications for the two-person rule (:mod:`fairwatch.core.two_person`).

Per identification search that occurred in ``[start, end)``: the counted verdict (the primary
verdict of the highest revision; independent reviews are stored apart) with its ``verifiers`` and
``action_taken`` (migration 016), kept when it records an action. The tables may be the stored ones
or those sealed up to checkpoints (:mod:`fairwatch.store.sealed_evidence`).
"""

from __future__ import annotations

from datetime import datetime

from fairwatch.core.two_person import ActedVerdict
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.sealed_evidence import STORED, EvidenceTables
from fairwatch.store.use_scope import IN_WINDOW, OF_USE

__all__ = ["read_acted_verdicts", "searched_deployments"]


def read_acted_verdicts(store: Store, start: datetime, end: datetime, deployment: str | None = None,
                        algorithm: str | None = None, tables: EvidenceTables = STORED,
                        use: str | None = None) -> list[ActedVerdict]:
    """The window's identification searches whose counted verdict records an action; with ``use``,
    those of that use instead (:data:`fairwatch.store.use_scope.OF_USE`: naming it, or naming none and
    in ``[start, end)``)."""
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end, use=use)
    rows = store.query(
        "SELECT search_deployment, search_algorithm, event_id, toString(counted_truth), counted_verifiers"
        " FROM (SELECT event_id, argMax(truth, revision) AS counted_truth,"
        "  argMax(verifiers, revision) AS counted_verifiers, argMax(action_taken, revision) AS counted_action"
        f"  FROM {tables.verdicts} GROUP BY event_id) AS counted ALL INNER JOIN"
        # named apart from the columns: 18.16 reads a filter on `deployment` as one on an alias of any()
        f" (SELECT event_id, any(deployment) AS search_deployment, any(algorithm) AS search_algorithm FROM {tables.events}"
        f"  WHERE toString(mode) = 'identification' AND {OF_USE if use is not None else IN_WINDOW}"
        f"{where} GROUP BY event_id) AS searches USING (event_id)"
        " WHERE counted_action = 1 ORDER BY search_deployment, event_id", params)
    return [ActedVerdict(d, a, e, t, list(v)) for d, a, e, t, v in rows]


def searched_deployments(store: Store, start: datetime, end: datetime, deployment: str | None = None,
                         algorithm: str | None = None, tables: EvidenceTables = STORED) -> list[str]:
    """The deployments with identification searches in the window (judged even without an action)."""
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    return [row[0] for row in store.query(
        f"SELECT DISTINCT deployment FROM {tables.events} WHERE toString(mode) = 'identification'"
        f" AND occurred_at >= %(start)s AND occurred_at < %(end)s{where} ORDER BY deployment", params)]
