"""The canonical bytes and leaf hashes the server computes in SQL equal those Python computes from
the stored columns (fairwatch.contracts.canonical), for every evidence row of every kind, on
chDB and on ClickHouse 18.16; and the rows the sources read are exactly the stored rows."""

import hashlib
import json

import pytest

from fairwatch.contracts.canonical import match_event_bytes, verified_outcome_bytes
from fairwatch.contracts.records import PRIMARY, parse_match_event, parse_verified_outcome
from fairwatch.store.auditlog import append_records
from fairwatch.store.evidence import SOURCES
from fairwatch.stream.replay import replay

EVENTS = [
    {"event_id": "e-1", "occurred_at": "2026-03-01T12:00:00.000001+02:00", "deployment": "gate-a", "algorithm": "v1",
     "mode": "verification", "score": -0.0, "threshold": 1e-300, "decision": "match",
     "subject": {"sex": "F", "race": "Black"}, "reference": {"sex": "M"},
     "context": {"camera": "n\u00e9 \"7\"", "z": [1, 2.5]}, "cluster_id": "0123456789abcdef"},
    {"event_id": "e-2,\"x\\", "occurred_at": "2026-03-01T12:00:01Z", "deployment": "gate-a", "algorithm": "v1",
     "mode": "identification", "score": 0.30000000000000004, "threshold": 5, "decision": "non_match",
     "subject": {"age": "50+"}},
    {"event_id": "s-1", "occurred_at": "2026-03-01T12:00:02Z", "deployment": "gate-a", "algorithm": "v1",
     "mode": "identification", "score": 0.5, "threshold": 0.25, "decision": "match", "subject": {"sex": "F"},
     "candidates": [{"rank": 1, "score": 0.5, "candidate_id": "face:1,\"x", "groups": {"sex": "F", "race": "n\u00e9"}},
                    {"rank": 2, "score": -0.0, "candidate_id": "face-2"}],
     "list_length": 4, "gallery_size": 0},
    {"event_id": "s-2", "occurred_at": "2026-03-01T12:00:03Z", "deployment": "gate-a", "algorithm": "v1",
     "mode": "identification", "score": 0.1, "threshold": 0.25, "decision": "non_match", "subject": {"sex": "M"},
     "candidates": []},
    # naming their use: after no list, and after a list
    {"event_id": "u-1", "occurred_at": "2026-03-01T12:00:04Z", "deployment": "gate-a", "algorithm": "v1",
     "mode": "verification", "score": 0.5, "threshold": 0.25, "decision": "match", "subject": {"sex": "F"},
     "use_id": "use:1,\"x"},
    {"event_id": "u-2", "occurred_at": "2026-03-01T12:00:05Z", "deployment": "gate-a", "algorithm": "v1",
     "mode": "identification", "score": 0.1, "threshold": 0.25, "decision": "non_match", "subject": {"sex": "M"},
     "candidates": [], "use_id": "use-2"},
]
OUTCOMES = [
    {"event_id": "e-1", "verified_at": "2026-03-02T00:00:00Z", "truth": "impostor", "reviewer": "r-1", "revision": 0,
     "inclusion_prob": 0.1},
    {"event_id": "e-1", "verified_at": "2026-03-03T00:00:00Z", "truth": "genuine", "reviewer": "r-2", "revision": 1,
     "inclusion_prob": 0.1},
    {"event_id": "e-1", "verified_at": "2026-03-02T01:00:00Z", "truth": "genuine", "reviewer": "r-3", "revision": 0,
     "inclusion_prob": 1.0, "review": "independent"},
    {"event_id": "s-1", "verified_at": "2026-03-02T00:00:00Z", "truth": "genuine", "reviewer": "r-1", "revision": 0,
     "inclusion_prob": 0.5, "mate_rank": 2},
    {"event_id": "s-2", "verified_at": "2026-03-02T00:00:00Z", "truth": "genuine", "reviewer": "r-1", "revision": 0,
     "inclusion_prob": 0.5},
    # who verified and whether action was taken: with and without a mate_rank, repeats kept, action alone
    {"event_id": "s-1", "verified_at": "2026-03-02T02:00:00Z", "truth": "genuine", "reviewer": "r-1", "revision": 1,
     "inclusion_prob": 0.5, "mate_rank": 1, "verifiers": ["r-1", "v:9", "r-1"], "action_taken": True},
    {"event_id": "s-2", "verified_at": "2026-03-02T02:00:00Z", "truth": "impostor", "reviewer": "r-1", "revision": 1,
     "inclusion_prob": 0.5, "action_taken": False},
    {"event_id": "e-2,\"x\\", "verified_at": "2026-03-02T02:00:00Z", "truth": "genuine", "reviewer": "r-1",
     "revision": 0, "inclusion_prob": 1, "verifiers": ["v-1;2"]},
]


