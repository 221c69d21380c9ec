"""Label maturity: whether a window's verified outcomes are final, or may still be corrected.

Reviewers get verdicts wrong and correct them later (a higher ``revision`` replaces the earlier
verdict). Until the corrections of a window's events have arrived, its rates are those of first
verdicts, and with many more impostor than genuine comparisons a few wrong verdicts move the
FMR a lot (the default simulated scenario: about 7x the corrected FMR). So every window says
whether its labels are mature.

A label is final ``delay`` after its event. The delay is the policy's ``label_maturity`` when it
gives one; otherwise it is derived from the store: the larger of the 99th percentiles of the
delays from event to first verdict and from event to correction (revision >= 1) over the
outcomes in scope whose events occurred in the :data:`LOOKBACK` before the window's end (exact
quantiles). With no correction observed, only first verdicts count; with no outcome at all, no
delay is known and no window is mature. Corrections still to come are not observed yet (they are
right-censored), so for windows close to the present the observed delay can be too short: a
policy that must be sure sets ``label_maturity``. ``as_of`` is the latest ``verified_at`` of the
outcomes of labelled events in scope, never later than the clock (a verdict dated in the future,
or one of another deployment, does not make a window mature); events before ``as_of - delay``
have mature labels, and a window is mature when it ends by then.

Statuses assume final labels that arrived in an order unrelated to decision and truth
(:mod:`fairwatch.core.estimates`); an immature window breaks both (matches are often reviewed
before the sampled non-matches, and first verdicts are not final), so its statuses are
provisional, and the CLI and the report say so.

Reviewer error: corrections show how often first verdicts were wrong (``revised`` of
``outcomes`` in the window). The error of final verdicts is measured only where independent
reviews exist (:mod:`fairwatch.store.independent_reviews`: the counts are in ``labels``, the
corrected rates beside the group rows); without them, final labels are assumed right, and the
text says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from fairwatch.audit.window import Window
from fairwatch.contracts.records import format_timestamp
from fairwatch.core.config import VERDICT_CLOCK_SKEW
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.independent_reviews import ReviewAgreement
from fairwatch.store.sealed_evidence import STORED, EvidenceTables

QUANTILE = 0.99
LOOKBACK = timedelta(days=90)
MAX_MATURITY_SECONDS = 3650 * 86_400  # ten years: longer is a typo
SOURCES = ("policy", "observed", "unknown")


@dataclass(frozen=True, slots=True)
class LabelMaturity:
    """How final a window's labels are; :meth:`to_dict` is the ``labels`` object of ``fairwatch metrics --json``."""

    delay_seconds: int | None
    source: str  # one of SOURCES
    as_of: datetime | None
    first_verdict_p99_seconds: int | None
    correction_p99_seconds: int | None
    corrections_observed: int
    outcomes: int  # labelled outcomes of the window's events
    revised: int  # of which the verdict counted is a correction

    @property
    def mature_before(self) -> datetime | None:
        """Events before this have final labels."""
        if self.delay_seconds is None or self.as_of is None:
            return None
        return self.as_of - timedelta(seconds=self.delay_seconds)

    def is_mature(self, window: Window) -> bool:
        return self.mature_before is not None and window.end <= self.mature_before

    def to_dict(self, window: Window, reviews: Iterable[ReviewAgreement] = ()) -> dict[str, Any]:
        """The ``labels`` object; ``reviews``: the window's independent reviews, per scope."""
        pairs = [review for agreement in reviews for review in (agreement.matches, agreement.non_matches)]
        independent = sum(review.pairs for review in pairs)

        def stamp(value: datetime | None) -> str | None:
            return None if value is None else format_timestamp(value)

        return {
            "mature": self.is_mature(window),
            "maturity_seconds": self.delay_seconds,
            "maturity_source": self.source,
            "as_of": stamp(self.as_of),
            "mature_before": stamp(self.mature_before),
            "first_verdict_p99_seconds": self.first_verdict_p99_seconds,
            "correction_p99_seconds": self.correction_p99_seconds,
            "corrections_observed": self.corrections_observed,
            "outcomes": self.outcomes,
            "revised": self.revised,
            "double_review": independent > 0,
            "independent_reviews": independent,
            "disagreements": sum(review.disagreements for review in pairs),
        }


