"""Reads of the verified comparisons' scores, per group: each labelled outcome (the latest revision of
its primary verdict, weight ``1 / inclusion_prob``) with its match event's score.

``labeled_outcomes`` holds one row per verified event, the revision that counts (independent
reviews are stored apart and never enter it); the score is the event's, from ``match_events``. Rows
are those whose event-time bucket is in ``[start, end)``, expanded into the groups they count in as
the sink counts them (:func:`~fairwatch.store.group_expansion.group_expansion_sql`: overall, each
attribute, each intersection the subject has). The tables may be the stored ones or those sealed up
to checkpoints (:mod:`fairwatch.store.sealed_evidence`).

Which score a genuine comparison is judged on depends on the mode (:data:`GENUINE_SCORE`): in
verification the event's score. In identification the event's score is the rank-1 candidate's,
the mate's only when the mate ranks first, so a mated search with its candidate list is judged on
the score of the candidate its verdict names (``candidate_scores[mate_rank]``, the counted
revision's ``mate_rank`` from ``verified_outcomes``); one whose mate was not listed has no score:
it comes back apart (:attr:`~fairwatch.core.score_curves.GroupScores.genuine_missed`, a miss at every
threshold at or above the highest threshold those lists were cut at, ``missed_cut``). A search
without a list keeps the older reading the counts keep: its score stands for the mate's.
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

__all__ = ["EVENT_SCORE_MODES", "GENUINE_SCORE", "MATE_SCORE", "SCORE_COLUMNS", "read_verified_scores", "verified_sql",
           "verified_thresholds"]

# The mate's score in the event's candidate list (ranks are 1-based like ClickHouse's arrays); NaN
# when the mate was not listed (or named beyond the list). A search without a list: its own score.
MATE_SCORE = ("if(candidates_listed = 1, if(mate_rank > 0 AND mate_rank <= length(candidate_scores),"
              " candidate_scores[greatest(toUInt64(mate_rank), 1)], nan), score)")
# mode -> SQL of a genuine comparison's score over the columns of SCORE_COLUMNS and the verdict's
# mate_rank; NaN: a genuine comparison without a score (a mate not listed)
GENUINE_SCORE = {"verification": "score", "identification": MATE_SCORE}
SCORE_COLUMNS = ("score", "threshold", "candidates_listed", "candidate_scores")  # read from match_events
# the modes whose genuine comparisons are judged on the event's own score (a read that joins no
# verdict, such as the Disparity board's, can give FNMR(t) for these alone)
EVENT_SCORE_MODES = tuple(mode for mode, sql in GENUINE_SCORE.items() if sql == "score")
LABELED_READ = "deployment, algorithm, mode, subject_keys, subject_values, truth, weight"


def verified_sql(tables: EvidenceTables, where: str, extra: Sequence[str] = ()) -> str:
    """The labelled outcomes of the window (``bucket`` in ``[%(start)s, %(end)s)``) with their events'
    :data:`SCORE_COLUMNS` (and ``extra`` ones) and the counted verdict's ``mate_rank`` (0 without one),
    as a query to select from; ``where``: more conditions on both tables (`` AND ...``).

    Two joins, nested: ClickHouse 18.16 has one JOIN per SELECT."""
    columns = ", ".join(dict.fromkeys((*SCORE_COLUMNS, *extra)))
    scored = (f"SELECT {LABELED_READ}, event_id, revision, {columns} FROM {tables.labeled} ANY INNER JOIN"
              f" (SELECT event_id, {columns} FROM {tables.events}"
              f"  WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}) AS scored USING (event_id)"
              f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}")
    return (f"SELECT {LABELED_READ}, {columns}, mate_rank FROM ({scored}) AS labeled_scored ANY LEFT JOIN"
            f" (SELECT event_id, revision, mate_rank FROM {tables.verdicts} WHERE mate_rank > 0) AS mates"
            " USING (event_id, revision)")


def _genuine_sql() -> str:
    branches = "".join(f"toString(mode) = '{mode}', toFloat64({sql}), " for mode, sql in GENUINE_SCORE.items())
    return f"multiIf(truth = 'impostor', toFloat64(score), {branches}nan)"


def _missed(scores: np.ndarray, weights: np.ndarray, cut: float | None) -> tuple:
    """Genuine scores and weights split into the scored ones and the weights of those without a score,
    with the cut of the latter (None without any)."""
    unscored = np.isnan(scores)
    if not unscored.any():
        return scores, weights, np.zeros(0), None
    return scores[~unscored], weights[~unscored], weights[unscored], float(cut)


def read_verified_scores(store: Store, start: datetime, end: datetime, intersections: Sequence[Sequence[str]] = (),
                         deployment: str | None = None, algorithm: str | None = None,
                         tables: EvidenceTables = STORED) -> dict[GroupKey, GroupScores]:
    """Per group: the scores and weights of its verified impostor and genuine comparisons.

    ``[start, end)`` is in whole buckets (as :class:`~fairwatch.audit.window.Window` gives it), so the
    buckets in it are the events that occurred in it. Groups of a mode without a genuine score
    (:data:`GENUINE_SCORE`) have ``genuine_scores`` None; mated searches whose mate was not listed
    are in ``genuine_missed`` with ``missed_cut`` the highest threshold of their events.
    """
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    rows = store.query(
        "SELECT deployment, algorithm, toString(mode) AS mode_name, tupleElement(pair, 1) AS attribute,"
        " tupleElement(pair, 2) AS group_label, toString(truth) AS truth_name, groupArray(judged) AS scores,"
        " groupArray(weight) AS weights, max(if(isNaN(judged), threshold, -inf)) AS cut"
        f" FROM (SELECT deployment, algorithm, mode, subject_keys, subject_values, truth, weight, threshold,"
        f"  {_genuine_sql()} AS judged FROM ({verified_sql(tables, where)}))"
        f" ARRAY JOIN {group_expansion_sql(intersections)} AS pair"
        " GROUP BY deployment, algorithm, mode_name, attribute, group_label, truth_name", params)
    found: dict[GroupKey, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for *key, truth, scores, weights, cut in rows:
        scores, weights = np.asarray(scores, float), np.asarray(weights, float)
        order = np.lexsort((weights, scores))  # the rows' order from the store varies (parts, threads, shards)
        found.setdefault(GroupKey(*key), {})[truth] = (scores[order], weights[order], cut)
    empty = (np.zeros(0), np.zeros(0), None)
    out = {}
    for key in sorted(found):
        parts = found[key]
        impostor = parts.get("impostor", empty)[:2]
        genuine = _missed(*parts.get("genuine", empty)) if key.mode in GENUINE_SCORE else (None, None, None, None)
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
        f" FROM ({verified_sql(tables, where)})"
        " GROUP BY deployment, algorithm, mode_name, threshold ORDER BY deployment, algorithm, mode_name, n DESC,"
        " threshold", params)
    out: dict[tuple, list[float]] = {}
    for deployment_, algorithm_, mode, threshold, _ in rows:
        out.setdefault((deployment_, algorithm_, mode), []).append(float(threshold))
    return out
