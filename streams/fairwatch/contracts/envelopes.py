"""Batch envelopes (schemas/batch.schema.json): many records in one Kafka message, decoded with a rejection per bad record; envelopes whose records are all valid take a fast route (msgspec) that gives the same records."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Union

import msgspec

from fairwatch.contracts.records import (
    CLUSTER_ID_RE,
    FAST_TIMESTAMP_RE,
    KNOWN_LABELS,
    MATCH_EVENT_REQUIRED,
    MAX_CANDIDATES,
    MAX_ID_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    MAX_MESSAGE_BYTES,
    MAX_REVISION,
    VERIFIED_OUTCOME_REQUIRED,
    ContractError,
    MatchEvent,
    RejectCode,
    Rejection,
    VerifiedOutcome,
    fast_name,
    load_json,
    new_label_valid,
    parse_match_event,
    parse_verified_outcome,
    reject,
    type_name,
)

_fromisoformat = datetime.fromisoformat  # bound once: the fast path calls it per record
BATCH_VERSION = 1


MAX_BATCH_RECORDS = 10_000


BATCH_FIELDS = ("batch_version", "bucket", "partitions", "records")


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """What a batch envelope says about itself (schemas/batch.schema.json)."""

    bucket: int  # the partition its producer built it for
    partitions: int  # the partition count the producer assumed


_RECORD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class InputItem:
    """One record of an input message: decoded, or why not, with the bytes dead-letter keeps."""

    index: int | None  # position inside a batch envelope; None for a single-record message
    record: MatchEvent | VerifiedOutcome | Rejection
    # the message's bytes; for a batch record its parsed JSON, or the envelope it is in (fast path)
    source: bytes | Any | ValidBatch

    @property
    def raw(self) -> bytes:
        """The message's bytes; for a batch record, its compact JSON re-encoding (made on demand:
        only dead letters and forwarded records need it)."""
        if isinstance(self.source, bytes):
            return self.source
        if isinstance(self.source, ValidBatch):
            return self.source.record_bytes(self.index)
        return _RECORD_ENCODER.encode(self.source).encode()


PARSERS = {"match_event": parse_match_event, "verified_outcome": parse_verified_outcome}


def _batch_header(obj: dict) -> BatchHeader:
    for name in obj:
        if name not in BATCH_FIELDS:
            raise reject(RejectCode.BAD_BATCH, name, f"batch envelope has no field {name!r}")
    for name in BATCH_FIELDS:
        if name not in obj:
            raise reject(RejectCode.BAD_BATCH, name, f"batch envelope lacks {name!r}")
    version, bucket, partitions, records = (obj[n] for n in BATCH_FIELDS)
    # JSON Schema's integer is mathematical: 3.0 is one, true is not
    bucket, partitions = (int(v) if isinstance(v, float) and v.is_integer() else v for v in (bucket, partitions))
    if version != BATCH_VERSION or isinstance(version, bool):
        raise reject(RejectCode.BAD_BATCH, "batch_version", f"batch_version {version!r} is not supported (only 1)")
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise reject(RejectCode.BAD_BATCH, "partitions", f"partitions must be an integer >= 1, got {partitions!r}")
    if not isinstance(bucket, int) or isinstance(bucket, bool) or not 0 <= bucket < partitions:
        raise reject(RejectCode.BAD_BATCH, "bucket", f"bucket must be an integer in [0, {partitions}), got {bucket!r}")
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_BATCH_RECORDS:
        what = f"{len(records)} records" if isinstance(records, list) else type_name(records)
        raise reject(RejectCode.BAD_BATCH, "records", f"records must be an array of 1 to {MAX_BATCH_RECORDS} records, got {what}")
    return BatchHeader(bucket, partitions)


def decode_message(raw: bytes | str, kind: str) -> tuple[BatchHeader | None, list[InputItem]]:
    """One input message -> its records: a single record, or every record of a batch envelope.

    ``kind`` is ``match_event`` or ``verified_outcome``. A fault in the message as a whole (not
    JSON, a malformed envelope) gives one rejected item with index None; a bad record inside a
    valid envelope gives a rejected item for that record alone.

    >>> header, items = decode_message(b'{"batch_version": 1, "bucket": 0, "partitions": 1, "records": '
    ...     b'[{"event_id": "e1", "verified_at": "2026-01-01T00:00:00Z", "truth": "genuine",'
    ...     b' "reviewer": "r1", "revision": 0, "inclusion_prob": 1}, {"event_id": ""}]}', "verified_outcome")
    >>> header, [(i.index, type(i.record).__name__) for i in items]
    (BatchHeader(bucket=0, partitions=1), [(0, 'VerifiedOutcome'), (1, 'Rejection')])
    """
    if isinstance(raw, bytes):
        fast = decode_valid_batch(raw, kind)
        if fast is not None:
            return fast.header, [InputItem(i, record, fast) for i, record in enumerate(fast.records)]
    return decode_message_fully(raw, kind)


def decode_message_fully(raw: bytes | str, kind: str) -> tuple[BatchHeader | None, list[InputItem]]:
    """:func:`decode_message` without its fast route (for a caller that tried :func:`decode_valid_batch`)."""
    parse = PARSERS[kind]
    try:
        obj = load_json(raw)
        if not (isinstance(obj, dict) and "batch_version" in obj):
            return None, [InputItem(None, parse(obj), raw if isinstance(raw, bytes) else raw.encode())]
        header = _batch_header(obj)
    except ContractError as exc:
        return None, [InputItem(None, exc.rejection, raw if isinstance(raw, bytes) else raw.encode())]
    items = []
    for index, record in enumerate(obj["records"]):
        try:
            items.append(InputItem(index, parse(record), record))
        except ContractError as exc:
            items.append(InputItem(index, exc.rejection, record))
    return header, items


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


_Label = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_LENGTH)]


_Labels = Annotated[dict[str, _Label], msgspec.Meta(min_length=1, max_length=MAX_LABELS)]


_ClusterId = Annotated[str, msgspec.Meta(pattern=f"^{CLUSTER_ID_RE.pattern}$")]


class _EventShape(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event_id: _Id
    occurred_at: str
    deployment: _Id
    algorithm: _Id
    mode: Literal["verification", "identification"]
    score: float
    threshold: float
    decision: Literal["match", "non_match"]
    subject: _Labels
    reference: Union[_Labels, msgspec.UnsetType] = msgspec.UNSET  # null is refused, as by the schema
    context: Union[dict[str, Any], msgspec.UnsetType] = msgspec.UNSET
    cluster_id: Union[_ClusterId, msgspec.UnsetType] = msgspec.UNSET


class _OutcomeShape(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event_id: _Id
    verified_at: str
    truth: Literal["genuine", "impostor"]
    reviewer: _Id
    revision: Annotated[int, msgspec.Meta(ge=0, le=MAX_REVISION)]
    inclusion_prob: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
    # UNSET when absent, so the quote count below knows whether the key was there
    review: Union[Literal["primary", "independent"], msgspec.UnsetType] = msgspec.UNSET
    mate_rank: Union[Annotated[int, msgspec.Meta(ge=1, le=MAX_CANDIDATES)], msgspec.UnsetType] = msgspec.UNSET


class _EventBatchShape(msgspec.Struct, forbid_unknown_fields=True):
    batch_version: Literal[1]
    bucket: int
    partitions: int
    records: Annotated[list[_EventShape], msgspec.Meta(min_length=1, max_length=MAX_BATCH_RECORDS)]


class _OutcomeBatchShape(msgspec.Struct, forbid_unknown_fields=True):
    batch_version: Literal[1]
    bucket: int
    partitions: int
    records: Annotated[list[_OutcomeShape], msgspec.Meta(min_length=1, max_length=MAX_BATCH_RECORDS)]


_BATCH_DECODERS = {"match_event": msgspec.json.Decoder(_EventBatchShape),
                   "verified_outcome": msgspec.json.Decoder(_OutcomeBatchShape)}


_TIMESTAMPS_RE = re.compile(rf"(?:{FAST_TIMESTAMP_RE.pattern}\n)*{FAST_TIMESTAMP_RE.pattern}")


_QUOTES_PER_EVENT = 2 * (len(MATCH_EVENT_REQUIRED) + 6)  # its keys and its six string values


_QUOTES_PER_OUTCOME = 2 * (len(VERIFIED_OUTCOME_REQUIRED) + 4)


_QUOTES_PER_ENVELOPE = 2 * len(BATCH_FIELDS)


@dataclass(frozen=True, slots=True)
class ValidBatch:
    """A batch envelope whose records are all valid (see :func:`decode_valid_batch`)."""

    header: BatchHeader
    records: list  # list[MatchEvent] or list[VerifiedOutcome], in envelope order
    raw: bytes

    def record_bytes(self, index: int) -> bytes:
        """Record ``index`` re-encoded as compact JSON, as the full path gives it (dead letters, re-routing)."""
        return _RECORD_ENCODER.encode(json.loads(self.raw)["records"][index]).encode()


def _quotes_in(value: Any) -> int:
    """Quote characters a JSON value without escapes is written with: 2 per key and per string."""
    if type(value) is str:
        return 2
    if type(value) is dict:
        return sum(2 + _quotes_in(item) for item in value.values())
    if type(value) is list:
        return sum(_quotes_in(item) for item in value)
    return 0


def _ids_valid(*columns: list[str]) -> bool:
    """Every string is printable ASCII without spaces (lengths were checked by msgspec)."""
    text = "".join(["".join(column) for column in columns])
    return text.isascii() and text.isprintable() and " " not in text


def _label_maps_valid(maps: list[dict[str, str]]) -> bool:
    pairs = set().union(*[m.items() for m in maps])
    return all(map(new_label_valid, pairs - KNOWN_LABELS.keys()))


def _timestamps(texts: list[str]) -> list[datetime] | None:
    if not _TIMESTAMPS_RE.fullmatch("\n".join(texts)):
        return None
    try:
        return list(map(_fromisoformat, texts))
    except ValueError:  # not a calendar date
        return None


def decode_valid_batch(raw: bytes, kind: str) -> ValidBatch | None:
    """A batch envelope of ``kind`` records that are all certainly valid, decoded at C speed; None
    for anything else (a single record, any fault, escapes in strings): those take the full path.

    Gives the same records the full path gives (tests/test_contracts.py holds them together).
    """
    if len(raw) > MAX_MESSAGE_BYTES or b"\\" in raw:  # without escapes, every quote delimits a string
        return None
    try:
        shape = _BATCH_DECODERS[kind].decode(raw)
    except (msgspec.DecodeError, ValueError):  # ValueError: not UTF-8
        return None
    if not 0 <= shape.bucket < shape.partitions:
        return None
    records = shape.records
    ids = [r.event_id for r in records]
    unset = msgspec.UNSET
    if kind == "match_event":
        subjects = [r.subject for r in records]
        expected = _QUOTES_PER_EVENT * len(records) + 4 * sum(map(len, subjects))
        references = [r.reference for r in records]
        contexts = [r.context for r in records]
        maps = subjects
        extras = [r for r in references if r is not unset]
        if extras:
            expected += sum(2 + 4 * len(r) for r in extras)
            maps = subjects + extras
        expected += sum(2 + _quotes_in(c) for c in contexts if c is not unset)
        expected += 4 * sum(r.cluster_id is not unset for r in records)  # key and value
        times = _timestamps([r.occurred_at for r in records])
        deployments = [r.deployment for r in records]
        algorithms = [r.algorithm for r in records]
        if (raw.count(b'"') != expected + _QUOTES_PER_ENVELOPE or times is None
                or not _ids_valid(ids) or not all(map(fast_name, {*deployments, *algorithms}))
                or not _label_maps_valid(maps)):
            return None
    else:
        times = _timestamps([r.verified_at for r in records])
        reviewers = [r.reviewer for r in records]
        reviews = sum(r.review is not msgspec.UNSET for r in records)  # 4 more quotes each: key and value
        mates = [r.truth for r in records if r.mate_rank is not msgspec.UNSET]  # 2 more quotes each: the key
        if (raw.count(b'"') != _QUOTES_PER_OUTCOME * len(records) + 4 * reviews + 2 * len(mates)
                + _QUOTES_PER_ENVELOPE or times is None or "impostor" in mates  # bad_mate: the full path names it
                or not _ids_valid(ids) or not all(map(fast_name, set(reviewers)))):
            return None
    return ValidBatch(BatchHeader(shape.bucket, shape.partitions), _records(kind, records, times), raw)


def records_of_valid_batch(raw: bytes, kind: str) -> list:
    """The records of an envelope :func:`decode_valid_batch` accepted (the very bytes), without
    checking them again: for the live worker's sink process, which writes what the worker decoded."""
    records = _BATCH_DECODERS[kind].decode(raw).records
    texts = [r.occurred_at for r in records] if kind == "match_event" else [r.verified_at for r in records]
    return _records(kind, records, list(map(_fromisoformat, texts)))


def shapes_of_valid_batch(raw: bytes, kind: str) -> list:
    """The records of an envelope :func:`decode_valid_batch` accepted, as decoded (timestamps still
    text, optional maps UNSET), without checking them again: for the sink process's columns."""
    return _BATCH_DECODERS[kind].decode(raw).records


def _records(kind: str, shapes: list, times: list[datetime]) -> list:
    """MatchEvent / VerifiedOutcome records of decoded shapes and their parsed timestamps."""
    if kind == "match_event":
        unset = msgspec.UNSET
        return [MatchEvent(r.event_id, t, r.deployment, r.algorithm, r.mode, r.score, r.threshold, r.decision,
                           r.subject, None if r.reference is unset else r.reference,
                           None if r.context is unset else r.context,
                           None if r.cluster_id is unset else r.cluster_id) for r, t in zip(shapes, times)]
    unset = msgspec.UNSET
    return [VerifiedOutcome(r.event_id, t, r.truth, r.reviewer, r.revision, r.inclusion_prob,
                            "primary" if r.review is unset else r.review,
                            None if r.mate_rank is unset else r.mate_rank) for r, t in zip(shapes, times)]
