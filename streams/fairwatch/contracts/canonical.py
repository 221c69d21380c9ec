"""Canonical bytes of an evidence record: what a site signs and what a leaf of the evidence log hashes.

The bytes are a compact JSON array (msgspec: shortest round-trip floats, UTF-8, no spaces) whose
first element names the record kind and version, then the record's fields in a fixed order. They
hold exactly what the store keeps, so they can be recomputed from a stored row as well as from a
parsed record:

- times as integers (match events: epoch microseconds; outcomes and reviews: epoch seconds, as
  ClickHouse's ``DateTime`` keeps them);
- label maps as ``[key, value]`` pairs sorted by key (the store keeps two arrays);
- an absent ``reference`` as ``[]``, an absent ``context`` as ``"{}"`` and other contexts as their
  sorted-key JSON text (as the sink stores it), an absent ``cluster_id`` as ``""``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import msgspec

from fairwatch.contracts.records import PRIMARY, MatchEvent, VerifiedOutcome

MATCH_EVENT_KIND = "match_event/v1"
VERIFIED_OUTCOME_KIND = "verified_outcome/v1"
REVIEW_KIND = "independent_review/v1"

_encode = msgspec.json.encode
_SORTED = json.JSONEncoder(sort_keys=True)  # the sink's encoder for context: the stored text
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_us(t: datetime) -> int:
    """Microseconds since the epoch, exact (no float rounding)."""
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _pairs(keys: Iterable[str], values: Iterable[str]) -> list[list[str]]:
    return sorted([k, v] for k, v in zip(keys, values))


def context_text(context: Mapping[str, Any] | None) -> str:
    """The stored text of an event's context."""
    return _SORTED.encode(context) if context else "{}"


def match_event_row_bytes(
    event_id: str, occurred_at_us: int, deployment: str, algorithm: str, mode: str, score: float,
    threshold: float, decision: str, subject_keys: Iterable[str], subject_values: Iterable[str],
    reference_keys: Iterable[str], reference_values: Iterable[str], context: str, cluster_id: str,
) -> bytes:
    """Canonical bytes of a match event from its stored columns."""
    return _encode([
        MATCH_EVENT_KIND, event_id, occurred_at_us, deployment, algorithm, mode, float(score), float(threshold),
        decision, _pairs(subject_keys, subject_values), _pairs(reference_keys, reference_values), context,
        cluster_id,
    ])


def match_event_bytes(event: MatchEvent) -> bytes:
    """Canonical bytes of a parsed match event (equal to those of its stored row)."""
    reference = event.reference or {}
    return match_event_row_bytes(
        event.event_id, epoch_us(event.occurred_at), event.deployment, event.algorithm, event.mode, event.score,
        event.threshold, event.decision, event.subject.keys(), event.subject.values(), reference.keys(),
        reference.values(), context_text(event.context), event.cluster_id or "",
    )


def verified_outcome_row_bytes(
    event_id: str, verified_at_s: int, truth: str, reviewer: str, revision: int, inclusion_prob: float,
) -> bytes:
    """Canonical bytes of one revision of a verified outcome from its stored columns."""
    return _encode([VERIFIED_OUTCOME_KIND, event_id, verified_at_s, truth, reviewer, revision, float(inclusion_prob)])


def review_row_bytes(event_id: str, verified_at_s: int, truth: str, reviewer: str) -> bytes:
    """Canonical bytes of an independent review from its stored columns."""
    return _encode([REVIEW_KIND, event_id, verified_at_s, truth, reviewer])


def verified_outcome_bytes(outcome: VerifiedOutcome) -> bytes:
    """Canonical bytes of a parsed outcome; an independent review has its own kind (it is stored
    apart and never counted)."""
    seconds = epoch_us(outcome.verified_at) // 1_000_000
    if outcome.review != PRIMARY:
        return review_row_bytes(outcome.event_id, seconds, outcome.truth, outcome.reviewer)
    return verified_outcome_row_bytes(
        outcome.event_id, seconds, outcome.truth, outcome.reviewer, outcome.revision, outcome.inclusion_prob,
    )
