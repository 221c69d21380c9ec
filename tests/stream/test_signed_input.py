"""Signed input through the worker's batch step, without Kafka (chDB store): forged, unsigned,
unknown-key, expired-key, revoked-key, other-deployment and replayed-from-another-deployment input
ends in dead-letter with its reason, and the stored counts equal a brute-force recount of only the
valid records (fairwatch.testing.signed, fairwatch.testing.workload.oracle_counts). Then the
offline re-check (fairwatch.store.signed_input) accepts the untouched store and names each kind of
tampering.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from fairwatch.contracts.keyring import parse_keyring
from fairwatch.contracts.signing import FORWARDED_HEADER, sign_value
from fairwatch.core.config import CoreConfig
from fairwatch.core.layout import COLUMNS
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.store.signed_input import read_signed_input, verify_signed_input
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.input_verification import InputVerifier, KeyringFile
from fairwatch.stream.processor import BatchProcessor, RawMessage, ResidentJoins
from fairwatch.stream.replay import replay
from fairwatch.testing.live import assert_counts_equal, stored_counts
from fairwatch.testing.signed import (
    REPLAYED_REVISION,
    counted_workload,
    encoded,
    scenario_messages,
    signed_scenario,
)
from fairwatch.testing.workload import oracle_counts

CONFIG = CoreConfig(intersections=(("sex", "race"),))
PARTITIONS = 4


def as_raw(messages, first_offset: int = 0) -> list[RawMessage]:
    return [RawMessage(kind, f"t.{kind}", partition, first_offset + n, key, value, headers, 1_700_000_000_000 + n)
            for n, (kind, partition, key, value, headers) in enumerate(messages)]


def event_ids_of(value: bytes) -> set[str]:
    doc = json.loads(value)
    return {r["event_id"] for r in doc["records"]} if "batch_version" in doc else {doc["event_id"]}


def expected_letters(scenario) -> dict[str, str]:
    """event id -> the reason its record must be refused with (every record of a refused send,
    the odd event of ``mixed``)."""
    out = {}
    for send in scenario.sends:
        if send.expected is not None:
            out.update(dict.fromkeys(send.workload.events, send.expected))
            out.update(dict.fromkeys(send.workload.outcomes, send.expected))
        out.update(dict.fromkeys(send.refused_events, "deployment_mismatch"))
    return out


def check_letters(scenario, letters: list[tuple[bytes, str]]) -> None:
    """Each dead letter (value, reason) holds refused records only, with their send's reason, and
    every refused record is in one."""
    wanted = expected_letters(scenario)
    seen: Counter = Counter()
    for value, reason in letters:
        for event_id in event_ids_of(value):
            assert wanted.get(event_id) == reason, (event_id, reason)
            seen[event_id] += 1
    assert set(seen) == set(wanted), f"refused records not in dead-letter: {sorted(set(wanted) - set(seen))[:5]}"


@pytest.fixture(scope="module")
def scenario():
    return signed_scenario(1500, seed=71)


@pytest.fixture(scope="module")
def messages(scenario):
    early, later = scenario_messages(scenario, PARTITIONS, seed=71)
    return as_raw(early), as_raw(later, first_offset=len(early))


def load(store, scenario, messages, batch_sizes=(7, 40, 300)) -> list:
    """The messages through the replay-style batch step (state in a dict) into ``store``; the
    later messages after the earlier ones. Returns the dead letters."""
    migrate(store)
    processor = BatchProcessor(CONFIG, verifier=InputVerifier(parse_keyring(scenario.keyring_text)))
    sink = ClickHouseSink(store, CONFIG)
    state: dict[str, bytes] = {}
    rng = random.Random(5)
    letters = []
    for part in messages:
        i = 0
        while i < len(part):
            batch = part[i : i + rng.choice(batch_sizes)]
            result = processor.process(batch, lambda event_id, partition: state.get(event_id))
            sink.write(result.sink)
            for event_id, (_, value) in result.state_changes.items():
                state.pop(event_id, None) if value is None else state.__setitem__(event_id, value)
            letters += result.dead_letters
            i += len(batch)
    return letters


@pytest.fixture
def loaded(scenario, messages, tmp_path):
    store = open_store(f"chdb://{tmp_path}/chdb")  # chDB: one directory open per process at a time
    letters = load(store, scenario, messages)
    yield store, letters
    store.close()


def test_only_valid_signed_records_are_counted_and_each_refusal_has_its_reason(scenario, loaded):
    store, letters = loaded
    assert_counts_equal(stored_counts(store), oracle_counts(counted_workload(scenario)))
    check_letters(scenario, [(letter.record_bytes or letter.message.value, letter.rejection.code.value)
                             for letter in letters])
    reasons = Counter(letter.rejection.code.value for letter in letters)
    assert set(reasons) == {"unsigned", "bad_signature", "unknown_key", "expired_key", "revoked_key",
                            "key_not_for_deployment", "deployment_mismatch"}
    # the store holds the same dead letters, and no row of a refused send
    stored = Counter(code for (code,) in store.query("SELECT reason_code FROM dead_letters FINAL"))
    assert stored == reasons
    refused_events = {e for send in scenario.sends if send.expected for e in send.workload.events}
    refused_events |= scenario.send("mixed").refused_events
    assert refused_events and not {e for (e,) in store.query("SELECT event_id FROM match_events")} & refused_events
    assert store.query("SELECT count() FROM verified_outcomes WHERE revision = %(r)s",
                       {"r": REPLAYED_REVISION}) == [(0,)]


def test_a_replayed_outcome_of_another_deployment_is_refused_record_by_record(scenario, loaded):
    _, letters = loaded
    replayed = [letter for letter in letters if letter.rejection.code.value == "deployment_mismatch"
                and letter.message.kind == "verified-outcomes"]
    assert sum(1 for letter in replayed for _ in event_ids_of(letter.record_bytes or letter.message.value)) \
        == len(scenario.send("replayed").workload.outcomes)
    assert all("site-0" in letter.rejection.message and "site-1" in letter.rejection.message for letter in replayed)
    mixed = [letter for letter in letters if letter.message.kind == "match-events"
             and letter.rejection.code.value == "deployment_mismatch"]
    assert len(mixed) == 1 and mixed[0].record_index is not None  # that record alone, not its batch


def test_provenance_is_stored_for_every_verified_message_and_rechecks_offline(scenario, messages, loaded):
    store, _ = loaded
    stored = read_signed_input(store)
    by_where = {(m.source_topic, m.kafka_partition, m.kafka_offset): m for m in stored}
    keyring = parse_keyring(scenario.keyring_text)
    for raw in messages[0] + messages[1]:
        row = by_where.get((raw.topic, raw.partition, raw.offset))
        if row is not None:
            assert row.value == raw.value and row.kafka_timestamp == raw.timestamp
            assert dict(raw.headers)["fairwatch-signature"].decode() == row.signature_b64
    counted_sends = {"valid", "valid-site-1", "mixed", "replayed"}
    expected = sum(1 for raw in messages[0] + messages[1] if raw.headers
                   and _send_label(scenario, raw) in counted_sends)
    assert len(stored) == expected
    report = verify_signed_input(store, keyring)
    assert report.ok, [str(f) for f in report.findings[:5]]
    assert report.messages == report.verified == expected and report.rows > 1500


def _send_label(scenario, raw: RawMessage) -> str:
    ids = event_ids_of(raw.value)
    for send in scenario.sends:
        if ids & (set(send.workload.events) | set(send.workload.outcomes)):
            if send.label == "valid" and dict(raw.headers).get("fairwatch-key", b"").startswith(b"site-1"):
                continue  # the replayed outcomes share valid's event ids: site-1 signed them
            return send.label
    raise AssertionError(f"no send holds {sorted(ids)[:2]}")


def test_the_offline_recheck_names_each_kind_of_tampering(scenario, loaded):
    store, _ = loaded
    keyring = parse_keyring(scenario.keyring_text)
    assert verify_signed_input(store, keyring).ok
    later = int(time.time()) + 3600
    # 1. an event inserted behind the worker's back, 2. a stored event edited (a newer version wins FINAL)
    (row,) = store.query("SELECT * FROM match_events WHERE deployment = 'site-0' LIMIT 1")
    columns = [c for (c, *_) in store.query("DESCRIBE TABLE match_events")]
    edited = dict(zip(columns, row))
    forged = {**edited, "event_id": "forged-1", "ingested_at": later}
    edited = {**edited, "decision": "match" if edited["decision"] == "non_match" else "non_match", "ingested_at": later}
    store.insert("match_events", columns, [[forged[c] for c in columns], [edited[c] for c in columns]])
    # 3. an outcome revision inserted
    store.insert("verified_outcomes", ["event_id", "verified_at", "truth", "reviewer", "revision", "inclusion_prob",
                                       "ingested_at"],
                 [[edited["event_id"], later, "genuine", "rev-1", 99, 1.0, later]])
    # 4. a stored signed message whose bytes were changed (one of site-1: its events become unbacked too)
    first = next(m for m in read_signed_input(store) if m.deployment == "site-1" and m.kind == "match_event")
    changed = base64.b64encode(first.value.replace(b'"revision":0', b'"revision":1', 1)
                               if b'"revision":0' in first.value else first.value + b" ").decode()
    store.execute("INSERT INTO signed_input SELECT deployment, source_topic, kafka_partition, kafka_offset, kind, key_id,"
                  " signed_at, kafka_timestamp, signature_b64, %(v)s, records, toDateTime(%(t)s) FROM signed_input"
                  " WHERE source_topic = %(s)s AND kafka_partition = %(p)s AND kafka_offset = %(o)s",
                  {"v": changed, "t": later, "s": first.source_topic, "p": first.kafka_partition,
                   "o": first.kafka_offset})
    report = verify_signed_input(store, keyring)
    codes = Counter(f.code for f in report.findings)
    assert codes["row_unbacked"] >= 2 and codes["row_differs"] >= 1 and codes["bad_signature"] == 1, report.findings
    named = {f.where for f in report.findings}
    assert "match_events event_id=forged-1" in named
    assert f"match_events event_id={edited['event_id']}" in named
    assert f"verified_outcomes event_id={edited['event_id']} revision=99" in named
    assert f"{first.source_topic}:{first.kafka_partition}:{first.kafka_offset}" in named
    # 5. the key revoked since, from before it signed: every message it signed is named
    revoked = scenario.keyring_text.replace(
        f'{scenario.keys["site-1-2026"].verifier.text()}"}}',
        f'{scenario.keys["site-1-2026"].verifier.text()}", revoked_at: "2020-01-01T00:00:00Z"}}')
    assert revoked != scenario.keyring_text
    report = verify_signed_input(store, parse_keyring(revoked), deployments=["site-1"])
    assert {f.code for f in report.findings} >= {"revoked_key"}
    assert sum(f.code == "revoked_key" for f in report.findings) == report.messages - 1  # and the changed one


def test_the_live_route_gives_the_same_verdicts_and_counts(scenario, messages):
    """Resident joins, partitions known, verification in a helper process: the same dead letters
    as verifying in place, and the counts of only the valid records."""
    def run(helper: bool):
        verifier = InputVerifier(parse_keyring(scenario.keyring_text), helper=helper, helper_minimum=1)
        processor = BatchProcessor(CONFIG, partitions=PARTITIONS, verifier=verifier)
        resident = ResidentJoins(CONFIG, lambda partition: [])
        letters = []
        for part in messages:
            for i in range(0, len(part), 60):
                result = processor.process(part[i : i + 60], resident=resident)
                assert not result.reroutes  # the SDK's envelopes are on their partition
                letters += [(letter.message.offset, letter.record_index, letter.rejection.code.value)
                            for letter in result.dead_letters]
        verifier.close()
        return sorted(letters, key=str), resident

    in_place, resident = run(False)
    helped, _ = run(True)
    assert in_place == helped and in_place
    cells: dict[tuple, list[float]] = {}
    for partition in range(PARTITIONS):
        for row in resident.counts(partition).rows():
            key = (*row.key, int(row.bucket_start))
            cells[key] = [a + b for a, b in zip(cells.get(key, [0.0] * len(COLUMNS)), row.row.tolist())]
    assert_counts_equal(cells, oracle_counts(counted_workload(scenario)))


def test_a_signed_batch_on_the_wrong_partition_is_sent_on_whole_and_counted_once_there(scenario):
    keyring = parse_keyring(scenario.keyring_text)
    key = scenario.keys["site-0-2026"]
    events = list(scenario.send("valid").workload.events.values())[:40]
    envelope = encoded({"batch_version": 1, "bucket": 0, "partitions": PARTITIONS, "records": events})
    headers = tuple(sign_value(key, "site-0", "match_event", envelope))
    processor = BatchProcessor(CONFIG, partitions=PARTITIONS, verifier=InputVerifier(keyring))
    resident = ResidentJoins(CONFIG, lambda partition: [])
    result = processor.process([RawMessage("match-events", "t.match-events", 0, 10, b"bucket-0", envelope, headers)],
                               resident=resident)
    from fairwatch.contracts.partitioning import partition_for
    homes = Counter(partition_for(e["event_id"], PARTITIONS) for e in events)
    assert sorted(r.partition for r in result.reroutes) == sorted(set(homes) - {0})
    assert all(r.value == envelope and r.headers[:4] == headers and r.headers[4][0] == FORWARDED_HEADER
               for r in result.reroutes)
    assert len(resident.join(0)) == homes[0] and not result.dead_letters
    total = homes[0]
    for n, reroute in enumerate(result.reroutes):  # each copy, as it comes back from Kafka
        copy = processor.process([RawMessage("match-events", reroute.topic, reroute.partition, 100 + n, reroute.key,
                                             reroute.value, reroute.headers)], resident=resident)
        assert not copy.reroutes and not copy.dead_letters  # a copy sends nothing on again
        assert len(resident.join(reroute.partition)) == homes[reroute.partition]
        total += homes[reroute.partition]
    assert total == len(events)


def test_without_a_keyring_or_for_deployments_that_do_not_require_it_nothing_changes(scenario, messages):
    relaxed = parse_keyring("keyring_version: 1\ndeployments: {site-0: {require_signatures: false}}\n")
    for verifier in (None, InputVerifier(relaxed)):
        processor = BatchProcessor(CONFIG, verifier=verifier)
        state: dict[str, bytes] = {}
        unsigned = [m for m in messages[0] if not m.headers]
        result = processor.process(unsigned, lambda event_id, partition: state.get(event_id))
        assert not result.dead_letters and not result.sink.signed
        assert result.paired == sum(1 for e, docs in scenario.send("unsigned").workload.outcomes.items()
                                    if e in scenario.send("unsigned").workload.events)
    # a signature that is present is checked even where none is required
    forged = [m for m in messages[0] if m.headers and _send_label(scenario, m) == "forged"]
    result = BatchProcessor(CONFIG, verifier=InputVerifier(relaxed)).process(forged, lambda e, p: None)
    assert {letter.rejection.code.value for letter in result.dead_letters} == {"unknown_key"}  # relaxed holds no key


def test_file_replay_refuses_lines_of_deployments_that_require_signatures(scenario, tmp_path):
    send = scenario.send("valid")
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    events.write_bytes(b"\n".join(encoded(d) for d in send.workload.events.values()))
    outcomes.write_bytes(b"\n".join(encoded(d) for docs in send.workload.outcomes.values() for d in docs))
    relaxed = parse_keyring("keyring_version: 1\ndeployments: {site-0: {require_signatures: false}}\n")
    for keyring, name in ((parse_keyring(scenario.keyring_text), "strict"), (relaxed, "relaxed")):
        store = open_store(f"chdb://{tmp_path}/{name}")
        try:
            report = replay(store, events, outcomes, CONFIG, keyring=keyring)
        finally:
            store.close()
        if name == "strict":
            assert len(report.rejected) == sum(report.lines.values()) and report.labeled == 0
            assert {reason.split(" ")[0] for _, _, reason in report.rejected} == {"unsigned"}
        else:
            assert not report.rejected and report.labeled > 0


def test_the_worker_reads_the_keyring_again_when_it_changes_and_keeps_a_good_one(scenario, tmp_path, caplog):
    path = tmp_path / "keyring.yaml"
    path.write_text(scenario.keyring_text)
    clock = [0.0]
    source = KeyringFile(path, reload_seconds=10, clock=lambda: clock[0])
    first = source()
    assert first.requires("site-0")
    path.write_text("keyring_version: 1\ndeployments: {site-0: {require_signatures: false}}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert source() is first  # not looked at again before reload_seconds
    clock[0] = 11
    assert not source().requires("site-0")
    path.write_text("keyring_version: [")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    clock[0] = 22
    assert not source().requires("site-0")  # the last good one stays
    assert "cannot be used" in caplog.text


def test_a_key_valid_at_signing_stays_valid_when_the_message_is_read_again_later(scenario):
    """Rules are judged at signed_at, not at reading: a redelivery after the key's window is over
    (a crash, a replay from Kafka) gives the same verdict."""
    key = scenario.keys["site-0-2026"]
    doc = next(iter(scenario.send("valid").workload.events.values()))
    value = encoded(doc)
    signed_at = datetime.now(timezone.utc) - timedelta(hours=1)
    headers = tuple(sign_value(key, "site-0", "match_event", value, signed_at=signed_at))
    keyring = parse_keyring(scenario.keyring_text)
    message = RawMessage("match-events", "t.match-events", 0, 0, None, value, headers)
    for _ in range(2):
        assert InputVerifier(keyring).judge([message], ["match_event"])[0].deployment == "site-0"


def test_a_message_that_reached_kafka_after_its_key_was_revoked_is_named_offline(scenario, tmp_path):
    """A stolen key can backdate signed_at past its revocation; the worker judges at signed_at (the
    same verdict on every re-read), the offline re-check compares the revocation with the arrival."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    key = scenario.keys["site-0-2026"]
    at = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    ring = parse_keyring(f"keyring_version: 1\ndeployments:\n  site-0:\n    keys: [{{key: \"{key.verifier.text()}\", "
                         f"revoked_at: \"{at(now + timedelta(hours=1))}\"}}]\n")
    doc = next(iter(scenario.send("valid").workload.events.values()))
    value = encoded(doc)
    headers = tuple(sign_value(key, "site-0", "match_event", value, signed_at=now - timedelta(hours=1)))
    arrival_ms = int((now + timedelta(hours=2)).timestamp() * 1000)
    store = open_store(f"chdb://{tmp_path}/chdb")
    try:
        migrate(store)
        result = BatchProcessor(CONFIG, verifier=InputVerifier(ring)).process(
            [RawMessage("match-events", "t.match-events", 0, 0, None, value, headers, arrival_ms)], lambda e, p: None)
        assert not result.dead_letters
        ClickHouseSink(store, CONFIG).write(result.sink)
        report = verify_signed_input(store, ring)
    finally:
        store.close()
    assert [f.code for f in report.findings] == ["arrived_after_revocation"] and report.verified == 1


