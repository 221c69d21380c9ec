"""The producer SDK against the real Kafka of the local stack: every record once, on its partition.

Oracle: the records sent, and Kafka's default partitioner as kafka-python implements it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from fairwatch.contracts.records import ContractError
from fairwatch.producer import AsyncFairwatchProducer, FairwatchProducer
from fairwatch.stream.topics import (
    TopicError,
    ensure_topics,
    grant_producer,
    revoke_producer,
)
from fairwatch.testing.live import delete_resources
from fairwatch.testing.stack import kafka_link
from fairwatch.testing.workload import make_workload
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.partitioner.default import murmur2

pytestmark = pytest.mark.services
PARTITIONS = 4


@pytest.fixture
def prefix(stack):
    """A fresh topic prefix whose input topics the `producer` principal may write (the SDK runs as
    it, least privilege); its topics and that grant are removed afterwards."""
    name = f"p{uuid.uuid4().hex[:8]}."
    admin = kafka_link(stack)
    if kafka_link(stack, "producer").sasl:
        grant_producer(stack["FAIRWATCH_KAFKA"], name, link=admin)
    yield name
    if kafka_link(stack, "producer").sasl:
        revoke_producer(stack["FAIRWATCH_KAFKA"], name, link=admin)
    delete_resources(stack["FAIRWATCH_KAFKA"], (name,), [], "", [], link=admin)


@pytest.fixture
def as_producer(stack):
    """The `producer` principal's link (the stack's admin on a stack without principals)."""
    return kafka_link(stack, "producer")


def read_back(stack, prefix: str) -> dict[str, list]:
    consumer = KafkaConsumer(bootstrap_servers=stack["FAIRWATCH_KAFKA"], auto_offset_reset="earliest",
                             consumer_timeout_ms=4000, enable_auto_commit=False, **kafka_link(stack).kafka_python_kwargs())
    consumer.subscribe([prefix + "match-events", prefix + "verified-outcomes"])
    found: dict[str, list] = {"match-events": [], "verified-outcomes": []}
    for message in consumer:
        envelope = json.loads(message.value)
        assert envelope["batch_version"] == 1 and envelope["partitions"] == PARTITIONS
        assert envelope["bucket"] == message.partition and message.key == b"bucket-%d" % message.partition
        for record in envelope["records"]:
            home = (murmur2(record["event_id"].encode()) & 0x7FFFFFFF) % PARTITIONS
            assert home == message.partition, "a record must travel on its event_id's partition"
            found[message.topic[len(prefix):]].append(record)
    consumer.close()
    return found


def expected(workload) -> dict[str, list]:
    return {"match-events": list(workload.events.values()),
            "verified-outcomes": [d for docs in workload.outcomes.values() for d in docs]}


def same(found: dict[str, list], wanted: dict[str, list]) -> None:
    for kind in wanted:
        key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
        assert sorted(map(key, found[kind])) == sorted(map(key, wanted[kind])), kind


def test_sync_producer_sends_every_record_once_in_envelopes_on_its_partition(stack, prefix, as_producer):
    kafka = stack["FAIRWATCH_KAFKA"]
    ensure_topics(kafka, prefix, PARTITIONS, link=kafka_link(stack))
    workload = make_workload(3000, seed=31, malformed_share=0.0, duplicate_share=0.0)
    with FairwatchProducer(kafka, topic_prefix=prefix, max_records=50, linger=0.05, link=as_producer) as producer:
        for doc in workload.events.values():
            producer.send_event(doc)
        for docs in workload.outcomes.values():
            for doc in docs:
                producer.send_outcome(doc)
        with pytest.raises(ContractError, match="truth"):
            producer.send_outcome({**docs[0], "truth": "maybe"})
    assert producer.sent_records == sum(len(v) for v in expected(workload).values())
    assert producer.sent_messages < producer.sent_records / 10  # batched, not one per record
    same(read_back(stack, prefix), expected(workload))
    with pytest.raises(RuntimeError, match="closed"):
        producer.send_event(next(iter(workload.events.values())))


def test_async_producer_sends_the_same(stack, prefix, as_producer):
    kafka = stack["FAIRWATCH_KAFKA"]
    ensure_topics(kafka, prefix, PARTITIONS, link=kafka_link(stack))
    workload = make_workload(1500, seed=32, malformed_share=0.0, duplicate_share=0.0)

    async def main():
        async with AsyncFairwatchProducer(kafka, topic_prefix=prefix, max_records=40, linger=0.02,
                                          link=as_producer) as producer:
            for doc in workload.events.values():
                await producer.send_event(doc)
            await asyncio.sleep(0.1)  # the linger task sends partial batches meanwhile
            for docs in workload.outcomes.values():
                for doc in docs:
                    await producer.send_outcome(doc)
        return producer

    producer = asyncio.run(main())
    assert producer.sent_records == sum(len(v) for v in expected(workload).values())
    same(read_back(stack, prefix), expected(workload))


def test_producer_refuses_missing_or_not_co_partitioned_topics_and_creates_none(stack, prefix, as_producer):
    kafka = stack["FAIRWATCH_KAFKA"]
    with pytest.raises(TopicError, match="do not exist"):
        FairwatchProducer(kafka, topic_prefix=prefix, link=as_producer)
    admin = KafkaAdminClient(bootstrap_servers=kafka, **kafka_link(stack).kafka_python_kwargs())
    try:
        assert not [t for t in admin.list_topics() if t.startswith(prefix)], "the check must not auto-create topics"
        admin.create_topics([NewTopic(prefix + "match-events", 4, 1), NewTopic(prefix + "verified-outcomes", 2, 1)])
    finally:
        admin.close()
    with pytest.raises(TopicError, match="co-partitioned"):
        FairwatchProducer(kafka, topic_prefix=prefix, link=as_producer)


def read_signed(stack, prefix: str) -> list[tuple[str, bytes, dict[str, bytes]]]:
    """(topic kind, value, headers) of every message under ``prefix``."""
    consumer = KafkaConsumer(bootstrap_servers=stack["FAIRWATCH_KAFKA"], auto_offset_reset="earliest",
                             consumer_timeout_ms=4000, enable_auto_commit=False, **kafka_link(stack).kafka_python_kwargs())
    consumer.subscribe([prefix + "match-events", prefix + "verified-outcomes"])
    found = [(m.topic[len(prefix):], m.value, dict(m.headers)) for m in consumer]
    consumer.close()
    return found


def check_signed(found, key, deployment: str) -> None:
    """Every message carries the four headers, and the signature verifies (raw cryptography, over
    the text rebuilt here from the documented format) over its value, deployment, kind and time."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = Ed25519PublicKey.from_public_bytes(key.verifier.public_key)
    assert found
    for kind, value, headers in found:
        assert headers["fairwatch-key"] == key.key_id.encode()
        assert headers["fairwatch-deployment"] == deployment.encode()
        text = (f"fairwatch-input/v1\n{deployment}\n{kind.replace('-', '_').rstrip('s')}\n"
                f"{headers['fairwatch-signed-at'].decode()}\n{hashlib.sha256(value).hexdigest()}\n").encode()
        public.verify(base64.b64decode(headers["fairwatch-signature"]), text)  # raises if it does not verify


