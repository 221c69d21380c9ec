"""Canonical bytes of an evidence row: what a leaf of the evidence log hashes.

The format is chosen so that ClickHouse (18.16 and current) can build the same bytes in SQL and
hash them where the rows are, and Python can rebuild them from a parsed record or a stored row:

- every field is a netstring, ``<byte length>:<bytes>,`` (D. J. Bernstein's format): unambiguous
  whatever the field holds;
- the first field names the row's kind and version (``match_event/v2``);
- integers in decimal; floats as the decimal of their IEEE-754 bit pattern (exact, no formatting
  rules to agree on); absent values (SQL NULL) as ``~``;
- label maps as a netstring of the sorted netstrings of their (key, value) pairs;
- only what the store keeps: match-event times in epoch microseconds, outcome times in epoch
  seconds (ClickHouse's ``DateTime``), an absent ``reference`` as no pairs, an absent ``context``
  as ``{}`` and others as the sink's sorted-key JSON, an absent ``cluster_id`` as ``""``.
  Ingestion metadata (``ingested_at``) is left out, so a retried insert of a row is the same leaf.
- fields added later are appended only when set (an identification search's candidate list, an
  event's ``use_id``, a mated search's ``mate_rank``, a verdict's ``verifiers`` and ``action_taken``), so rows without
  them keep the bytes they were sealed with.

Examples
--------
>>> verified_outcome_row_bytes("e-1", 1767225600, "impostor", "r-7", 2, 0.25)
b'19:verified_outcome/v2,3:e-1,10:1767225600,8:impostor,3:r-7,1:2,19:4598175219545276416,'
"""

from __future__ import annotations

import json
import struct
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from fairwatch.contracts.records import PRIMARY, MatchEvent, VerifiedOutcome

MATCH_EVENT_KIND = "match_event/v2"
VERIFIED_OUTCOME_KIND = "verified_outcome/v2"
REVIEW_KIND = "independent_review/v2"
DEAD_LETTER_KIND = "dead_letter/v2"
AUDIT_RECORD_KIND = "audit_record/v2"
SIGNED_INPUT_KIND = "signed_input/v2"
ABSENT = b"~"

_SORTED = json.JSONEncoder(sort_keys=True)  # the sink's encoder for context: the stored text
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_double = struct.Struct("<d")
_bits = struct.Struct("<Q")


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def _text(value: str | None) -> bytes:
    return ABSENT if value is None else netstring(value.encode())


def _int(value: int) -> bytes:
    return netstring(b"%d" % value)


def _float(value: float) -> bytes:
    return netstring(b"%d" % _bits.unpack(_double.pack(value))[0])


def _pairs(keys: Iterable[str], values: Iterable[str]) -> bytes:
    return netstring(b"".join(sorted(netstring(_text(k) + _text(v)) for k, v in zip(keys, values))))


def epoch_us(t: datetime) -> int:
    """Microseconds since the epoch, exact (no float rounding)."""
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def context_text(context: Mapping[str, Any] | None) -> str:
    """The stored text of an event's context."""
    return _SORTED.encode(context) if context else "{}"


def match_event_row_bytes(
    event_id: str, occurred_at_us: int, deployment: str, algorithm: str, mode: str, score: float,
    threshold: float, decision: str, subject_keys: Iterable[str], subject_values: Iterable[str],
    reference_keys: Iterable[str], reference_values: Iterable[str], context: str, cluster_id: str,
    candidates_listed: int = 0, candidate_ids: Iterable[str] = (), candidate_scores: Iterable[float] = (),
    candidate_groups: Iterable[str] = (), list_length: int = 0, gallery_size: int = -1, use_id: str = "",
) -> bytes:
    """Canonical bytes of a match event from its stored columns; a search's list (stored as
    parallel arrays, groups as sorted-key JSON) is appended when it has one, then its use_id when
    it names one (after a list of three netstrings or none: the two never read alike)."""
    row = b"".join((
        _text(MATCH_EVENT_KIND), _text(event_id), _int(occurred_at_us), _text(deployment), _text(algorithm),
        _text(mode), _float(score), _float(threshold), _text(decision), _pairs(subject_keys, subject_values),
        _pairs(reference_keys, reference_values), _text(context), _text(cluster_id),
    ))
    use = _text(use_id) if use_id else b""
    if not candidates_listed:
        return row + use
    entries = b"".join(_text(i) + _float(s) + _text(g) for i, s, g in zip(candidate_ids, candidate_scores,
                                                                          candidate_groups))
    return (row + netstring(entries) + (_int(list_length) if list_length else ABSENT)
            + (ABSENT if gallery_size < 0 else _int(gallery_size)) + use)


def candidate_groups_text(groups: Mapping[str, str] | None) -> str:
    """The stored text of a candidate's groups: sorted-key JSON, '' when none were given."""
    return _SORTED.encode(groups) if groups else ""


