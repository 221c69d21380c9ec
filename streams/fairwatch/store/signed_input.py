"""Provenance of signed input: the ``signed_input`` table (migration 013) and its offline re-check.

The worker writes one row per input message whose signature it verified (the exact bytes, the key
id, the deployment and time it was signed for, the signature, where it came from). Anyone holding
the store and a keyring can then check, without Kafka and without trusting the worker,
:func:`verify_signed_input`:

1. every stored message: its signature verifies with the keyring's key of that id over its bytes,
   and the keyring allows that key for that deployment at that time (a key revoked since, with a
   ``revoked_at`` before the signature, shows here); a message that reached Kafka after its key's
   ``revoked_at`` although it says it was signed before is named too (``arrived_after_revocation``:
   a stolen key can backdate ``signed_at``);
2. every stored evidence row that must be signed (events of a deployment whose keyring entry
   requires signatures, their outcomes and independent reviews, every outcome when the keyring
   says ``outcomes_require_signatures``) equals a record of a verified message, compared by the
   canonical bytes of :mod:`fairwatch.contracts.canonical`: a row inserted or edited behind the
   worker's back is ``row_unbacked`` or ``row_differs``; an outcome signed for another deployment
   than its event's is ``deployment_mismatch`` (the worker checks this only when it holds the event).

Rows of deployments that do not require signatures are compared when a signed record of the same
key exists (``row_differs``), and otherwise not judged. The check reads the rows of the chosen
deployments into memory (about 100 bytes a row).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Sequence

from fairwatch.contracts.canonical import (
    match_event_bytes,
    match_event_row_bytes,
    review_row_bytes,
    verified_outcome_bytes,
    verified_outcome_row_bytes,
)
from fairwatch.contracts.envelopes import decode_message_fully
from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.records import PRIMARY, MatchEvent, Rejection, VerifiedOutcome
from fairwatch.contracts.signing import signed_message, verify_many
from fairwatch.store.clickhouse import Store

SIGNED_INPUT_COLUMNS = (
    "source_topic", "kafka_partition", "kafka_offset", "kind", "deployment", "key_id", "signed_at", "kafka_timestamp",
    "signature_b64", "value_b64", "records", "ingested_at",
)
# the row the batch processor hands the sink: the columns above, but the value as bytes
SIGNED_INPUT_ROW = SIGNED_INPUT_COLUMNS[:9] + ("value", "records", "ingested_at")
_VALUE = SIGNED_INPUT_ROW.index("value")


def signed_input_columns(rows: Sequence[tuple]) -> list[list]:
    """The SIGNED_INPUT_COLUMNS of processor rows (SIGNED_INPUT_ROW), the value base64-encoded here:
    in the sink, not on the worker's event loop."""
    if not rows:
        return [[] for _ in SIGNED_INPUT_COLUMNS]
    columns = [list(column) for column in zip(*rows)]
    columns[_VALUE] = [base64.b64encode(value).decode() for value in columns[_VALUE]]
    return columns


@dataclass(frozen=True)
class StoredMessage:
    """One ``signed_input`` row."""

    deployment: str
    source_topic: str
    kafka_partition: int
    kafka_offset: int
    kind: str
    key_id: str
    signed_at: datetime
    kafka_timestamp: int
    signature_b64: str
    value: bytes
    records: int
    ingested_at: datetime

    @property
    def where(self) -> str:
        return f"{self.source_topic}:{self.kafka_partition}:{self.kafka_offset}"

    @property
    def signed_at_text(self) -> str:
        return self.signed_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def signed_bytes(self) -> bytes:
        """What the signature covers (:func:`fairwatch.contracts.signing.signed_message`)."""
        return signed_message(self.deployment, self.kind, self.signed_at_text, self.value)


def _epoch_utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def read_signed_input(store: Store, deployments: Iterable[str] | None = None) -> list[StoredMessage]:
    """The stored signed messages (of ``deployments``, default all), by deployment, topic,
    partition and offset."""
    where, params = "", {}
    if deployments is not None:
        where, params = " WHERE deployment IN %(deployments)s", {"deployments": tuple(deployments) or ("",)}
    rows = store.query(
        "SELECT deployment, source_topic, kafka_partition, kafka_offset, toString(kind), key_id, toUInt32(signed_at),"
        " kafka_timestamp, signature_b64, value_b64, records, toUInt32(ingested_at) FROM signed_input FINAL"
        f"{where} ORDER BY deployment, source_topic, kafka_partition, kafka_offset", params)
    out = []
    for (deployment, topic, partition, offset, kind, key_id, signed_s, kafka_ts, signature, value_b64, records,
         ingested_s) in rows:
        try:
            value = base64.b64decode(value_b64, validate=True)
        except (binascii.Error, ValueError):
            value = b""  # its signature cannot verify: reported as bad_signature
        out.append(StoredMessage(deployment, topic, int(partition), int(offset), kind, key_id, _epoch_utc(signed_s),
                                 int(kafka_ts), signature, value, int(records), _epoch_utc(ingested_s)))
    return out