def test_an_outcome_signed_for_another_deployment_is_refused_where_the_join_holds_one_deployment(scenario):
    """A join that has only ever held site-0 events skips the look-up for outcomes signed for
    site-0 (none can mismatch) and still refuses one signed for site-1."""
    send = scenario.send("valid")
    events = [d for d in send.workload.events.values()][:30]
    outcomes = [send.workload.outcomes[d["event_id"]][0] for d in events if d["event_id"] in send.workload.outcomes]
    processor = BatchProcessor(CONFIG, partitions=1, verifier=InputVerifier(parse_keyring(scenario.keyring_text)))
    resident = ResidentJoins(CONFIG, lambda partition: [])

    def message(kind, records, key, deployment, offset):
        value = encoded({"batch_version": 1, "bucket": 0, "partitions": 1, "records": records})
        headers = tuple(sign_value(scenario.keys[key], deployment, KIND_NAMES[kind], value))
        return RawMessage(kind, f"t.{kind}", 0, offset, b"bucket-0", value, headers)

    first = processor.process([message("match-events", events, "site-0-2026", "site-0", 0)], resident=resident)
    assert not first.dead_letters and len(resident.join(0)) == len(events)
    result = processor.process([message("verified-outcomes", outcomes, "site-1-2026", "site-1", 1),
                                message("verified-outcomes", outcomes, "site-0-2026", "site-0", 2)], resident=resident)
    [letter] = result.dead_letters
    assert letter.message.offset == 1 and letter.rejection.code.value == "deployment_mismatch"
    assert result.paired == len(outcomes)  # the site-0 outcomes, once


KIND_NAMES = {"match-events": "match_event", "verified-outcomes": "verified_outcome"}


def test_a_dead_helper_process_changes_no_verdict(scenario, messages):
    """The helper killed (out of memory, say): the batch is verified in place, the next one gets a
    new helper, and the verdicts are those of verifying in place."""
    import signal

    batch = messages[0][:40]
    kinds = [KIND_NAMES[m.kind] for m in batch]
    keyring = parse_keyring(scenario.keyring_text)
    expected = [type(v).__name__ + (v.code.value if hasattr(v, "code") else "")
                for v in InputVerifier(keyring).judge(batch, kinds)]
    verifier = InputVerifier(keyring, helper=True, helper_minimum=1)
    try:
        first = next(iter(verifier._helper._processes))
        os.kill(first, signal.SIGKILL)
        time.sleep(0.5)
        for _ in range(2):
            got = [type(v).__name__ + (v.code.value if hasattr(v, "code") else "")
                   for v in verifier.judge(batch, kinds)]
            assert got == expected
        assert next(iter(verifier._helper._processes)) != first
    finally:
        verifier.close()
