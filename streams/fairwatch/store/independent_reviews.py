"""Agreement between independent reviews and first verdicts: the error of one blind verdict."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from fairwatch.core.config import VERDICT_CLOCK_SKEW
from fairwatch.core.misclassification import ReviewerError
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.sealed_evidence import STORED, EvidenceTables

__all__ = ["ReviewAgreement", "read_review_agreement"]

class ReviewAgreement(NamedTuple):
    """Independent reviews of one deployment x algorithm x mode: pairs with the first verdict and
    disagreements, among matches and among non-matches; ``corrected_labels``: some verdicts that
    count in the window are corrections (revision >= 1), not first verdicts."""

    matches: ReviewerError
    non_matches: ReviewerError
    corrected_labels: bool


def read_review_agreement(store: Store, start: datetime, end: datetime, deployment: str | None = None,
                          algorithm: str | None = None, *, tables: EvidenceTables = STORED
                          ) -> dict[tuple[str, str, str], ReviewAgreement]:
    """Per deployment x algorithm x mode, every reviewer's independent review of the labelled
    events in [start, end) (event time; a reviewer's later review of an event replaces their
    earlier one), paired with the event's first verdict (revision 0): both are single blind
    verdicts, so they disagree with probability ``2 e (1 - e)``. ``tables``: the stored ones, or
    those as of a checkpoint (:mod:`fairwatch.store.sealed_evidence`)."""
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end, reviews_since=start - VERDICT_CLOCK_SKEW)
    rows = store.query(
        "SELECT deployment, algorithm, mode, decision, count(), sum(first_truth != second_truth) FROM ("
        " SELECT event_id, deployment, algorithm, toString(mode) AS mode, toString(decision) AS decision,"
        f" first_truth FROM {tables.labeled}"
        f" ANY INNER JOIN (SELECT event_id, toString(truth) AS first_truth FROM {tables.verdicts}"
        " WHERE revision = 0) AS f USING (event_id)"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}) AS l"
        " ALL INNER JOIN (SELECT event_id, argMax(toString(truth), verified_at) AS second_truth"
        f" FROM {tables.reviews} WHERE verified_at >= %(reviews_since)s"
        " GROUP BY event_id, reviewer) AS r USING (event_id)"
        " GROUP BY deployment, algorithm, mode, decision", params)
    corrected = {(d, a, m) for d, a, m, n in store.query(
        f"SELECT deployment, algorithm, toString(mode), count() FROM {tables.labeled}"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s AND revision > 0{where}"
        " GROUP BY deployment, algorithm, mode", params) if n}
    found: dict[tuple[str, str, str], dict[str, ReviewerError]] = {}
    for dep, algo, mode, decision, pairs, disagreements in rows:
        found.setdefault((dep, algo, mode), {})[decision] = ReviewerError(int(pairs), int(disagreements))
    none = ReviewerError(0, 0)
    return {scope: ReviewAgreement(by.get("match", none), by.get("non_match", none), scope in corrected)
            for scope, by in found.items()}
