"""A signed-input scenario: who sends what, signed how, and what of it must be counted.

Two deployments, ``site-0`` and ``site-1``, both requiring signatures. Each *send* is a small
workload of its own (its own event ids, so that a dead letter tells which send it came from):

=================  ==========================================  =====================================
send               signed with                                 expected
=================  ==========================================  =====================================
``valid``          site-0's key, for site-0                    counted
``valid-site-1``   site-1's key, for site-1 (its own events)   counted
``mixed``          site-0's key; one event names site-1        that event ``deployment_mismatch``,
                                                               the rest counted
``unsigned``       nothing                                     ``unsigned``
``forged``         site-0's key, value changed afterwards      ``bad_signature``
``unknown-key``    a key the keyring does not hold             ``unknown_key``
``expired-key``    site-0's expired key                        ``expired_key``
``revoked-key``    site-0's revoked key                        ``revoked_key``
``other-key``      site-1's key, claiming site-0               ``key_not_for_deployment``
``replayed``       site-1's key, for site-1: new revisions     ``deployment_mismatch`` (sent after
                   of ``valid``'s outcomes (site-0 events)     ``valid``'s events are held)
=================  ==========================================  =====================================

The oracle counts only what must be counted (:func:`counted_workload`), with
:func:`fairwatch.testing.workload.oracle_counts`, which shares nothing with the worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from fairwatch.contracts.keys import SigningKey, generate_key
from fairwatch.contracts.topics import MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.testing.workload import Workload, contrary, make_workload

SITE, OTHER = "site-0", "site-1"
REPLAYED_REVISION = 7


@dataclass
class Send:
    label: str
    workload: Workload
    key: SigningKey | None  # None: unsigned
    deployment: str  # what the signature claims
    expected: str | None  # the reason code of its dead letters; None: counted
    forge: bool = False  # change the value after signing
    # event ids whose event record alone is refused (a record of a signed batch naming another deployment)
    refused_events: set[str] = field(default_factory=set)
    later: bool = False  # sent once the earlier sends are processed


@dataclass
class SignedScenario:
    keys: dict[str, SigningKey]
    keyring_text: str
    sends: list[Send]

    def send(self, label: str) -> Send:
        return next(s for s in self.sends if s.label == label)


def _site_1(workload: Workload) -> Workload:
    for doc in workload.events.values():
        doc["deployment"] = OTHER
    return workload


def _small(n: int, seed: int) -> Workload:
    return make_workload(n, seed=seed, malformed_share=0.0, duplicate_share=0.0, deployments=1)


def signed_scenario(n_events: int, seed: int, now: datetime | None = None) -> SignedScenario:
    """The sends of the table above; ``valid`` holds ``n_events`` events, the others fewer."""
    now = now or datetime.now(timezone.utc)
    keys = {name: generate_key(name) for name in ("site-0-2026", "site-0-2025", "site-0-lost", "site-1-2026",
                                                  "stranger")}
    at = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    day = timedelta(days=1)
    keyring_text = f"""keyring_version: 1
require_signatures: true
deployments:
  {SITE}:
    keys:
      - {{key: "{keys['site-0-2026'].verifier.text()}", not_before: "{at(now - day)}", not_after: "{at(now + day)}"}}
      - {{key: "{keys['site-0-2025'].verifier.text()}", not_before: "{at(now - 400 * day)}", not_after: "{at(now - 2 * day)}"}}
      - {{key: "{keys['site-0-lost'].verifier.text()}", revoked_at: "{at(now - day)}", note: lost}}
  {OTHER}:
    keys:
      - {{key: "{keys['site-1-2026'].verifier.text()}"}}
