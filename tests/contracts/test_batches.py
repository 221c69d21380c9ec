"""Batch envelopes, the shared partitioning function and the producer's batching, without services.

Oracles: Kafka's own murmur2 test vectors (clients/src/test/.../UtilsTest.java), kafka-python's
DefaultPartitioner, the JSON Schema of the envelope (jsonschema), and brute-force bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import jsonschema
import pytest
from fairwatch.contracts.envelopes import MAX_BATCH_RECORDS, decode_message
from fairwatch.contracts.partitioning import murmur2, partition_for, partitions_for
from fairwatch.contracts.records import RejectCode, Rejection
from fairwatch.core.config import CoreConfig
from fairwatch.producer import BatchBuilder, encode_record
from fairwatch.stream.processor import BatchProcessor, RawMessage
from fairwatch.testing.workload import compact, make_workload
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ENVELOPE = json.loads((SCHEMAS / "batch.schema.json").read_text())

# Kafka UtilsTest.testMurmur2: signed 32-bit results for these keys
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
# fixed vectors of our own: a change here splits events from their outcomes in deployed systems
FAIRWATCH_VECTORS = {("e-1", 8): 7, ("e-2", 4): 2, ("e-11", 4): 1, ("ev-1-00000000", 8): None}


@pytest.mark.parametrize("key,signed", KAFKA_VECTORS.items())
def test_murmur2_matches_kafkas_own_test_vectors(key, signed):
    assert murmur2(key) == signed & 0xFFFFFFFF


@given(st.binary(max_size=64), st.integers(1, 64))
@settings(max_examples=400, deadline=None)
def test_partition_for_is_kafka_pythons_default_partitioner(key, partitions):
    assert murmur2(key) == kafka_python_murmur2(key)
    try:
        event_id = key.decode("utf-8")
    except UnicodeDecodeError:
        return
    expected = DefaultPartitioner().partition("t", event_id, event_id.encode(), None, None, _Cluster(partitions))
    assert partition_for(event_id, partitions) == expected


@given(st.lists(st.text(min_size=1, max_size=40), max_size=60), st.integers(1, 64))
@settings(max_examples=300, deadline=None)
def test_partitions_for_many_ids_is_kafka_pythons_partitioner_of_each(event_ids, partitions):
    expected = [(kafka_python_murmur2(event_id.encode()) & 0x7FFFFFFF) % partitions for event_id in event_ids]
    assert partitions_for(event_ids, partitions).tolist() == expected


def test_partitions_for_kafkas_vectors_at_once():
    keys = [key.decode() for key in KAFKA_VECTORS]
    assert partitions_for(keys, 2**31 - 1).tolist() == [(v & 0x7FFFFFFF) % (2**31 - 1) for v in KAFKA_VECTORS.values()]


class _Cluster:
    """The little of kafka-python's ClusterMetadata its partitioner reads."""

    def __init__(self, partitions: int):
        self.partitions = set(range(partitions))

    def topics(self):
        return {"t"}

    def partitions_for_topic(self, topic):
        return self.partitions

    def available_partitions_for_topic(self, topic):
        return self.partitions


