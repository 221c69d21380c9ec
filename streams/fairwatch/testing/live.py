"""Helpers for tests that run real `fairwatch worker` processes against the local stack."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.contracts.topics import DEAD_LETTER, MATCH_EVENTS, STORED_AS_THEY_COME, VERIFIED_OUTCOMES
from fairwatch.core.layout import COLUMNS
from fairwatch.store.clickhouse import ServerStore, open_store
from fairwatch.store.migrations import migrate
from fairwatch.stream.topics import ensure_topics, grant_producer, revoke_producer
from fairwatch.testing.stack import kafka_env, kafka_link, server_url

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def delete_resources(kafka: str, topic_prefixes: tuple[str, ...], groups: list[str], clickhouse: str,
                     databases: list[str], link: KafkaLink | None = None) -> list[str]:
    """Delete topics starting with ``topic_prefixes``, consumer ``groups`` and ClickHouse ``databases``
    (on the server of the ``clickhouse`` URL); returns what could not be deleted. ``link``: an admin
    principal's (default: the FAIRWATCH_KAFKA_* settings of the environment)."""
    from kafka.admin import KafkaAdminClient

    problems = []
    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka, **(link or KafkaLink.from_env()).kafka_python_kwargs())
        try:
            names = [t for t in admin.list_topics() if t.startswith(topic_prefixes)]
            if names:
                admin.delete_topics(names)
            if groups:
                admin.delete_groups(groups)
        finally:
            admin.close()
    except Exception as exc:  # a group that never formed cannot be deleted, for example
        problems.append(f"Kafka: {exc}")
    if databases:
        try:
            with closing(ServerStore(server_url(clickhouse, "default"), create_database=False)) as client:
                on_cluster = f" ON CLUSTER {client.cluster}" if client.cluster else ""
                for database in databases:
                    client.execute(f"DROP DATABASE IF EXISTS {database}{on_cluster}")
        except Exception as exc:
            problems.append(f"ClickHouse: {exc}")
    return problems


def _raise_failed(futures) -> None:
    """A test's traffic must arrive whole: raise the first delivery error (refused, too large ...)."""
    failed = [f for f in futures if f.failed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(futures)} messages were not delivered: {failed[0].exception!r}")