"""
    small = max(50, n_events // 20)
    valid = _small(n_events, seed)
    mixed = _small(small, seed + 1)
    odd = sorted(mixed.events)[len(mixed.events) // 2]
    mixed.events[odd]["deployment"] = OTHER
    replayed = Workload()
    for event_id, docs in list(valid.outcomes.items())[: small]:
        if event_id in valid.events:
            replayed.outcomes[event_id] = [{**contrary(max(docs, key=lambda d: d["revision"])),
                                            "revision": REPLAYED_REVISION}]
    sends = [
        Send("valid", valid, keys["site-0-2026"], SITE, None),
        Send("valid-site-1", _site_1(_small(small, seed + 2)), keys["site-1-2026"], OTHER, None),
        Send("mixed", mixed, keys["site-0-2026"], SITE, None, refused_events={odd}),
        Send("unsigned", _small(small, seed + 3), None, SITE, "unsigned"),
        Send("forged", _small(small, seed + 4), keys["site-0-2026"], SITE, "bad_signature", forge=True),
        Send("unknown-key", _small(small, seed + 5), keys["stranger"], SITE, "unknown_key"),
        Send("expired-key", _small(small, seed + 6), keys["site-0-2025"], SITE, "expired_key"),
        Send("revoked-key", _small(small, seed + 7), keys["site-0-lost"], SITE, "revoked_key"),
        Send("other-key", _small(small, seed + 8), keys["site-1-2026"], SITE, "key_not_for_deployment"),
        Send("replayed", replayed, keys["site-1-2026"], OTHER, "deployment_mismatch", later=True),
    ]
    return SignedScenario(keys, keyring_text, sends)


def counted_workload(scenario: SignedScenario) -> Workload:
    """Everything that must be counted, as one workload for the oracle."""
    out = Workload()
    for send in scenario.sends:
        if send.expected is not None:
            continue
        for event_id, doc in send.workload.events.items():
            if event_id not in send.refused_events:
                out.events[event_id] = doc
        for event_id, docs in send.workload.outcomes.items():
            out.outcomes.setdefault(event_id, []).extend(docs)
    return out


def records_of(send: Send) -> list[tuple[str, dict]]:
    """(topic kind, record) of a send, events first."""
    return ([(MATCH_EVENTS, doc) for doc in send.workload.events.values()]
            + [(VERIFIED_OUTCOMES, doc) for docs in send.workload.outcomes.values() for doc in docs])


def encoded(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def forge(value: bytes) -> bytes:
    """The value with one record's verdict changed (a decision, a truth, a search's list emptied), as
    an attacker would, keeping the record valid under the contract."""
    envelope = json.loads(value)
    record = envelope["records"][0]
    if "candidates" in record:
        record.update(candidates=[], decision="non_match", score=record["threshold"] - 1)
    elif "decision" in record:
        record["decision"] = "match" if record["decision"] == "non_match" else "non_match"
    else:
        envelope["records"][0] = contrary(record)
    return json.dumps(envelope, separators=(",", ":")).encode()


def scenario_messages(scenario: SignedScenario, partitions: int, max_records: int = 25, seed: int = 0,
                      singles: int = 3) -> tuple[list[tuple], list[tuple]]:
    """The sends as Kafka messages ``(kind, partition, key, value, headers)``, built as the producer
    SDK builds them (:class:`fairwatch.producer.BatchBuilder`, then signed), the earlier sends
    interleaved at random and the later ones after; the first ``singles`` records of each send go
    as single-record messages (signed the same way)."""
    import random

    from fairwatch.contracts.partitioning import partition_for
    from fairwatch.contracts.signing import sign_value
    from fairwatch.producer import BatchBuilder

    kinds = {MATCH_EVENTS: "match_event", VERIFIED_OUTCOMES: "verified_outcome"}
    rng = random.Random(seed)
    early: list[list[tuple]] = []
    later: list[tuple] = []
    for send in scenario.sends:
        builder = BatchBuilder(partitions, max_records=max_records, linger=1e9)
        out = []
        records = records_of(send)
        for n, (kind, doc) in enumerate(records):
            value = encoded(doc)
            if n < singles:
                out.append((kind, partition_for(doc["event_id"], partitions), doc["event_id"].encode(), value))
            else:
                out += [(e.topic, e.partition, e.key, e.value) for e in builder.add(kind, doc["event_id"], value, 0.0)]
        out += [(e.topic, e.partition, e.key, e.value) for e in builder.drain()]
        signed = []
        for kind, partition, key, value in out:
            headers = () if send.key is None else tuple(sign_value(send.key, send.deployment, kinds[kind], value))
            signed.append((kind, partition, key, forge_any(value) if send.forge else value, headers))
        if send.later:
            later += signed
        else:
            early.append(signed)
    mixed: list[tuple] = []
    while any(early):  # interleaved, each send's messages in their order
        queue = rng.choice([q for q in early if q])
        mixed.append(queue.pop(0))
    return mixed, later


def forge_any(value: bytes) -> bytes:
    """:func:`forge` of an envelope or of a single record."""
    doc = json.loads(value)
    if "batch_version" in doc:
        return forge(value)
    return forge(encoded({"batch_version": 1, "records": [doc]}))[len(b'{"batch_version":1,"records":['):-2]
