"""The stack's Kafka: a real Apache Kafka 4.x broker that creates topics, stores and serves
messages, and keeps consumer group offsets."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fairwatch.testing.live import delete_resources
from fairwatch.testing.stack import kafka_link, local_stack_dir
from kafka import KafkaAdminClient

pytestmark = pytest.mark.services

N_MESSAGES = 600
PARTITIONS = 3


def _create_topic_errors(response) -> list:
    """(topic, error_code, message) of a CreateTopics response whose error code is not 0."""
    obj = response.to_object()
    entries = obj.get("topic_errors") or obj.get("topics") or []
    bad = []
    for e in entries:
        code = e.get("error_code", 0)
        if code:
            bad.append((e.get("topic") or e.get("name"), code, e.get("error_message")))
    return bad


async def _roundtrip(bootstrap: str, link) -> None:
    topic = f"fairwatch.test.stack-{uuid.uuid4().hex[:12]}"
    group = f"fairwatch-test-{uuid.uuid4().hex[:12]}"
    options = link.aiokafka_kwargs()  # the admin principal: it creates and deletes the topic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        assert _create_topic_errors(response) == []
        # the broker answers CreateTopics before its metadata cache has the topic: describing it at
        # once may say UNKNOWN_TOPIC_OR_PARTITION (3); it must become known within seconds
        deadline = asyncio.get_running_loop().time() + 10
        (described,) = await admin.describe_topics([topic])
        while described["error_code"] == 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            (described,) = await admin.describe_topics([topic])
        assert described["error_code"] == 0
        assert len(described["partitions"]) == PARTITIONS

        sent = {f"event-{i:05d}": f"payload-{i}-{uuid.uuid4().hex}" for i in range(N_MESSAGES)}
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **options)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=k.encode(), value=v.encode()) for k, v in sent.items()]
            metadata = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        assert {m.partition for m in metadata} == set(range(PARTITIONS))

        received: dict[str, str] = {}
        partitions_seen: set[int] = set()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False, **options)
        await consumer.start()
        try:
            deadline = time.monotonic() + 60
            while len(received) < N_MESSAGES and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    partitions_seen.add(tp.partition)
                    for r in records:
                        assert r.key.decode() not in received, f"duplicate {r.key!r}"
                        received[r.key.decode()] = r.value.decode()
            await consumer.commit()
        finally:
            await consumer.stop()
        assert received == sent
        assert partitions_seen == set(range(PARTITIONS))

        committed = await admin.list_consumer_group_offsets(group)
        ours = {tp.partition: om.offset for tp, om in committed.items() if tp.topic == topic}
        assert set(ours) == set(range(PARTITIONS))
        assert sum(ours.values()) == N_MESSAGES
        by_partition = {p: sum(1 for m in metadata if m.partition == p) for p in range(PARTITIONS)}
        assert ours == by_partition

        # A new member of the same group starts at the committed offsets: nothing is left to read.
        again = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False, **options)
        await again.start()
        try:
            await again.getmany(timeout_ms=2000)
            for p in range(PARTITIONS):
                assert await again.position(TopicPartition(topic, p)) == by_partition[p]
        finally:
            await again.stop()
    finally:
        try:
            await admin.delete_topics([topic])
            # empty by now (both consumers stopped); aiokafka's admin cannot delete groups
            await asyncio.to_thread(delete_resources, bootstrap, (), [group], "", [], link)
        finally:
            await admin.close()


def test_topic_produce_consume_group(stack):
    asyncio.run(_roundtrip(stack["FAIRWATCH_KAFKA"], kafka_link(stack)))


def test_broker_is_apache_kafka_4(stack):
    admin = KafkaAdminClient(bootstrap_servers=stack["FAIRWATCH_KAFKA"], client_id="fairwatch-test",
                             **kafka_link(stack).kafka_python_kwargs())
    try:
        brokers = admin.describe_cluster()["brokers"]
        assert len(brokers) == 1 or local_stack_dir() is None
        # The broker's ApiVersions answer ({api_key: (min, max)}) and the release kafka-python
        # infers from it. (Not admin.api_versions(): it raises on api keys newer than kafka-python.)
        inferred = admin.get_broker_version_data(brokers[0]["broker_id"])
        api_versions = inferred.api_versions
    finally:
        admin.close()
    fetch_min, fetch_max = api_versions[1]  # ApiKey.Fetch
    # KIP-896: Kafka 4.0 removed Fetch v0-v3, so only a 4.x (or later) broker answers min 4.
    assert fetch_min >= 4, f"Fetch versions {fetch_min}..{fetch_max}: not a Kafka 4 broker"
    assert inferred.broker_version[0] == 4, f"kafka-python infers broker {inferred.broker_version}"

    state = local_stack_dir()
    if state is None:
        return  # external broker: the protocol facts above are all we can know
    # Our broker: its own startup log says which release runs, after the header for its PID.
    pid = int((state / "run" / "kafka.pid").read_text())
    text = (state / "logs" / "kafka.log").read_text(errors="replace")
    marker = f"=== fairwatch stack: kafka pid {pid}\n"
    assert marker in text, f"no start header for pid {pid} in the Kafka log"
    after = text[text.rindex(marker):]
    m = re.search(r"Kafka version: (\d+)\.(\d+)\.(\d+)", after)
    assert m, "the Kafka log of this process has no 'Kafka version' line"
    version = tuple(int(x) for x in m.groups())
    assert version[0] == 4, f"broker is Kafka {version}"
    assert inferred.broker_version <= version[:2]