def test_a_signing_producer_signs_every_envelope_sync_and_async(stack, prefix, as_producer, tmp_path):
    from fairwatch.contracts.keys import generate_key, write_signing_key

    kafka = stack["FAIRWATCH_KAFKA"]
    ensure_topics(kafka, prefix, PARTITIONS, link=kafka_link(stack))
    workload = make_workload(1200, seed=33, malformed_share=0.0, duplicate_share=0.0, deployments=1)
    key = generate_key("site-0-2026")
    path = write_signing_key(key, tmp_path / "site-0.key")  # the SDK reads the 0600 file
    with FairwatchProducer(kafka, topic_prefix=prefix, max_records=50, linger=0.05, link=as_producer,
                           signing_key=path, deployment="site-0") as producer:
        for doc in workload.events.values():
            producer.send_event(doc)
        for docs in workload.outcomes.values():
            for doc in docs:
                producer.send_outcome(doc)
        with pytest.raises(ValueError, match="signs for 'site-0'"):
            producer.send_event({**next(iter(workload.events.values())), "deployment": "site-9"})

    async def main():
        async with AsyncFairwatchProducer(kafka, topic_prefix=prefix, max_records=40, linger=0.02, link=as_producer,
                                          signing_key=key, deployment="site-0") as producer:
            for doc in workload.events.values():
                await producer.send_event(doc)
        return producer.sent_messages

    sent = producer.sent_messages + asyncio.run(main())
    found = read_signed(stack, prefix)
    assert len(found) == sent  # every message of both runs, each signed
    check_signed(found, key, "site-0")
    with pytest.raises(ValueError, match="both"):
        FairwatchProducer(kafka, topic_prefix=prefix, link=as_producer, signing_key=key)
