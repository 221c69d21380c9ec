"""Topic creation with explicit partition counts (co-partitioning needs them equal)."""

from __future__ import annotations

import time
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.contracts.topics import DEFAULT_PREFIX, INPUT_TOPICS, OUTPUT_TOPICS, PRODUCED_TOPICS

JOIN_LOG_TABLE = "join-log"  # the worker's faust table holding the join state
READY_SECONDS = 30.0  # how long a new topic may take to have a leader for every partition


class TopicError(RuntimeError):
    """A topic exists with a layout the worker cannot use."""


def join_log_changelog(app_id: str) -> str:
    """The join-log table's changelog topic, named as faust names it."""
    return f"{app_id}-{JOIN_LOG_TABLE}-changelog"


def admin_options(options: dict[str, Any]) -> dict[str, Any]:
    """The connection settings among a client's ``options`` that a KafkaAdminClient takes (security,
    timeouts; not ``acks`` or ``linger_ms``): a producer's admin client must connect as it does."""
    return {k: v for k, v in options.items()
            if k in KafkaAdminClient.DEFAULT_CONFIG and k not in ("bootstrap_servers", "client_id")}


def ensure_topics(bootstrap: str, prefix: str = DEFAULT_PREFIX, partitions: int = 8, replication: int = 1,
                  app_id: str | None = None, link: KafkaLink | None = None) -> dict[str, int]:
    """Create the input and output topics (and, given the worker's ``app_id``, its join-log
    changelog) if missing, wait until every partition has a leader; return name -> partition count.

    The two input topics must have the same partition count: the join needs an event and its
    outcomes on the same partition number, which Kafka's key hashing gives only then. The changelog
    is created here, before any worker starts, because a worker that fetched its metadata while
    another worker's faust was creating it sees 0 partitions and stops (faust PartitionsMismatch).
    ``link``: how to connect (default: the FAIRWATCH_KAFKA_* settings of the environment).
    """
    link = link or KafkaLink.from_env()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fairwatch-topics", **link.kafka_python_kwargs())
    try:
        wanted = {prefix + t: NewTopic(prefix + t, partitions, replication) for t in PRODUCED_TOPICS + OUTPUT_TOPICS}
        if app_id:
            name = join_log_changelog(app_id)
            wanted[name] = NewTopic(name, partitions, replication, topic_configs={"cleanup.policy": "compact"})
        existing = set(admin.list_topics())
        missing = [topic for name, topic in wanted.items() if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker created it meanwhile
        layout = _ready_layout(admin, list(wanted))
    finally:
        admin.close()
    inputs = {layout[prefix + t] for t in INPUT_TOPICS}
    if len(inputs) != 1:
        raise TopicError(f"input topics are not co-partitioned: {[(prefix + t, layout[prefix + t]) for t in INPUT_TOPICS]}")
    if app_id and (found := layout[join_log_changelog(app_id)]) != (expected := layout[prefix + INPUT_TOPICS[0]]):
        raise TopicError(f"the join-log changelog {join_log_changelog(app_id)} has {found} partitions, the input "
                         f"topics {expected}: delete it (its state is rebuilt from the input) or keep the old count")
    return layout


def _ready_layout(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """name -> partition count, once every partition of every topic has a leader."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        described = admin.describe_topics(names)
        unready = [t["name"] for t in described
                   if t["error_code"] or not t["partitions"] or any(p["leader_id"] < 0 for p in t["partitions"])]
        if not unready:
            return {t["name"]: len(t["partitions"]) for t in described}
        if time.monotonic() > deadline:
            raise TopicError(f"topics {unready} have no leader for every partition after {READY_SECONDS:.0f} s")
        time.sleep(0.2)


def input_partitions(bootstrap: str, prefix: str = DEFAULT_PREFIX, **admin_options) -> int:
    """The partition count of the existing, co-partitioned input topics (never creates a topic:
    a metadata request from a producer would let a broker auto-create them with 1 partition)."""
    if "security_protocol" not in admin_options:
        admin_options = {**KafkaLink.from_env().kafka_python_kwargs(), **admin_options}
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


def producer_acls(prefix: str, principal: str = "producer") -> list:
    """ACLs letting ``User:principal`` write (and describe) the topics a site produces to under ``prefix``, and
    nothing else: not the output topics, no READ. LITERAL patterns: a prefix pattern "t1." would
    also cover "t1.alerts"."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ResourcePattern,
        ResourceType,
    )

    return [ACL(f"User:{principal}", "*", operation, ACLPermissionType.ALLOW,
                ResourcePattern(ResourceType.TOPIC, prefix + topic))
            for topic in PRODUCED_TOPICS for operation in (ACLOperation.WRITE, ACLOperation.DESCRIBE)]


def worker_acls(principal: str = "worker") -> list:
    """ACLs a worker needs (the local stack's, scripts/stack): topics ``*``: READ, DESCRIBE, WRITE,
    CREATE, DESCRIBE_CONFIGS; consumer groups ``*``: READ, DESCRIBE. ``*`` because a worker's topics
    are named after a deployment's prefix and its app id (changelogs, faust's leader topic), and
    Kafka's patterns match prefixes only, never a suffix such as ``match-events``."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ResourcePattern,
        ResourceType,
    )

    topic_ops = (ACLOperation.READ, ACLOperation.DESCRIBE, ACLOperation.WRITE, ACLOperation.CREATE,
                 ACLOperation.DESCRIBE_CONFIGS)
    group_ops = (ACLOperation.READ, ACLOperation.DESCRIBE)
    return ([ACL(f"User:{principal}", "*", op, ACLPermissionType.ALLOW, ResourcePattern(ResourceType.TOPIC, "*"))
             for op in topic_ops]
            + [ACL(f"User:{principal}", "*", op, ACLPermissionType.ALLOW, ResourcePattern(ResourceType.GROUP, "*"))
               for op in group_ops])


def grant(bootstrap: str, wanted: list, principal: str, what: str, link: KafkaLink | None = None) -> None:
    """Add the ACLs ``wanted`` (idempotent: an existing ACL is left as it is) and wait until the
    broker lists them; needs an admin principal (ALTER on the cluster)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    link = link or KafkaLink.from_env()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fairwatch-topics", **link.kafka_python_kwargs())
    try:
        result = admin.create_acls(wanted)
        if result["failed"]:
            raise TopicError(f"could not grant User:{principal} {what}: {result['failed']}")
        # CreateAcls returns once the controller committed them; the broker's authorizer applies
        # them a moment later, and a client using them meanwhile is refused
        everything = ACLFilter(f"User:{principal}", "*", ACLOperation.ANY, ACLPermissionType.ANY,
                               ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
        deadline = time.monotonic() + READY_SECONDS
        while not set(wanted) <= set(admin.describe_acls(everything)[0]):
            if time.monotonic() > deadline:
                raise TopicError(f"the grant to User:{principal} ({what}) is not in force after {READY_SECONDS:.0f} s")
            time.sleep(0.1)
    finally:
        admin.close()


def grant_producer(bootstrap: str, prefix: str, principal: str = "producer", link: KafkaLink | None = None) -> None:
    """Add :func:`producer_acls` (idempotent) and wait until the broker enforces them; needs an admin
    principal (ALTER on the cluster)."""
    grant(bootstrap, producer_acls(prefix, principal), principal, f"the input topics of {prefix!r}", link)


def grant_worker(bootstrap: str, principal: str = "worker", link: KafkaLink | None = None) -> None:
    """Add :func:`worker_acls` (idempotent) and wait until the broker lists them; needs an admin."""
    grant(bootstrap, worker_acls(principal), principal, "the worker's topics and groups", link)


def revoke_producer(bootstrap: str, prefix: str, principal: str = "producer", link: KafkaLink | None = None) -> None:
    """Remove what :func:`grant_producer` added."""
    link = link or KafkaLink.from_env()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fairwatch-topics", **link.kafka_python_kwargs())
    try:
        admin.delete_acls(producer_acls(prefix, principal))
    finally:
        admin.close()
