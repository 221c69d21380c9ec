"""Producer SDK: how a face-recognition system sends match events and outcomes to fairwatch.

A worker pays about the same per Kafka message whether it holds one record or a hundred, so
records travel in batch envelopes (schemas/batch.schema.json). A batch must only hold records of
one partition, because the join needs an event and its outcomes on the same one: the producer
picks each record's partition with :func:`fairwatch.contracts.partitioning.partition_for` (the Kafka
default partitioner's function, so single records keyed by event_id land there too), groups
records per (topic, partition), and sends a batch when it holds ``max_records`` records or
``max_bytes`` bytes, or ``linger`` seconds after its first record. Delivery uses an idempotent
Kafka producer (acks=all, retries without duplicates) and :meth:`close` flushes everything.

With a site's signing key (``fairwatch keys generate``) and the deployment it signs for, every
envelope is signed (:mod:`fairwatch.contracts.signing`: one Ed25519 signature over the envelope's
bytes, in Kafka headers; the envelope itself is unchanged), and a worker whose keyring requires
signatures for that deployment accepts it. Match events naming another deployment are refused
before they are sent.

Use it as::

    with FairwatchProducer("kafka-1:9092", signing_key="/etc/fairwatch/gate-a.key", deployment="gate-a") as producer:
        producer.send_event(match_event)        # a MatchEvent, or a dict shaped by the schema
        producer.send_outcome(verified_outcome)

or, in asyncio code, ``async with AsyncFairwatchProducer(...) as producer: await producer.send_event(...)``.

A system built on Amazon Rekognition sends each response as it comes, with the request parameters
the response does not repeat and the operator's metadata (:mod:`fairwatch.contracts.rekognition`,
docs/rekognition.md)::

    response = rekognition.search_faces_by_image(CollectionId=..., Image=..., FaceMatchThreshold=90, MaxFaces=5)
    producer.send_rekognition("SearchFacesByImage", response, request={"FaceMatchThreshold": 90, "MaxFaces": 5},
                              meta={"event_id": search_id, "occurred_at": when, "subject": groups})
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fairwatch.contracts.envelopes import BATCH_VERSION, MAX_BATCH_RECORDS
from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.contracts.keys import SigningKey, read_signing_key
from fairwatch.contracts.partitioning import partition_for
from fairwatch.contracts.records import (
    MAX_MESSAGE_BYTES,
    MatchEvent,
    VerifiedOutcome,
    parse_match_event,
    parse_verified_outcome,
)
from fairwatch.contracts.rekognition import DEFAULTS, RekognitionSettings, event_from_response
from fairwatch.contracts.signing import sign_value
from fairwatch.contracts.topics import DEAD_LETTER, MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.stream.topics import admin_options, input_partitions

_ENVELOPE_OVERHEAD = 96  # bytes of the envelope around its records, generously


class Envelope(NamedTuple):
    """One Kafka message ready to send."""

    topic: str
    partition: int
    key: bytes
    value: bytes
    records: int


def encode_record(record: MatchEvent | VerifiedOutcome | dict[str, Any], validate: bool = True) -> tuple[str, bytes]:
    """(event_id, compact JSON) of a record; dicts are checked against the contract unless told not to."""
    if isinstance(record, (MatchEvent, VerifiedOutcome)):
        return record.event_id, json.dumps(record.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    if not isinstance(record, dict):
        raise TypeError(f"a record is a MatchEvent, a VerifiedOutcome or a dict, not {type(record).__name__}")
    if validate:
        parser = parse_verified_outcome if "truth" in record else parse_match_event
        parser(record)  # raises ContractError naming the field
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError(f"a record needs a non-empty string event_id, got {event_id!r}")
    return event_id, json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


class InputSigner:
    """Signs the envelopes of one site: ``key`` (a :class:`SigningKey` or the path of its 0600
    file) signs for ``deployment``; ``topics`` maps the two input topics to their record kinds.

    >>> from fairwatch.contracts.keys import generate_key
    >>> signer = InputSigner(generate_key("gate-a-2026"), "gate-a", "fairwatch.")
    >>> [name for name, _ in signer.headers("fairwatch.match-events", b"{}")][-1]
    'fairwatch-signature'
    >>> signer.check_event({"event_id": "e1", "deployment": "gate-b"})
    Traceback (most recent call last):
    ValueError: event e1 names deployment 'gate-b', but this producer signs for 'gate-a'
    """

    def __init__(self, key: SigningKey | str | os.PathLike[str], deployment: str, topic_prefix: str):
        self.key = key if isinstance(key, SigningKey) else read_signing_key(key)
        if not deployment:
            raise ValueError("a signing producer needs the deployment it signs for")
        self.deployment = deployment
        self.kinds = {topic_prefix + MATCH_EVENTS: "match_event", topic_prefix + VERIFIED_OUTCOMES: "verified_outcome"}

    def headers(self, topic: str, value: bytes) -> list[tuple[str, bytes]]:
        return sign_value(self.key, self.deployment, self.kinds[topic], value)

    def check_event(self, record: MatchEvent | dict[str, Any]) -> None:
        """A signed envelope may only hold match events of the deployment it is signed for."""
        deployment = record.deployment if isinstance(record, MatchEvent) else record.get("deployment")
        if deployment != self.deployment:
            raise ValueError(f"event {record.event_id if isinstance(record, MatchEvent) else record.get('event_id')} "
                             f"names deployment {deployment!r}, but this producer signs for {self.deployment!r}")


@dataclass
class _Open:
    records: list[bytes] = field(default_factory=list)
    size: int = _ENVELOPE_OVERHEAD
    opened_at: float = 0.0


class BatchBuilder:
    """Groups encoded records per (topic, partition) into envelopes; no I/O, no clock of its own.

    Parameters
    ----------
    partitions
        Partition count of the input topics (both have the same; they are co-partitioned).
    max_records, max_bytes
        An envelope is closed when it reaches either bound.
    linger
        Seconds an envelope may wait for more records after its first one.

    Examples
    --------
    >>> builder = BatchBuilder(partitions=4, max_records=2, linger=1.0)
    >>> builder.add("t", "e-1", b'{"event_id":"e-1"}', now=0.0)
    []
    >>> [env] = builder.add("t", "e-4", b'{"event_id":"e-4"}', now=0.1)  # same partition: full
    >>> env.partition, env.records, json.loads(env.value)["bucket"]
    (3, 2, 3)
    >>> builder.add("t", "e-2", b'{"event_id":"e-2"}', now=0.2), builder.due(now=1.0)
    ([], [])
    >>> [(env.partition, env.records) for env in builder.due(now=1.3)]
    [(2, 1)]
    """

    def __init__(self, partitions: int, max_records: int = 100, max_bytes: int = 512 * 1024, linger: float = 0.05):
        if not 1 <= max_records <= MAX_BATCH_RECORDS:
            raise ValueError(f"max_records must be in [1, {MAX_BATCH_RECORDS}], got {max_records}")
        if not 1024 <= max_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"max_bytes must be in [1024, {MAX_MESSAGE_BYTES}], got {max_bytes}")
        self.partitions, self.max_records, self.max_bytes, self.linger = partitions, max_records, max_bytes, linger
        self._open: dict[tuple[str, int], _Open] = {}

    def add(self, topic: str, event_id: str, record: bytes, now: float) -> list[Envelope]:
        """Add one encoded record; returns the envelopes this closed (zero, one or two)."""
        if len(record) + _ENVELOPE_OVERHEAD > self.max_bytes:
            raise ValueError(f"record of {event_id!r} is {len(record)} bytes; an envelope holds at most {self.max_bytes}")
        key = (topic, partition_for(event_id, self.partitions))
        ready = []
        batch = self._open.get(key)
        if batch is not None and batch.size + len(record) + 1 > self.max_bytes:
            ready.append(self._close(key))
            batch = None
        if batch is None:
            batch = self._open[key] = _Open(opened_at=now)
        batch.records.append(record)
        batch.size += len(record) + 1
        if len(batch.records) >= self.max_records:
            ready.append(self._close(key))
        return ready

    def due(self, now: float) -> list[Envelope]:
        """Envelopes whose linger has expired."""
        return [self._close(key) for key, batch in list(self._open.items()) if now - batch.opened_at >= self.linger]

    def drain(self) -> list[Envelope]:
        return [self._close(key) for key in list(self._open)]

    def next_deadline(self) -> float | None:
        return min((b.opened_at + self.linger for b in self._open.values()), default=None)

    def _close(self, key: tuple[str, int]) -> Envelope:
        topic, partition = key
        batch = self._open.pop(key)
        head = b'{"batch_version":%d,"bucket":%d,"partitions":%d,"records":[' % (BATCH_VERSION, partition, self.partitions)
        value = head + b",".join(batch.records) + b"]}"
        return Envelope(topic, partition, b"bucket-%d" % partition, value, len(batch.records))


DEFAULT_MAX_RECORDS, SIGNED_MAX_RECORDS = 100, 500


def _max_records(max_records: int | None, signer: InputSigner | None) -> int:
    if max_records is not None:
        return max_records
    return DEFAULT_MAX_RECORDS if signer is None else SIGNED_MAX_RECORDS


def _signer(key, deployment: str | None, topic_prefix: str) -> InputSigner | None:
    if key is None and deployment is None:
        return None
    if key is None or not deployment:
        raise ValueError("signing needs both signing_key and deployment")
    return InputSigner(key, deployment, topic_prefix)


class FairwatchProducer:
    """Synchronous producer (kafka-python), thread-safe; a background thread enforces the linger.

    Parameters
    ----------
    bootstrap_servers
        Kafka bootstrap servers, ``host:port[,host:port]``.
    topic_prefix
        Prefix of the fairwatch topics (``FAIRWATCH_TOPIC_PREFIX``).
    partitions
        Partition count of the input topics; read from the cluster when None.
    max_records, max_bytes, linger
        Batch bounds (see :class:`BatchBuilder`). ``max_records`` defaults to 100, and to 500 for a
        signing producer: a worker verifies one signature per message (about 90 us, what it
        spends on 15 records), which costs it under 10% at 500 records a message.
    validate
        Check dict records against the contract before sending (raises ``ContractError``).
    link
        How to connect (security protocol, SASL, TLS); default: the ``FAIRWATCH_KAFKA_*`` settings of
        the environment (:class:`fairwatch.contracts.kafka_link.KafkaLink`).
    signing_key, deployment
        The site's signing key (a :class:`~fairwatch.contracts.keys.SigningKey`, or the path of
        the 0600 file ``fairwatch keys generate`` wrote) and the deployment it signs for: every
        envelope is then signed. Both or neither.
    kafka_options
        Extra ``KafkaProducer`` settings (compression, ...); they override ``link``'s. The admin
        client that reads the partition count gets the connection settings among them too.
    """

    def __init__(self, bootstrap_servers: str, *, topic_prefix: str = "fairwatch.", partitions: int | None = None,
                 max_records: int | None = None, max_bytes: int = 512 * 1024, linger: float = 0.05,
                 validate: bool = True, link: KafkaLink | None = None,
                 signing_key: SigningKey | str | os.PathLike[str] | None = None, deployment: str | None = None,
                 **kafka_options: Any):
        from kafka import KafkaProducer

        self.events_topic, self.outcomes_topic = topic_prefix + MATCH_EVENTS, topic_prefix + VERIFIED_OUTCOMES
        self.dead_letter_topic = topic_prefix + DEAD_LETTER
        self.validate = validate
        self._signer = _signer(signing_key, deployment, topic_prefix)
        options = {**(link or KafkaLink.from_env()).kafka_python_kwargs(), **kafka_options}
        if partitions is None:
            partitions = input_partitions(bootstrap_servers, topic_prefix, **admin_options(options))
        self._kafka = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True,
                                    linger_ms=5, max_request_size=MAX_MESSAGE_BYTES + 4096, **options)
        self._builder = BatchBuilder(partitions, _max_records(max_records, self._signer), max_bytes, linger)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._futures: list = []
        self.sent_records = self.sent_messages = 0
        self._linger_thread = threading.Thread(target=self._linger_loop, name="fairwatch-producer-linger", daemon=True)
        self._linger_thread.start()

    def send_event(self, event: MatchEvent | dict[str, Any]) -> None:
        self._add(self.events_topic, event)

    def send_outcome(self, outcome: VerifiedOutcome | dict[str, Any]) -> None:
        self._add(self.outcomes_topic, outcome)

    def send_rekognition(self, operation: str, response: dict[str, Any], meta: dict[str, Any],
                         request: dict[str, Any] | None = None,
                         settings: RekognitionSettings = DEFAULTS) -> MatchEvent:
        """Send the match event of one Amazon Rekognition call and return it.

        ``operation`` is CompareFaces, SearchFacesByImage or SearchFaces; ``response`` the
        response as the AWS SDK returned it; ``request`` the parameters it does not repeat
        (SimilarityThreshold, or FaceMatchThreshold and MaxFaces); ``meta`` the operator's
        event_id, occurred_at, deployment and subject groups (docs/rekognition.md). A record that
        does not convert raises ``ContractError`` naming the field, and nothing is sent.
        """
        event = event_from_response(operation, response, meta, request, settings)
        self.send_event(event)
        return event

    def send_dead_letter(self, record: dict[str, Any], key: bytes | None = None) -> None:
        """Send one dead-letter record (schemas/dead_letter.schema.json) to the dead-letter topic,
        unbatched; delivery is checked as the envelopes' is. The `producer` principal of the
        least-privilege setup may not write that topic (docs/security.md)."""
        if self._closed.is_set():
            raise RuntimeError("the producer is closed")
        value = json.dumps(record, separators=(",", ":")).encode()
        with self._lock:
            self._futures.append(self._kafka.send(self.dead_letter_topic, key=key, value=value))

    def send_encoded(self, topic: str, event_id: str, encoded: bytes) -> None:
        """Send one record that is already compact JSON (no check): for generators that know it is valid."""
        if self._closed.is_set():
            raise RuntimeError("the producer is closed")
        with self._lock:
            self._send(self._builder.add(topic, event_id, encoded, time.monotonic()))

    def _add(self, topic: str, record) -> None:
        if self._closed.is_set():
            raise RuntimeError("the producer is closed")
        if self._signer is not None and topic == self.events_topic:
            self._signer.check_event(record)
        event_id, encoded = encode_record(record, self.validate)
        with self._lock:
            self._send(self._builder.add(topic, event_id, encoded, time.monotonic()))

    def _send(self, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            headers = self._signer.headers(env.topic, env.value) if self._signer is not None else None
            self._futures.append(self._kafka.send(env.topic, key=env.key, value=env.value, partition=env.partition,
                                                  headers=headers))
            self.sent_records += env.records
            self.sent_messages += 1
        if len(self._futures) > 10_000:
            self._check_delivered(wait=False)

    def _check_delivered(self, wait: bool) -> None:
        pending = []
        for future in self._futures:
            if wait or future.is_done:
                future.get(timeout=120)  # raises the delivery error, if any
            else:
                pending.append(future)
        self._futures = pending

    def _linger_loop(self) -> None:
        while not self._closed.wait(self._builder.linger / 2):
            with self._lock:
                self._send(self._builder.due(time.monotonic()))

    def flush(self) -> None:
        """Send every open batch and wait until Kafka acknowledged all of them."""
        with self._lock:
            self._send(self._builder.drain())
        self._kafka.flush()
        with self._lock:
            self._check_delivered(wait=True)

    def close(self) -> None:
        if self._closed.is_set():
            return
        try:
            self.flush()
        finally:
            self._closed.set()
            self._kafka.close()

    def __enter__(self) -> FairwatchProducer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncFairwatchProducer:
    """The asyncio twin of :class:`FairwatchProducer` (aiokafka); same parameters."""

    def __init__(self, bootstrap_servers: str, *, topic_prefix: str = "fairwatch.", partitions: int | None = None,
                 max_records: int | None = None, max_bytes: int = 512 * 1024, linger: float = 0.05,
                 validate: bool = True, link: KafkaLink | None = None,
                 signing_key: SigningKey | str | os.PathLike[str] | None = None, deployment: str | None = None,
                 **kafka_options: Any):
        self._signer = _signer(signing_key, deployment, topic_prefix)
        link = link or KafkaLink.from_env()
        self._options = dict(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5,
                             max_request_size=MAX_MESSAGE_BYTES + 4096, **{**link.aiokafka_kwargs(), **kafka_options})
        # the partition count comes from a kafka-python admin client: same link, same overrides
        self._admin_options = {**link.kafka_python_kwargs(), **admin_options(kafka_options)}
        self.events_topic, self.outcomes_topic = topic_prefix + MATCH_EVENTS, topic_prefix + VERIFIED_OUTCOMES
        self._limits = (_max_records(max_records, self._signer), max_bytes, linger)
        self._partitions, self.validate = partitions, validate
        self._kafka = None
        self._builder: BatchBuilder | None = None
        self._pending: set[asyncio.Future] = set()
        self._linger_task: asyncio.Task | None = None
        self.sent_records = self.sent_messages = 0

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        partitions = self._partitions
        if partitions is None:
            prefix = self.events_topic[: -len(MATCH_EVENTS)]
            partitions = await asyncio.to_thread(input_partitions, self._options["bootstrap_servers"], prefix,
                                                 **self._admin_options)
        self._kafka = AIOKafkaProducer(**self._options)
        await self._kafka.start()
        self._builder = BatchBuilder(partitions, *self._limits)
        self._linger_task = asyncio.create_task(self._linger_loop())

    async def send_event(self, event: MatchEvent | dict[str, Any]) -> None:
        await self._add(self.events_topic, event)

    async def send_outcome(self, outcome: VerifiedOutcome | dict[str, Any]) -> None:
        await self._add(self.outcomes_topic, outcome)

    async def send_rekognition(self, operation: str, response: dict[str, Any], meta: dict[str, Any],
                               request: dict[str, Any] | None = None,
                               settings: RekognitionSettings = DEFAULTS) -> MatchEvent:
        """Send the match event of one Amazon Rekognition call and return it (see
        :meth:`FairwatchProducer.send_rekognition`)."""
        event = event_from_response(operation, response, meta, request, settings)
        await self.send_event(event)
        return event

    async def _add(self, topic: str, record) -> None:
        if self._builder is None:
            raise RuntimeError("call start() (or use `async with`) before sending")
        if self._signer is not None and topic == self.events_topic:
            self._signer.check_event(record)
        event_id, encoded = encode_record(record, self.validate)
        await self._send(self._builder.add(topic, event_id, encoded, time.monotonic()))

    async def _send(self, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            headers = self._signer.headers(env.topic, env.value) if self._signer is not None else None
            self._pending.add(await self._kafka.send(env.topic, env.value, key=env.key, partition=env.partition,
                                                     headers=headers))
            self.sent_records += env.records
            self.sent_messages += 1
        done = {f for f in self._pending if f.done()}
        for future in done:
            future.result()  # raises the delivery error, if any
        self._pending -= done

    async def _linger_loop(self) -> None:
        while True:
            await asyncio.sleep(self._builder.linger / 2)
            await self._send(self._builder.due(time.monotonic()))

    async def flush(self) -> None:
        await self._send(self._builder.drain())
        await self._kafka.flush()
        for future in self._pending:
            await future
        self._pending.clear()

    async def stop(self) -> None:
        if self._kafka is None:
            return
        try:
            if self._linger_task is not None:
                self._linger_task.cancel()
            await self.flush()
        finally:
            await self._kafka.stop()
            self._kafka = None

    async def __aenter__(self) -> AsyncFairwatchProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