def _p99(store: Store, corrections: bool, where: str, params: dict, tables: EvidenceTables) -> tuple[int, int | None]:
    # delay from each labelled event (labeled_outcomes: its event time and the revision counted) to
    # its first verdict, or to the correction counted (revision >= 1), in verified_outcomes
    if corrections:
        verdicts, using, which = "SELECT event_id, revision, verified_at", "event_id, revision", " AND revision > 0"
    else:
        verdicts, using, which = "SELECT event_id, verified_at", "event_id", ""
    first = "" if corrections else " AND revision = 0"
    (count, quantile), = store.query(
        f"SELECT count(), quantileExact({QUANTILE})(delay) FROM ("
        f" SELECT toInt64(v.verified_at) - toInt64(occurred_at) AS delay FROM {tables.labeled}"
        f" ANY INNER JOIN ({verdicts} FROM {tables.verdicts} WHERE verified_at >= %(verdicts_since)s{first})"
        f" AS v USING ({using})"
        f" WHERE bucket >= %(since)s AND bucket < %(end)s{which}{where})", params)
    return int(count), (int(quantile) if count else None)


def label_maturity(store: Store, window: Window, deployment: str | None = None, algorithm: str | None = None,
                   policy_seconds: int | None = None, now: datetime | None = None, *,
                   tables: EvidenceTables = STORED) -> LabelMaturity:
    """The label maturity of ``window`` in the scope of ``deployment`` / ``algorithm`` (module
    docstring); ``now`` is the clock (default: the system's); ``tables``: the stored ones, or those
    as of a checkpoint (:mod:`fairwatch.store.sealed_evidence`)."""
    if policy_seconds is not None and not 0 <= policy_seconds <= MAX_MATURITY_SECONDS:
        raise ValueError(f"label maturity must be between 0 s and 3650 days, got {policy_seconds} s")
    where, params = scope_filter(deployment, algorithm)
    since = window.end - LOOKBACK
    params.update(tables.params, since=since, verdicts_since=since - VERDICT_CLOCK_SKEW, start=window.start, end=window.end)
    firsts, first_p99 = _p99(store, False, where, params, tables)
    corrections, correction_p99 = _p99(store, True, where, params, tables)
    (labelled, latest), = store.query(
        f"SELECT count(), max(verified_at) FROM {tables.verdicts} WHERE event_id IN"
        f" (SELECT event_id FROM {tables.labeled} WHERE 1 = 1{where})", params)
    clock = now or datetime.now(timezone.utc)
    as_of = min(_utc(latest), clock) if labelled else None
    (outcomes, revised), = store.query(
        f"SELECT count(), sum(revision > 0) FROM {tables.labeled}"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}", params)
    if policy_seconds is not None:
        delay, source = policy_seconds, "policy"
    elif firsts or corrections:
        delay, source = max(v for v in (first_p99, correction_p99) if v is not None), "observed"
    else:
        delay, source = None, "unknown"
    return LabelMaturity(delay, source, as_of, first_p99, correction_p99, corrections, int(outcomes),
                         int(revised or 0))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def describe(labels: dict[str, Any]) -> str:
    """The ``labels`` object of a metrics document in words, for the CLI and the report."""
    if labels["maturity_seconds"] is None or labels["as_of"] is None:
        why = "no verified outcome in scope" if labels["as_of"] is None else "no delay observed in the lookback"
        return (f"Label maturity unknown: {why}, so no window can be called mature, and statuses are"
                " provisional.")

    def hours(seconds: int | None) -> str:
        return "-" if seconds is None else f"{seconds / 3600:.3g} h"

    if labels["maturity_source"] == "policy":
        source = "set by the policy"
    else:
        source = (f"observed: 99th percentile of the delays to first verdicts ({hours(labels['first_verdict_p99_seconds'])})"
                  f" and to corrections ({hours(labels['correction_p99_seconds'])},"
                  f" {labels['corrections_observed']} seen)")
    head = (f"Labels {'mature' if labels['mature'] else 'NOT MATURE'}: a verdict is taken as final"
            f" {hours(labels['maturity_seconds'])} after its event ({source}). Outcomes have arrived up to"
            f" {labels['as_of']}, so events before {labels['mature_before']} have final labels")
    head += "; this window ends by then." if labels["mature"] else (
        "; later events of this window may still have their verdicts corrected, so its rates may change and"
        " its statuses are provisional.")
    text = f"{head} {labels['revised']} of the window's {labels['outcomes']} verdicts are corrections of a first verdict."
    if labels.get("double_review"):
        return (f"{text} {labels['independent_reviews']} independent reviews disagree with the first verdict"
                f" in {labels['disagreements']} cases: the rates allowing for that reviewer error, with intervals"
                " that carry it, are listed apart (corrected).")
    return (f"{text} No independent review is recorded, so the error of final verdicts is not estimated:"
            " the rates assume final labels are right.")