@dataclass(frozen=True)
class ProvenanceFinding:
    """Something the re-check found wrong: ``code`` (see the module), where (a stored message as
    ``topic:partition:offset``, or a row as ``table key``) and what."""

    code: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.where}: {self.detail}"


@dataclass
class ProvenanceReport:
    """What :func:`verify_signed_input` checked and found. ``ok`` when nothing was found."""

    messages: int = 0  # stored signed messages checked
    verified: int = 0  # of them, whose signature and key the keyring accepts
    records: int = 0  # records those carry
    rows: int = 0  # stored evidence rows compared with them
    findings: list[ProvenanceFinding] = field(default_factory=list)
    more_findings: int = 0  # found beyond the list's cap

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        return out


class _Findings:
    def __init__(self, report: ProvenanceReport, limit: int):
        self.report, self.limit = report, limit

    def add(self, code: str, where: str, detail: str) -> None:
        if len(self.report.findings) < self.limit:
            self.report.findings.append(ProvenanceFinding(code, where, detail))
        else:
            self.report.more_findings += 1


# Floats are read as their IEEE-754 bits: chDB's JSON writes -0.0 as -0, which reads back as +0.
_BITS = "reinterpretAsUInt64(reinterpretAsString(toFloat64(%s)))"
_bits_of = struct.Struct("<Q")
_double = struct.Struct("<d")


def _float(bits: int) -> float:
    return _double.unpack(_bits_of.pack(int(bits)))[0]


