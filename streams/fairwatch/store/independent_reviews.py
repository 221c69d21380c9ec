"""Agreement between independent reviews and the verdicts that count: the reviewers' error."""

from __future__ import annotations

from datetime import datetime

from fairwatch.core.misclassification import ReviewerError
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter

__all__ = ["read_review_agreement"]


def read_review_agreement(store: Store, start: datetime, end: datetime, deployment: str | None = None,
                          algorithm: str | None = None) -> dict[tuple[str, str, str], tuple[ReviewerError, ReviewerError]]:
    """Per deployment x algorithm x mode, the independent reviews of the labelled events in
    [start, end) (event time) paired with each event's verdict that counts, for the matches and
    for the non-matches: pairs and disagreements. One review per event (any one, if several)."""
    where, params = scope_filter(deployment, algorithm)
    params.update(start=start, end=end)
    rows = store.query(
        "SELECT deployment, algorithm, toString(mode), toString(decision), count(),"
        " sum(toString(truth) != toString(second_truth)) FROM labeled_outcomes FINAL"
        " ANY INNER JOIN (SELECT event_id, truth AS second_truth FROM independent_reviews FINAL) AS r USING (event_id)"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}"
        " GROUP BY deployment, algorithm, mode, decision", params)
    found: dict[tuple[str, str, str], dict[str, ReviewerError]] = {}
    for dep, algo, mode, decision, pairs, disagreements in rows:
        found.setdefault((dep, algo, mode), {})[decision] = ReviewerError(int(pairs), int(disagreements))
    none = ReviewerError(0, 0)
    return {scope: (by.get("match", none), by.get("non_match", none)) for scope, by in found.items()}