class LiveSetup:
    """One isolated deployment: its own topic prefix, consumer group and ClickHouse database.

    Every setup made is listed in ``created``; :meth:`cleanup` (run after each live test by a
    fixture) deletes its topics, group and server database.
    """

    created: list[LiveSetup] = []

    def __init__(self, stack: dict[str, str], tmp_path: Path, *, partitions: int = 8, store: str | None = None,
                 table_store: str = "memory://", intersections: str = "sex&race", replication: int = 1):
        tag = uuid.uuid4().hex[:8]
        self.kafka = stack["FAIRWATCH_KAFKA"]
        # admin for setup, checks and cleanup; workers run as `worker`, produce() as `producer`
        self.admin_link, self.producer_link = kafka_link(stack, "admin"), kafka_link(stack, "producer")
        self.prefix = f"t{tag}."
        self.app_id = f"fairwatch-test-{tag}"
        self.partitions = partitions
        self.tmp_path = tmp_path
        # the workers write as the writer (no DDL); the database is made and migrated as the migrator
        database = f"fw_live_{tag}"
        self.store_url = store or server_url(stack["FAIRWATCH_CLICKHOUSE"], database)
        self.admin_url = store or server_url(stack.get("FAIRWATCH_CLICKHOUSE_MIGRATOR", stack["FAIRWATCH_CLICKHOUSE"]), database)
        self.env = {
            **os.environ,
            "FAIRWATCH_KAFKA": self.kafka,
            "FAIRWATCH_CLICKHOUSE": self.store_url,
            "FAIRWATCH_TOPIC_PREFIX": self.prefix,
            "FAIRWATCH_PARTITIONS": str(partitions),
            "FAIRWATCH_REPLICATION": str(replication),
            "FAIRWATCH_APP_ID": self.app_id,
            "FAIRWATCH_TABLE_STORE": table_store,
            "FAIRWATCH_INTERSECTIONS": intersections,
            "FAIRWATCH_BATCH_SIZE": "5000",
            "FAIRWATCH_BATCH_WITHIN": "0.3",
            "FAIRWATCH_SESSION_TIMEOUT": "10",
            **kafka_env(stack, "worker"),
        }
        self.own_database = store is None
        if self.own_database:
            with closing(open_store(self.admin_url)) as admin:
                migrate(admin)
        ensure_topics(self.kafka, self.prefix, partitions, replication, app_id=self.app_id, link=self.admin_link)
        LiveSetup.created.append(self)
        if self.producer_link.sasl:
            grant_producer(self.kafka, self.prefix, link=self.admin_link)

    def cleanup(self) -> list[str]:
        """Delete what this setup made in Kafka and ClickHouse; returns what could not be deleted."""
        problems = []
        if self.producer_link.sasl:
            try:
                revoke_producer(self.kafka, self.prefix, link=self.admin_link)
            except Exception as exc:  # reported with the rest
                problems.append(f"Kafka ACLs: {exc}")
        return problems + delete_resources(
            self.kafka, (self.prefix, self.app_id + "-"), [self.app_id], self.admin_url,
            [urlparse(self.store_url).path.lstrip("/")] if self.own_database else [], link=self.admin_link)

    def topic(self, kind: str) -> str:
        return self.prefix + kind

    def produce(self, messages) -> None:
        producer = KafkaProducer(bootstrap_servers=self.kafka, linger_ms=20, batch_size=512 * 1024, acks=1,
                                 **self.producer_link.kafka_python_kwargs())
        sent = [producer.send(self.topic(kind), key=key, value=value) for kind, key, value in messages]
        producer.flush()
        producer.close()
        _raise_failed(sent)

    def produce_to_partitions(self, messages) -> None:
        """(kind, partition, key, value) messages, each to the partition given."""
        producer = KafkaProducer(bootstrap_servers=self.kafka, linger_ms=20, batch_size=512 * 1024, acks=1,
                                 max_request_size=2 << 20, **self.producer_link.kafka_python_kwargs())
        sent = [producer.send(self.topic(kind), key=key, value=value, partition=partition)
                for kind, partition, key, value in messages]
        producer.flush()
        producer.close()
        _raise_failed(sent)

    def start_worker(self, name: str = "w1") -> WorkerProcess:
        return WorkerProcess(self, name)

    def lag(self) -> int:
        """Messages of the input topics, acquisition attempts and use records not yet committed by the worker group."""
        # a consumer that never subscribes does not join the group; it only reads its offsets
        consumer = KafkaConsumer(bootstrap_servers=self.kafka, group_id=self.app_id, enable_auto_commit=False,
                                 **self.admin_link.kafka_python_kwargs())
        try:
            tps = [TopicPartition(self.topic(k), p) for k in (MATCH_EVENTS, VERIFIED_OUTCOMES, *STORED_AS_THEY_COME)
                   for p in range(self.partitions)]
            ends = consumer.end_offsets(tps)
            return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in tps)
        finally:
            consumer.close()

    def wait_drained(self, workers, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for w in workers:
                assert w.alive(), f"worker {w.name} died:\n{w.log_tail()}"
            if self.lag() == 0:
                return
            time.sleep(1.0)
        raise AssertionError(f"not drained after {timeout}s (lag {self.lag()}):\n" + "\n".join(w.log_tail() for w in workers))

    def output_records(self, kind: str) -> list[dict]:
        """Every record of an output topic (dead-letter, alerts), decoded, each partition in order."""
        consumer = KafkaConsumer(self.topic(kind), bootstrap_servers=self.kafka, auto_offset_reset="earliest",
                                 consumer_timeout_ms=3000, enable_auto_commit=False,
                                 **self.admin_link.kafka_python_kwargs())
        try:
            return [json.loads(message.value) for message in consumer]
        finally:
            consumer.close()

    def dead_letters(self) -> dict[tuple[int, int], dict]:
        """(topic, partition, offset, record index) -> dead-letter record, redeliveries collapsed."""
        return {(r["source_topic"], r["partition"], r["offset"], r.get("record_index")): r
                for r in self.output_records(DEAD_LETTER)}


class WorkerProcess:
    def __init__(self, setup: LiveSetup, name: str):
        self.name = name
        self.web_port = free_port()
        self.log_path = setup.tmp_path / f"worker-{name}.log"
        env = {**setup.env, "FAIRWATCH_WEB_PORT": str(self.web_port),
               "FAIRWATCH_DATA_DIR": str(setup.tmp_path / f"data-{name}")}
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fairwatch.cli", "worker", "--loglevel", os.environ.get("FAIRWATCH_TEST_LOGLEVEL", "warn")],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def kill9(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} log ---\n" + "\n".join(text[-lines:])


def stored_counts(store) -> dict[tuple, list[float]]:
    """group_counts as the oracle shapes it: summed over Kafka partitions, newest recompute each."""
    sums = ", ".join(f"sum({c})" for c in COLUMNS)
    rows = store.query(
        f"SELECT deployment, algorithm, toString(mode), attribute, group_label, toUInt32(bucket), {sums}"
        " FROM group_counts FINAL GROUP BY deployment, algorithm, mode, attribute, group_label, bucket"
    )
    return {tuple(row[:5]) + (int(row[5]),): list(row[6:]) for row in rows}


def changed_counts(resident, partitions) -> dict[int, bytes]:
    """partition -> counts blob of the partitions whose resident counts changed since the last
    persist: what a flush writes to group_counts."""
    return {p: blob for p in partitions if (blob := resident.persist(p).counts) is not None}


def assert_counts_equal(found: dict, expected: dict) -> None:
    missing = expected.keys() - found.keys()
    extra = found.keys() - expected.keys()
    assert not missing and not extra, f"{len(missing)} cells missing (e.g. {sorted(missing)[:3]}), " \
                                      f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})"
    for key, row in expected.items():
        got = found[key]
        for i, name in enumerate(COLUMNS):
            if name.endswith(("_n", "_errors")):
                assert got[i] == row[i], f"{key} {name}: stored {got[i]}, oracle {row[i]}"
            else:  # sums of weights 1/p: the store truncates each to 1e-12 (fairwatch.store.sums)
                assert abs(got[i] - row[i]) <= 1e-9 * max(1.0, abs(row[i])), f"{key} {name}: {got[i]} vs {row[i]}"