def _digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def verify_signed_input(store: Store, keyring: Keyring, deployments: Iterable[str] | None = None, *,
                        max_findings: int = 1000) -> ProvenanceReport:
    """Re-check the stored signed input and the evidence rows it backs against ``keyring`` (see
    the module); ``deployments`` limits both to some deployments (default: all)."""
    chosen = None if deployments is None else set(deployments)
    report = ProvenanceReport()
    found = _Findings(report, max_findings)
    messages = read_signed_input(store, chosen)
    report.messages = len(messages)
    checks, candidates = [], []
    for message in messages:
        key = keyring.key(message.key_id)
        if key is None:
            found.add("unknown_key", message.where, f"key {message.key_id} is not in the keyring")
            continue
        try:
            signature = base64.b64decode(message.signature_b64, validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        checks.append((key.public_key, message.signed_bytes(), signature if len(signature) == 64 else b"\0" * 64))
        candidates.append(message)
    # key id -> (event id -> digests of the signed versions); outcome keys carry the signer's deployment
    events: dict[str, set[bytes]] = defaultdict(set)
    outcomes: dict[tuple[str, int], dict[bytes, set[str]]] = defaultdict(lambda: defaultdict(set))
    reviews: dict[tuple[str, str], dict[bytes, set[str]]] = defaultdict(lambda: defaultdict(set))
    for message, good in zip(candidates, verify_many(checks)):
        if not good:
            found.add("bad_signature", message.where, f"the signature of key {message.key_id} does not verify over "
                                                      "the stored bytes")
            continue
        rejection = keyring.judge(message.key_id, message.deployment, message.signed_at)
        if rejection is not None:
            found.add(rejection.code.value, message.where, rejection.message)
            continue
        grant = keyring.grants(message.key_id)[message.deployment]
        arrived = (datetime.fromtimestamp(message.kafka_timestamp / 1000, tz=timezone.utc)
                   if message.kafka_timestamp >= 0 else message.ingested_at)
        if grant.revoked_at is not None and arrived >= grant.revoked_at:
            found.add("arrived_after_revocation", message.where,
                      f"signed at {message.signed_at_text} but it reached fairwatch at "
                      f"{arrived.strftime('%Y-%m-%dT%H:%M:%SZ')}, after key {message.key_id} was revoked: a stolen "
                      "key can backdate its signatures")
        report.verified += 1
        _, items = decode_message_fully(message.value, message.kind)
        for item in items:
            record = item.record
            if isinstance(record, Rejection):
                continue
            report.records += 1
            if isinstance(record, MatchEvent):
                if record.deployment == message.deployment:  # another deployment's event backs nothing
                    events[record.event_id].add(_digest(match_event_bytes(record)))
            elif isinstance(record, VerifiedOutcome):
                digest = _digest(verified_outcome_bytes(record))
                if record.review == PRIMARY:
                    outcomes[(record.event_id, record.revision)][digest].add(message.deployment)
                else:
                    reviews[(record.event_id, record.reviewer)][digest].add(message.deployment)
    _check_rows(store, keyring, chosen, events, outcomes, reviews, report, found)
    return report


def _check_rows(store: Store, keyring: Keyring, chosen: set[str] | None, events, outcomes, reviews,
                report: ProvenanceReport, found: _Findings) -> None:
    where, params = "", {}
    if chosen is not None:
        where, params = " WHERE deployment IN %(deployments)s", {"deployments": tuple(chosen) or ("",)}
    deployment_of: dict[str, str] = {}
    for (event_id, seconds, micros, deployment, algorithm, mode, score, threshold, decision, sk, sv, rk, rv, context,
         cluster_id, *search) in store.query(
            f"SELECT event_id, toUInt32(occurred_at), occurred_at_us, deployment, algorithm, toString(mode), {_BITS % 'score'},"
            f" {_BITS % 'threshold'}, toString(decision), subject_keys, subject_values, reference_keys, reference_values, context,"
            f" cluster_id, candidates_listed, candidate_ids, arrayMap(s -> {_BITS % 's'}, candidate_scores),"
            f" candidate_groups, list_length, gallery_size FROM match_events FINAL{where}", params):
        deployment_of[event_id] = deployment
        report.rows += 1
        signed = events.get(event_id)
        if signed is None:
            if keyring.requires(deployment):
                found.add("row_unbacked", f"match_events event_id={event_id}",
                          f"deployment {deployment} requires signed input and no verified message carries this event")
            continue
        listed, ids, score_bits, groups, list_length, gallery_size = search
        digest = _digest(match_event_row_bytes(event_id, int(seconds) * 1_000_000 + int(micros), deployment, algorithm,
                                               mode, _float(score), _float(threshold), decision, sk, sv, rk, rv, context,
                                               cluster_id, int(listed), ids, [_float(b) for b in score_bits], groups,
                                               int(list_length), int(gallery_size)))
        if digest not in signed:
            found.add("row_differs", f"match_events event_id={event_id}",
                      "the stored event differs from every signed version of it")

    def judged(event_id: str) -> tuple[bool, str | None]:
        """(must it be signed, the deployment of its event if stored); None: not among the chosen."""
        deployment = deployment_of.get(event_id)
        if deployment is None and chosen is not None:
            return False, None
        must = keyring.outcomes_require_signatures or (deployment is not None and keyring.requires(deployment))
        return must, deployment

    tables = (
        ("verified_outcomes", "revision", outcomes, lambda r: (r[0], int(r[4])),
         lambda r: verified_outcome_row_bytes(r[0], int(r[1]), r[2], r[3], int(r[4]), _float(r[5]), int(r[6]),
                                              r[7], int(r[8])),
         "SELECT event_id, toUInt32(verified_at), toString(truth), reviewer, revision, "
         f"{_BITS % 'inclusion_prob'}, mate_rank, verifiers, action_taken FROM verified_outcomes FINAL"),
        ("independent_reviews", "reviewer", reviews, lambda r: (r[0], r[3]),
         lambda r: review_row_bytes(r[0], int(r[1]), r[2], r[3]),
         "SELECT event_id, toUInt32(verified_at), toString(truth), reviewer FROM independent_reviews FINAL"),
    )
    for table, second, signed_map, key_of, row_bytes, sql in tables:
        for row in store.query(sql):
            event_id = row[0]
            if chosen is not None and event_id not in deployment_of:
                continue  # an outcome of another deployment's event (or of none stored)
            must, deployment = judged(event_id)
            report.rows += 1
            key = key_of(row)
            label = f"{table} event_id={key[0]} {second}={key[1]}"
            versions = signed_map.get(key)
            if versions is None:
                if must:
                    found.add("row_unbacked", label, "it must be signed and no verified message carries it")
                continue
            signers = versions.get(_digest(row_bytes(row)))
            if signers is None:
                found.add("row_differs", label, "the stored row differs from every signed version of it")
            elif deployment is not None and deployment not in signers:
                found.add("deployment_mismatch", label, f"its event is of deployment {deployment}; it was signed for "
                                                        f"{', '.join(sorted(signers))}")
