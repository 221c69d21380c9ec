"""ensure_topics against the real broker: the worker's changelog is made before any worker starts."""

from __future__ import annotations

import uuid

import pytest
from fairwatch.contracts.topics import OUTPUT_TOPICS, PRODUCED_TOPICS
from fairwatch.stream.topics import TopicError, ensure_topics, join_log_changelog
from fairwatch.testing.live import delete_resources
from fairwatch.testing.stack import kafka_link
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

pytestmark = pytest.mark.services


@pytest.fixture
def names(stack):
    """A fresh topic prefix and app id; their topics are deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"t{tag}.", f"t{tag}-app"
    yield prefix, app_id
    delete_resources(stack["FAIRWATCH_KAFKA"], (prefix, app_id + "-"), [], "", [], link=kafka_link(stack))


def _described(stack, names: list[str]) -> dict[str, list]:
    admin = KafkaAdminClient(bootstrap_servers=stack["FAIRWATCH_KAFKA"], **kafka_link(stack).kafka_python_kwargs())
    try:
        return {t["name"]: t["partitions"] for t in admin.describe_topics(names)}
    finally:
        admin.close()


def test_changelog_is_created_compacted_with_the_inputs_partitions_and_leaders(stack, names):
    kafka = stack["FAIRWATCH_KAFKA"]
    prefix, app_id = names
    layout = ensure_topics(kafka, prefix, 3, app_id=app_id, link=kafka_link(stack))
    changelog = join_log_changelog(app_id)
    expected = {prefix + t: 3 for t in PRODUCED_TOPICS + OUTPUT_TOPICS} | {changelog: 3}
    assert layout == expected
    # checked again by the broker, not by what ensure_topics returned
    described = _described(stack, list(expected))
    assert {name: len(parts) for name, parts in described.items()} == expected
    assert all(p["leader_id"] >= 0 for parts in described.values() for p in parts)
    admin = KafkaAdminClient(bootstrap_servers=kafka, **kafka_link(stack).kafka_python_kwargs())
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)])
    finally:
        admin.close()
    assert configs["topic"][changelog]["cleanup.policy"]["value"] == "compact"
    # idempotent: a second worker starting finds the same layout and creates nothing
    assert ensure_topics(kafka, prefix, 3, app_id=app_id, link=kafka_link(stack)) == expected


def test_a_changelog_with_another_partition_count_is_refused_by_name(stack, names):
    kafka = stack["FAIRWATCH_KAFKA"]
    prefix, app_id = names
    admin = KafkaAdminClient(bootstrap_servers=kafka, **kafka_link(stack).kafka_python_kwargs())
    try:
        admin.create_topics([NewTopic(join_log_changelog(app_id), 2, 1)])
    finally:
        admin.close()
    with pytest.raises(TopicError, match=f"{join_log_changelog(app_id)} has 2 partitions, the input topics 4"):
        ensure_topics(kafka, prefix, 4, app_id=app_id, link=kafka_link(stack))