def test_partition_for_fixed_vectors():
    for (event_id, partitions), expected in FAIRWATCH_VECTORS.items():
        found = partition_for(event_id, partitions)
        if expected is not None:
            assert found == expected
        assert found == (kafka_python_murmur2(event_id.encode()) & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------- the envelope contract

HEADER_VALUES = st.one_of(st.integers(-3, 20), st.booleans(), st.none(), st.text(max_size=3), st.floats(0, 5))


@st.composite
def envelopes(draw):
    doc = {}
    for name in ("batch_version", "bucket", "partitions"):
        if draw(st.integers(0, 9)) > 0:  # now and then a field is missing
            doc[name] = draw(st.sampled_from([1]) | HEADER_VALUES)
    if draw(st.integers(0, 9)) > 0:
        doc["records"] = draw(st.lists(st.just({"event_id": "x"}), max_size=3) | st.just("nope"))
    if draw(st.integers(0, 19)) == 0:
        doc["extra"] = 1
    return doc


@given(envelopes())
@settings(max_examples=500, deadline=None)
def test_envelope_header_acceptance_agrees_with_the_schema(doc):
    header, items = decode_message(json.dumps(doc).encode(), "match_event")
    if "batch_version" not in doc:
        return  # not an envelope: decoded as one (bad) record
    valid = jsonschema.Draft202012Validator(ENVELOPE).is_valid(doc)
    # the schema cannot say bucket < partitions; the decoder does
    if valid and doc["bucket"] >= doc["partitions"]:
        valid = False
    assert (header is not None) == valid, (doc, items)
    if header is None:
        [item] = items
        assert item.index is None and item.record.code == RejectCode.BAD_BATCH


def test_a_batch_too_big_is_refused_whole():
    doc = {"batch_version": 1, "bucket": 0, "partitions": 1, "records": [{}] * (MAX_BATCH_RECORDS + 1)}
    header, [item] = decode_message(json.dumps(doc).encode(), "match_event")
    assert header is None and item.record.field == "records"


# ---------------------------------------------------------------- the batch step

CONFIG = CoreConfig()


def _event(event_id: str, **changes) -> dict:
    doc = {"event_id": event_id, "occurred_at": "2026-11-26T08:00:00Z", "deployment": "d", "algorithm": "a",
           "mode": "verification", "score": 0.9, "threshold": 0.5, "decision": "match", "subject": {"sex": "F"}}
    return {**doc, **changes}


def _envelope(records, bucket, partitions=8) -> bytes:
    return json.dumps({"batch_version": 1, "bucket": bucket, "partitions": partitions, "records": records}).encode()


def test_bad_records_in_a_batch_go_to_dead_letter_alone_and_the_rest_is_joined():
    ids = [f"id-{i}" for i in range(400)]
    home = [i for i in ids if partition_for(i, 8) == 3][:5]
    bad = [{"event_id": ""}, _event(home[0], score="high")]
    records = [_event(home[1]), bad[0], _event(home[2]), bad[1], _event(home[3])]
    message = RawMessage("match-events", "t.match-events", 3, 41, b"bucket-3", _envelope(records, 3))
    result = BatchProcessor(CONFIG, partitions=8).process([message], lambda event_id, partition: None)
    assert sorted(row[0] for row in result.sink.event_rows()) == sorted([home[1], home[2], home[3]])
    letters = sorted(result.dead_letters, key=lambda d: d.record_index)
    assert [d.record_index for d in letters] == [1, 3]
    assert [d.record_bytes for d in letters] == [compact(bad[0]), compact(bad[1])]
    assert [d.rejection.code for d in letters] == [RejectCode.MISSING_FIELD, RejectCode.WRONG_TYPE]
    record = letters[1].to_record()
    assert record["offset"] == 41 and record["record_index"] == 3 and record["reason_code"] == "wrong_type"
    assert result.records["match-events"] == 5 and result.consumed["match-events"] == 1
    assert not result.reroutes


def test_records_on_a_partition_not_theirs_are_forwarded_not_joined():
    ids = [f"m-{i}" for i in range(200)]
    records = [_event(i) for i in ids[:40]]
    # a batch that claims bucket 2 but holds records of every partition, arriving on partition 2
    message = RawMessage("match-events", "t.match-events", 2, 7, b"bucket-2", _envelope(records, 2))
    single = RawMessage("match-events", "t.match-events", 2, 8, b"m-100", json.dumps(_event("m-100")).encode())
    result = BatchProcessor(CONFIG, partitions=8).process([message, single], lambda event_id, partition: None)
    joined = {row[0] for row in result.sink.event_rows()}
    expected_here = {i for i in ids[:40] + ["m-100"] if partition_for(i, 8) == 2}
    assert joined == expected_here
    forwarded = {r.key.decode(): r for r in result.reroutes}
    assert set(forwarded) == set(ids[:40] + ["m-100"]) - expected_here
    for event_id, reroute in forwarded.items():
        assert reroute.partition == partition_for(event_id, 8) != 2
        assert reroute.topic == "t.match-events"
        assert json.loads(reroute.value) == _event(event_id)
    # without a partition count (file replay) nothing is forwarded
    plain = BatchProcessor(CONFIG).process([message], lambda event_id, partition: None)
    assert len(plain.sink.event_rows()) == 40 and not plain.reroutes


# ---------------------------------------------------------------- the producer's batching


@given(st.integers(1, 16), st.integers(1, 50), st.integers(0, 10_000), st.lists(st.floats(0, 0.2), min_size=1,
                                                                              max_size=300))
@settings(max_examples=200, deadline=None)
def test_builder_sends_every_record_once_on_its_partition_within_bounds(partitions, max_records, seed, gaps):
    rng = random.Random(seed)
    builder = BatchBuilder(partitions, max_records=max_records, max_bytes=4096, linger=0.1)
    sent, now, envelopes_out = [], 0.0, []
    for i, gap in enumerate(gaps):
        now += gap
        topic = rng.choice(("t.match-events", "t.verified-outcomes"))
        record = compact({"event_id": f"r-{i}", "pad": "x" * rng.randrange(300)})
        sent.append((topic, f"r-{i}"))
        envelopes_out += builder.add(topic, f"r-{i}", record, now)
        envelopes_out += builder.due(now)
    envelopes_out += builder.drain()
    received = []
    for env in envelopes_out:
        doc = json.loads(env.value)
        assert doc["bucket"] == env.partition and doc["partitions"] == partitions
        assert 1 <= len(doc["records"]) == env.records <= max_records
        assert len(env.value) <= 4096
        for record in doc["records"]:
            assert partition_for(record["event_id"], partitions) == env.partition
            received.append((env.topic, record["event_id"]))
    assert sorted(received) == sorted(sent)


def test_encode_record_refuses_a_bad_record_with_its_reason():
    workload = make_workload(3, seed=5)
    good = next(iter(workload.events.values()))
    event_id, encoded = encode_record(good)
    assert event_id == good["event_id"] and json.loads(encoded) == good
    from fairwatch.contracts.records import ContractError
    with pytest.raises(ContractError, match="score"):
        encode_record({**good, "score": "high"})
    with pytest.raises(TypeError):
        encode_record(["not", "a", "record"])


def test_envelope_of_the_builder_decodes_back_to_the_records():
    workload = make_workload(50, seed=6)
    builder = BatchBuilder(partitions=4, max_records=1000)
    for doc in workload.events.values():
        builder.add("t", doc["event_id"], compact(doc), now=0.0)
    decoded = {}
    for env in builder.drain():
        header, items = decode_message(env.value, "match_event")
        assert header.bucket == env.partition
        for item in items:
            assert not isinstance(item.record, Rejection)
            decoded[item.record.event_id] = json.loads(item.raw)
    assert decoded == workload.events


def test_sub_batches_keep_order_and_bound_the_bytes():
    from types import SimpleNamespace

    from fairwatch.stream.batching import sub_batches

    rng = random.Random(3)
    events = [SimpleNamespace(message=SimpleNamespace(value=b"x" * rng.randrange(1, 400))) for _ in range(500)]
    chunks = list(sub_batches(events, limit=2000))
    assert [e for chunk in chunks for e in chunk] == events  # nothing lost, nothing reordered
    for chunk in chunks:
        sizes = [len(e.message.value) for e in chunk]
        assert sum(sizes[:-1]) < 2000  # closed at the first message that reaches the limit
    assert list(sub_batches([], limit=10)) == []


def _gather(script, max_events: int, within: float, complete) -> list[tuple[float, list]]:
    """(seconds since start, batch) of gathered_batches over takes arriving as ``script`` says:
    (seconds to wait, take) pairs."""
    async def takes():
        for pause, take in script:
            await asyncio.sleep(pause)
            yield take

    from fairwatch.stream.batching import gathered_batches

    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        return [(loop.time() - start, batch)
                async for batch in gathered_batches(takes(), max_events, within, complete)]

    return asyncio.run(main())


def test_gathered_batches_end_when_complete_full_or_due_and_lose_nothing():
    script = [(0.0, [1, 2]), (0.01, [3]), (1.0, [4]), (0.01, [5, 6, 7]), (0.01, [8, 9])]
    # nothing more to read once 3 is in: the batch goes at once, not after `within`
    got = _gather(script, 100, 0.5, lambda batch: batch[-1] in (3, 9))
    assert [batch for _, batch in got] == [[1, 2, 3], [4, 5, 6, 7, 8, 9]]
    assert got[0][0] < 0.25 and 1.0 <= got[1][0] < 1.3
    # never complete: a batch waits `within` from its first event (the next take is 1 s away); the
    # last goes when the takes end
    got = _gather(script, 100, 0.3, lambda batch: False)
    assert [batch for _, batch in got] == [[1, 2, 3], [4, 5, 6, 7, 8, 9]]
    assert 0.28 <= got[0][0] < 0.9 and 1.0 <= got[1][0] < 1.3
    # full: a batch goes as soon as it holds max_events, or before a take that would not fit
    got = _gather(script, 4, 5.0, lambda batch: False)
    assert [batch for _, batch in got] == [[1, 2, 3, 4], [5, 6, 7], [8, 9]]
    assert 1.0 <= got[0][0] < 1.3 and got[1][0] < 1.3
