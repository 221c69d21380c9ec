"""The smoke path behind `make demo` until the full demo lands: each real service touched once.

Decodes the contract examples, round-trips them through Kafka, stores them in ClickHouse and
reads them back, and posts (then resolves) a test alert in Alertmanager.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.contracts.records import MatchEvent, Rejection, decode_match_event
from fairwatch.detect.delivery import alertmanager_client
from fairwatch.store.clickhouse import SCHEMAS_DIR, open_store, redacted_url
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import EVENT_COLUMNS, event_columns

EXAMPLES = SCHEMAS_DIR / "examples"


def example_events() -> list[MatchEvent]:
    events = []
    for path in sorted((EXAMPLES / "valid").glob("match_event.*.json")):
        result = decode_match_event(path.read_bytes())
        if isinstance(result, Rejection):
            raise RuntimeError(f"example {path.name} is invalid: {result}")
        events.append(result)
    return events


async def _kafka_round_trip(bootstrap: str, payloads: list[bytes]) -> int:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"fairwatch.smoke-{uuid.uuid4().hex[:8]}"
    link = KafkaLink.from_env().aiokafka_kwargs()  # creates and deletes a topic: an admin principal
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **link)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, **link)
        await producer.start()
        try:
            for payload in payloads:
                await producer.send_and_wait(topic, payload)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-reader",
                                    auto_offset_reset="earliest", **link)
        await consumer.start()
        try:
            seen: list[bytes] = []
            while len(seen) < len(payloads):
                batch = await consumer.getmany(timeout_ms=10_000)
                if not batch:
                    raise RuntimeError(f"Kafka: only {len(seen)} of {len(payloads)} messages came back")
                seen += [m.value for records in batch.values() for m in records]
        finally:
            await consumer.stop()
        if sorted(seen) != sorted(payloads):
            raise RuntimeError("Kafka: the messages that came back differ from those sent")
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    return len(seen)


def run_smoke(store: str | None, kafka: str | None, alertmanager: str | None, log: Callable[[str], None]) -> list[str]:
    steps = []
    events = example_events()
    steps.append(f"decoded {len(events)} example match events against the contracts")
    if kafka:
        log(f"Kafka at {kafka}: producing and consuming through a consumer group ...")
        n = asyncio.run(_kafka_round_trip(kafka, [e.to_json() for e in events]))
        steps.append(f"Kafka {kafka}: {n} messages produced and consumed back through a consumer group")
    if store:
        log(f"ClickHouse at {redacted_url(store)}: applying migrations ...")
        opened = open_store(store)
        statuses = [f"{r.name}={r.status}" for r in migrate(opened)]
        now = datetime.now(timezone.utc).replace(microsecond=0)
        opened.insert_columns("match_events", EVENT_COLUMNS, event_columns(events, now))  # as the sink writes them
        ids = {e.event_id for e in events}
        found = {row[0] for row in opened.query(
            "SELECT event_id FROM match_events FINAL WHERE event_id IN %(ids)s", {"ids": tuple(sorted(ids))})}
        if found != ids:
            raise RuntimeError(f"ClickHouse: stored {sorted(ids)}, read back {sorted(found)}")
        version = ".".join(map(str, opened.server_version()))
        opened.close()
        steps.append(f"ClickHouse {version} at {redacted_url(store)}: migrations {', '.join(statuses)}; "
                     f"{len(ids)} events stored and read back")
    if alertmanager:
        log(f"Alertmanager at {redacted_url(alertmanager)}: posting a test alert ...")
        name = f"fairwatch-smoke-{uuid.uuid4().hex[:8]}"
        start = datetime.now(timezone.utc)
        alert = {"labels": {"alertname": name, "severity": "info", "service": "fairwatch"},
                 "annotations": {"summary": "fairwatch smoke test"}, "startsAt": start.isoformat()}
        with alertmanager_client(alertmanager, timeout=10) as client:
            client.post("/api/v2/alerts", json=[alert]).raise_for_status()
            active = client.get("/api/v2/alerts", params={"filter": f'alertname="{name}"'}).json()
            if len(active) != 1:
                raise RuntimeError(f"Alertmanager: expected the test alert back, got {active}")
            alert["endsAt"] = (start + timedelta(milliseconds=1)).isoformat()
            client.post("/api/v2/alerts", json=[alert]).raise_for_status()
        steps.append(f"Alertmanager {redacted_url(alertmanager)}: test alert {name} posted, read back and resolved")
    return steps