@pytest.fixture
def loaded(migrated_store, tmp_path):
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS) + "not json\n")
    outcomes.write_text("".join(json.dumps(o) + "\n" for o in OUTCOMES))
    replay(migrated_store, events, outcomes)
    append_records(migrated_store, "snapshot", [{"deployment": "gate-a", "fmr": 0.25, "note": "\u00e9"}])
    migrated_store.insert("signed_input", SIGNED_COLUMNS, [SIGNED_ROW])
    return migrated_store


SIGNED_COLUMNS = ("deployment", "source_topic", "kafka_partition", "kafka_offset", "kind", "key_id", "signed_at",
                  "kafka_timestamp", "signature_b64", "value_b64", "records", "ingested_at")
SIGNED_ROW = ("gate-a", "fairwatch.match-events", 3, 41, "match_event", "site-a+0123abcd", 1772366400, 1772366400123,
              "c2lnbmF0dXJl", "eyJldmVudF9pZCI6ICJlLTEifQ==", 1, 1772366401)


def _sent(source) -> dict[str, bytes]:
    """The oracle: canonical bytes of what the site sent, from the parsed input records."""
    if source.kind == "match_event":
        return {e["event_id"]: match_event_bytes(parse_match_event(e)) for e in EVENTS}
    outcomes = [parse_verified_outcome(o) for o in OUTCOMES]
    if source.kind == "verified_outcome":
        return {f"{o.event_id} {o.revision}": verified_outcome_bytes(o) for o in outcomes if o.review == PRIMARY}
    return {f"{o.event_id} {o.reviewer} {int(o.verified_at.timestamp())}": verified_outcome_bytes(o)
            for o in outcomes if o.review != PRIMARY}


@pytest.mark.parametrize("source", SOURCES, ids=[s.kind for s in SOURCES])
def test_sql_and_python_build_the_same_bytes_and_hashes(loaded, source):
    canonical = {row[0]: row[3].encode() for row in loaded.query_values(source.select_canonical())}
    hashes = {row[0]: row[3] for row in loaded.query_values(source.select())}
    assert canonical, f"no {source.kind} row was stored"
    if source.kind in ("dead_letter", "audit_record", "signed_input"):  # no float: the stored columns are exact
        expected = {row[0]: source.canonical(*row[3:]) for row in loaded.query_values(source.select_columns())}
    else:  # JSON reads -0.0 back as 0: compare with the records as sent instead
        expected = _sent(source)
    assert canonical == expected
    assert hashes == {key: hashlib.sha256(b"\x00" + data).hexdigest() for key, data in expected.items()}


def test_the_sources_read_every_stored_row_once(loaded):
    counts = {source.kind: len(loaded.query_values(source.select())) for source in SOURCES}
    assert counts == {"match_event": len(EVENTS), "verified_outcome": 7, "independent_review": 1, "dead_letter": 1,
                      "audit_record": 1, "signed_input": 1}
    logs = {row[1] for source in SOURCES for row in loaded.query_values(source.select())}
    assert logs == {"gate-a", ""}  # the dead letter names no deployment
