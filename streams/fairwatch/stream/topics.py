"""Topic creation with explicit partition counts (co-partitioning needs them equal)."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from fairwatch.contracts.topics import DEFAULT_PREFIX, INPUT_TOPICS, OUTPUT_TOPICS


class TopicError(RuntimeError):
    """A topic exists with a layout the worker cannot use."""


def ensure_topics(bootstrap: str, prefix: str = DEFAULT_PREFIX, partitions: int = 8, replication: int = 1) -> dict[str, int]:
    """Create the input and output topics if missing; return name -> partition count.

    The two input topics must have the same partition count: the join needs an event and its
    outcomes on the same partition number, which Kafka's key hashing gives only then.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fairwatch-topics")
    try:
        names = [prefix + t for t in INPUT_TOPICS + OUTPUT_TOPICS]
        existing = set(admin.list_topics())
        missing = [NewTopic(n, partitions, replication) for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker created it meanwhile
        layout = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()
    inputs = {layout[prefix + t] for t in INPUT_TOPICS}
    if len(inputs) != 1:
        raise TopicError(f"input topics are not co-partitioned: {[(prefix + t, layout[prefix + t]) for t in INPUT_TOPICS]}")
    return layout


def input_partitions(bootstrap: str, prefix: str = DEFAULT_PREFIX, **admin_options) -> int:
    """The partition count of the existing, co-partitioned input topics (never creates a topic:
    a metadata request from a producer would let a broker auto-create them with 1 partition)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fairwatch-producer", **admin_options)
    try:
        names = [prefix + t for t in INPUT_TOPICS]
        missing = [n for n in names if n not in set(admin.list_topics())]
        if missing:
            raise TopicError(f"topics {missing} do not exist (run `fairwatch topics` first)")
        layout = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()
    if len(set(layout.values())) != 1:
        raise TopicError(f"input topics are not co-partitioned: {layout}")
    return next(iter(layout.values()))
