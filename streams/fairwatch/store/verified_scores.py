"""Reads of the verified comparisons' scores, per group: each labelled outcome (the latest revision of
its primary verdict, weight ``1 / inclusion_prob``) with its match event's score.

``labeled_outcomes`` holds one row per verified event, the revision that counts (independent
reviews are stored apart and never enter it); the score is the event's, from ``match_events``. Rows
are those whose event-time bucket is in ``[start, end)``, expanded into the groups they count in as
the sink counts them (:func:`~fairwatch.store.group_expansion.group_expansion_sql`: overall, each
attribute, each intersection the subject has). The tables may be the stored ones or those sealed up
to checkpoints (:mod:`fairwatch.store.sealed_evidence`).

Which score a genuine comparison is judged on depends on the mode (:data:`GENUINE_SCORE`): in
verification the event's score; in identification the event's score is the rank-1 candidate's,
which is the mate's only when the mate ranks first, so FNIR(t) needs the mate's own score, which
the events do not carry yet. Such groups come back without genuine scores
(:class:`~fairwatch.core.score_curves.GroupScores`); once events carry the mate's score, naming its
column here (``GENUINE_SCORE["identification"] = "mate_score"`` and the column in
:data:`SCORE_COLUMNS`) is the whole change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np

from fairwatch.core.layout import GroupKey
from fairwatch.core.score_curves import GroupScores
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.group_expansion import group_expansion_sql
from fairwatch.store.sealed_evidence import STORED, EvidenceTables

__all__ = ["GENUINE_SCORE", "SCORE_COLUMNS", "read_verified_scores", "verified_thresholds"]

# mode -> SQL of a genuine comparison's score over the columns of SCORE_COLUMNS; a mode not named
# here has no genuine score (identification: the mate's score is not in the events yet)
GENUINE_SCORE = {"verification": "score"}
SCORE_COLUMNS = ("score",)  # read from match_events beside event_id
LABELED_READ = "deployment, algorithm, mode, subject_keys, subject_values, truth, weight"


def _joined(tables: EvidenceTables, where: str, extra: Sequence[str] = ()) -> str:
    """Labelled outcomes of the window joined with their events' score columns (and ``extra`` ones)."""
    columns = ", ".join(dict.fromkeys((*SCORE_COLUMNS, *extra)))
    return (f"SELECT {LABELED_READ}, {columns} FROM {tables.labeled} ANY INNER JOIN"
            f" (SELECT event_id, {columns} FROM {tables.events}"
            f"  WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}) AS scored USING (event_id)"
            f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}")


def _genuine_sql() -> str:
    branches = "".join(f"toString(mode) = '{mode}', toFloat64({sql}), " for mode, sql in GENUINE_SCORE.items())
    return f"multiIf(truth = 'impostor', toFloat64(score), {branches}nan)"


def read_verified_scores(store: Store, start: datetime, end: datetime, intersections: Sequence[Sequence[str]] = (),
                         deployment: str | None = None, algorithm: str | None = None,
                         tables: EvidenceTables = STORED) -> dict[GroupKey, GroupScores]:
    """Per group: the scores and weights of its verified impostor and genuine comparisons.

    ``[start, end)`` is in whole buckets (as :class:`~fairwatch.audit.window.Window` gives it), so the
    buckets in it are the events that occurred in it. Groups of a mode without a genuine score
    (:data:`GENUINE_SCORE`) have ``genuine_scores`` None.
    """
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    rows = store.query(
        "SELECT deployment, algorithm, toString(mode) AS mode_name, tupleElement(pair, 1) AS attribute,"
        " tupleElement(pair, 2) AS group_label, toString(truth) AS truth_name, groupArray(judged) AS scores,"
        " groupArray(weight) AS weights"
        f" FROM (SELECT deployment, algorithm, mode, subject_keys, subject_values, truth, weight,"
        f"  {_genuine_sql()} AS judged FROM ({_joined(tables, where)}))"
        f" ARRAY JOIN {group_expansion_sql(intersections)} AS pair"
        " GROUP BY deployment, algorithm, mode_name, attribute, group_label, truth_name", params)
    found: dict[GroupKey, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for *key, truth, scores, weights in rows:
        found.setdefault(GroupKey(*key), {})[truth] = (np.asarray(scores, float), np.asarray(weights, float))
    empty = (np.zeros(0), np.zeros(0))
    out = {}
    for key in sorted(found):
        parts = found[key]
        impostor = parts.get("impostor", empty)
        genuine = parts.get("genuine", empty) if key.mode in GENUINE_SCORE else (None, None)
        out[key] = GroupScores(*impostor, *genuine)
    return out


def verified_thresholds(store: Store, start: datetime, end: datetime, deployment: str | None = None,
                        algorithm: str | None = None, tables: EvidenceTables = STORED) -> dict[tuple, list[float]]:
    """``(deployment, algorithm, mode) ->`` the decision thresholds the verified comparisons of the
    window were decided at, most used first."""
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    rows = store.query(
        "SELECT deployment, algorithm, toString(mode) AS mode_name, threshold, count() AS n"
        f" FROM ({_joined(tables, where, ('threshold',))})"
        " GROUP BY deployment, algorithm, mode_name, threshold ORDER BY deployment, algorithm, mode_name, n DESC,"
        " threshold", params)
    out: dict[tuple, list[float]] = {}
    for deployment_, algorithm_, mode, threshold, _ in rows:
        out.setdefault((deployment_, algorithm_, mode), []).append(float(threshold))
    return out