def match_event_bytes(event: MatchEvent) -> bytes:
    """Canonical bytes of a parsed match event (equal to those of its stored row)."""
    reference = event.reference or {}
    candidates = event.candidates or ()
    return match_event_row_bytes(
        event.event_id, epoch_us(event.occurred_at), event.deployment, event.algorithm, event.mode, event.score,
        event.threshold, event.decision, event.subject.keys(), event.subject.values(), reference.keys(),
        reference.values(), context_text(event.context), event.cluster_id or "",
        int(event.candidates is not None), [c.candidate_id for c in candidates], [c.score for c in candidates],
        [candidate_groups_text(c.groups) for c in candidates], event.list_length or 0,
        -1 if event.gallery_size is None else event.gallery_size, event.use_id or "",
    )


def verified_outcome_row_bytes(
    event_id: str, verified_at_s: int, truth: str, reviewer: str, revision: int, inclusion_prob: float,
    mate_rank: int = 0, verifiers: Iterable[str] = (), action_taken: int = -1,
) -> bytes:
    """Canonical bytes of one revision of a verified outcome from its stored columns (a mated
    search's mate_rank appended when it has one; when the verdict names its verifiers or whether
    action was taken, the mate_rank, 0 for none, then the verifiers, a netstring of their
    netstrings in order, and action_taken, -1 not recorded, 0 or 1)."""
    head = b"".join((_text(VERIFIED_OUTCOME_KIND), _text(event_id), _int(verified_at_s), _text(truth),
                     _text(reviewer), _int(revision), _float(inclusion_prob)))
    verifiers = list(verifiers)
    if verifiers or action_taken >= 0:
        return head + _int(mate_rank) + netstring(b"".join(map(_text, verifiers))) + _int(action_taken)
    return head + (_int(mate_rank) if mate_rank else b"")


def review_row_bytes(event_id: str, verified_at_s: int, truth: str, reviewer: str) -> bytes:
    """Canonical bytes of an independent review from its stored columns."""
    return b"".join((_text(REVIEW_KIND), _text(event_id), _int(verified_at_s), _text(truth), _text(reviewer)))


def verified_outcome_bytes(outcome: VerifiedOutcome) -> bytes:
    """Canonical bytes of a parsed outcome; an independent review has its own kind (it is stored
    apart and never counted)."""
    seconds = epoch_us(outcome.verified_at) // 1_000_000
    if outcome.review != PRIMARY:
        return review_row_bytes(outcome.event_id, seconds, outcome.truth, outcome.reviewer)
    return verified_outcome_row_bytes(
        outcome.event_id, seconds, outcome.truth, outcome.reviewer, outcome.revision, outcome.inclusion_prob,
        outcome.mate_rank or 0, outcome.verifiers or (), -1 if outcome.action_taken is None else int(outcome.action_taken),
    )


def dead_letter_row_bytes(source_topic: str, partition: int, offset: int, record_index: int, key_b64: str | None,
                          value_b64: str, reason_code: str, field: str | None, reason: str) -> bytes:
    """Canonical bytes of a dead letter (its rejection time left out: a re-rejection is the same)."""
    return b"".join((_text(DEAD_LETTER_KIND), _text(source_topic), _int(partition), _int(offset), _int(record_index),
                     _text(key_b64), _text(value_b64), _text(reason_code), _text(field), _text(reason)))


def audit_record_row_bytes(chain: str, seq: int, kind: str, recorded_at_s: int, content: str) -> bytes:
    """Canonical bytes of an audit record (an estimate snapshot or an alert transition)."""
    return b"".join((_text(AUDIT_RECORD_KIND), _text(chain), _int(seq), _text(kind), _int(recorded_at_s),
                     _text(content)))


def signed_input_row_bytes(deployment: str, source_topic: str, partition: int, offset: int, kind: str, key_id: str,
                           signed_at_s: int, kafka_timestamp: int, signature_b64: str, value_b64: str,
                           records: int) -> bytes:
    """Canonical bytes of a verified input message as stored (signed_input): its provenance."""
    return b"".join((_text(SIGNED_INPUT_KIND), _text(deployment), _text(source_topic), _int(partition), _int(offset),
                     _text(kind), _text(key_id), _int(signed_at_s), _int(kafka_timestamp), _text(signature_b64),
                     _text(value_b64), _int(records)))


def fields_of(data: bytes) -> list[str | None]:
    """The fields of canonical bytes, read back (nested netstrings stay as their text); a value
    that is not canonical bytes raises ValueError. For showing what a proof is about."""
    fields: list[str | None] = []
    at = 0
    while at < len(data):
        if data[at:at + 1] == ABSENT:
            fields.append(None)
            at += 1
            continue
        colon = data.index(b":", at)
        length = int(data[at:colon])
        end = colon + 1 + length
        if data[end:end + 1] != b",":
            raise ValueError(f"not canonical bytes: no ',' after the field at byte {at}")
        fields.append(data[colon + 1:end].decode())
        at = end + 1
    return fields
