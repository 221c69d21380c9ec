"""The secured Kafka of the stack refuses strangers and keeps each principal to its ACLs.

Every refusal is asserted as the broker's specific answer (a closed connection, an authentication
failure, a failed certificate check, an authorisation error), and where a forged write was
attempted, the admin counts what the topic holds afterwards. The authorised path is checked with an
exact count. Needs the stack's secured broker: an insecure (FAIRWATCH_STACK_INSECURE) or
external PLAINTEXT broker has nothing to test here, and that is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from contextlib import closing

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from aiokafka.protocol.metadata import MetadataRequest
from fairwatch.contracts.topics import (
    ALERTS,
    PRODUCED_TOPICS,
    MATCH_EVENTS,
    VERIFIED_OUTCOMES,
)
from fairwatch.stream.topics import ensure_topics, grant_producer, revoke_producer
from fairwatch.testing.live import delete_resources
from fairwatch.testing.stack import kafka_link
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import (
    GroupAuthorizationFailedError,
    NoError,
    TopicAuthorizationFailedError,
)

pytestmark = pytest.mark.services

PARTITIONS = 2


@pytest.fixture(scope="module")
def secured(stack):
    link = kafka_link(stack)
    assert link.security_protocol == "SASL_SSL" and link.ca_file, \
        "the stack's Kafka is not secured (FAIRWATCH_STACK_INSECURE set, or an external PLAINTEXT broker?)"
    for role in ("worker", "producer", "auditor"):
        assert kafka_link(stack, role).username == role, f"the stack exports no {role} principal"
    return stack


@pytest.fixture
def prefix(secured):
    """Fresh topics (inputs and outputs) made by the admin; the producer may write its inputs."""
    kafka, admin = secured["FAIRWATCH_KAFKA"], kafka_link(secured)
    name = f"sec{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka, name, PARTITIONS, link=admin)
    grant_producer(kafka, name, link=admin)
    yield name
    revoke_producer(kafka, name, link=admin)
    delete_resources(kafka, (name,), [], "", [], link=admin)


def host_port(stack) -> tuple[str, int]:
    host, port = stack["FAIRWATCH_KAFKA"].rsplit(":", 1)
    return host, int(port)


def records_in(stack, topic: str) -> int:
    """How many records ``topic`` holds, as the admin sees them (end minus start offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=stack["FAIRWATCH_KAFKA"], **kafka_link(stack).kafka_python_kwargs())
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends, starts = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        consumer.close()


def try_produce(stack, topic: str, **options) -> Exception:
    """An aiokafka producer with ``options`` tries to write one record; returns what stopped it."""
    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=stack["FAIRWATCH_KAFKA"], request_timeout_ms=5000, **options)
        try:
            await producer.start()
            await producer.send_and_wait(topic, b"forged")
        finally:
            await producer.stop()

    try:
        asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 - returned to be asserted on
        return exc
    raise AssertionError(f"the write to {topic} with {sorted(options)} succeeded")


def connect(stack, **options):
    """One aiokafka connection (TLS handshake and SASL authentication included), closed again."""
    async def main():
        conn = await create_conn(*host_port(stack), **options)
        conn.close()

    asyncio.run(main())


def test_a_plaintext_client_is_not_answered_and_writes_nothing(secured, prefix):
    topic = prefix + MATCH_EVENTS
    with pytest.raises(KafkaConnectionError, match="closed"):
        connect(secured)  # PLAINTEXT ApiVersions to a TLS port: the broker drops the connection
    failed = try_produce(secured, topic)
    assert isinstance(failed, KafkaConnectionError) and "Unable to bootstrap" in str(failed)
    assert records_in(secured, topic) == 0


def test_tls_without_sasl_gets_no_metadata(secured):
    """The CA trusted but no credentials: ApiVersions is answered, any other request drops the link."""
    link = kafka_link(secured)

    async def main():
        conn = await create_conn(*host_port(secured), security_protocol="SSL", ssl_context=link.ssl_context())
        try:
            await conn.send(MetadataRequest([]))
        finally:
            conn.close()

    with pytest.raises(KafkaConnectionError, match="closed"):
        asyncio.run(main())


def test_a_wrong_password_is_refused_by_sasl(secured, prefix):
    link = kafka_link(secured)
    wrong = {**link.aiokafka_kwargs(), "sasl_plain_password": link.password[::-1]}
    with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
        connect(secured, **wrong)
    failed = try_produce(secured, prefix + MATCH_EVENTS, **wrong)
    assert isinstance(failed, KafkaConnectionError)
    assert records_in(secured, prefix + MATCH_EVENTS) == 0


def test_a_client_that_does_not_trust_the_stack_ca_fails_the_tls_handshake(secured, prefix):
    untrusting = {**kafka_link(secured).aiokafka_kwargs(), "ssl_context": ssl.create_default_context()}
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        connect(secured, **untrusting)
    assert isinstance(try_produce(secured, prefix + MATCH_EVENTS, **untrusting), KafkaConnectionError)
    assert records_in(secured, prefix + MATCH_EVENTS) == 0


def test_the_producer_cannot_write_alerts_or_read_inputs(secured, prefix):
    options = kafka_link(secured, "producer").kafka_python_kwargs()
    kafka = secured["FAIRWATCH_KAFKA"]
    producer = KafkaProducer(bootstrap_servers=kafka, max_block_ms=10_000, **options)
    try:
        with pytest.raises(TopicAuthorizationFailedError, match=prefix + ALERTS):
            producer.send(prefix + ALERTS, b"forged alert").get(timeout=10)
    finally:
        producer.close()
    assert records_in(secured, prefix + ALERTS) == 0
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, **options)
    try:
        consumer.assign([TopicPartition(prefix + MATCH_EVENTS, 0)])
        with pytest.raises(TopicAuthorizationFailedError, match=prefix + MATCH_EVENTS):
            consumer.poll(timeout_ms=5000)
    finally:
        consumer.close()


def test_the_producer_writes_its_input_topics_and_the_admin_reads_exactly_those(secured, prefix):
    kafka = secured["FAIRWATCH_KAFKA"]
    sent = {topic: [f"{topic}-{i}-{uuid.uuid4().hex[:6]}".encode() for i in range(n)]
            for topic, n in ((prefix + MATCH_EVENTS, 37), (prefix + VERIFIED_OUTCOMES, 11))}
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True,
                             **kafka_link(secured, "producer").kafka_python_kwargs())
    try:
        for topic, values in sent.items():
            for value in values:
                producer.send(topic, value)
        producer.flush(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(*sent, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             enable_auto_commit=False, **kafka_link(secured).kafka_python_kwargs())
    got: dict[str, list[bytes]] = {topic: [] for topic in sent}
    try:
        for message in consumer:
            got[message.topic].append(message.value)
    finally:
        consumer.close()
    assert {t: sorted(v) for t, v in got.items()} == {t: sorted(v) for t, v in sent.items()}
    assert {t: records_in(secured, t) for t in sent} == {prefix + MATCH_EVENTS: 37, prefix + VERIFIED_OUTCOMES: 11}


def test_the_auditor_reads_nothing_from_kafka(secured, prefix):
    kafka = secured["FAIRWATCH_KAFKA"]
    # a record it could have read, were it allowed
    producer = KafkaProducer(bootstrap_servers=kafka, **kafka_link(secured, "producer").kafka_python_kwargs())
    producer.send(prefix + MATCH_EVENTS, b"visible to the worker only").get(timeout=10)
    producer.close()
    options = kafka_link(secured, "auditor").kafka_python_kwargs()
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, **options)
    try:
        assert consumer.topics() == set()  # not even the names
        with pytest.raises(TopicAuthorizationFailedError, match=prefix + MATCH_EVENTS):
            consumer.end_offsets([TopicPartition(prefix + MATCH_EVENTS, 0)])
    finally:
        consumer.close()
    group = KafkaConsumer(prefix + MATCH_EVENTS, bootstrap_servers=kafka, group_id=f"{prefix}auditor",
                          auto_offset_reset="earliest", enable_auto_commit=False, **options)
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            group.poll(timeout_ms=5000)
    finally:
        group.close()


def test_the_stack_grants_each_principal_what_it_needs_and_no_more(secured):
    """The ACLs scripts/stack adds, as the broker lists them."""
    admin = KafkaAdminClient(bootstrap_servers=secured["FAIRWATCH_KAFKA"], **kafka_link(secured).kafka_python_kwargs())
    try:
        acls, error = admin.describe_acls(ACLFilter(
            principal=None, host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)))
    finally:
        admin.close()
    assert error is NoError, error
    grants = {(a.principal, a.resource_pattern.resource_type.name, a.resource_pattern.resource_name,
               a.resource_pattern.pattern_type.name, a.operation.name, a.permission_type.name) for a in acls}
    by_stack = {g for g in grants if not g[2].startswith(("sec", "t", "p", "fairwatch-demo-"))}
    expected = {("User:worker", "TOPIC", "*", "LITERAL", op, "ALLOW")
                for op in ("READ", "DESCRIBE", "WRITE", "CREATE", "DESCRIBE_CONFIGS")}
    expected |= {("User:worker", "GROUP", "*", "LITERAL", op, "ALLOW") for op in ("READ", "DESCRIBE")}
    expected |= {("User:producer", "TOPIC", "fairwatch." + t, "LITERAL", op, "ALLOW")
                 for t in PRODUCED_TOPICS for op in ("WRITE", "DESCRIBE")}
    assert by_stack == expected
    assert not [g for g in grants if g[0] == "User:auditor"]
    assert all(g[5] == "ALLOW" and g[1] == "TOPIC" and g[4] in ("WRITE", "DESCRIBE")
               for g in grants if g[0] == "User:producer")


# ---- mutual TLS: a client certificate is the credential -------------------------------------------------


def _mtls_producer(stack, **override) -> KafkaProducer:
    context = ssl.create_default_context(cafile=kafka_link(stack).ca_file)
    options = dict(certfile=stack["FAIRWATCH_KAFKA_PRODUCER_CERT_FILE"], keyfile=stack["FAIRWATCH_KAFKA_PRODUCER_KEY_FILE"])
    options.update(override)
    if options["certfile"]:
        context.load_cert_chain(options["certfile"], options["keyfile"])
    return KafkaProducer(bootstrap_servers=stack["FAIRWATCH_KAFKA_MTLS"], security_protocol="SSL", ssl_context=context,
                         request_timeout_ms=5000, max_block_ms=4000, retries=0)


def test_the_mutual_tls_listener_takes_the_producers_certificate_and_refuses_others(secured, prefix, tmp_path):
    """The second listener asks for a client certificate signed by the stack's CA; its CN is the
    principal (User:producer), with that principal's ACLs. Oracle: the admin's count of records."""
    import subprocess

    topic = prefix + MATCH_EVENTS
    with closing(_mtls_producer(secured)) as producer:  # the authorised path: 9 records
        for i in range(9):
            producer.send(topic, key=b"k", value=b"v%d" % i).get(timeout=15)
        with pytest.raises(TopicAuthorizationFailedError):  # the producer's ACLs: not the alerts topic
            producer.send(prefix + ALERTS, value=b"forged").get(timeout=15)
    assert records_in(secured, topic) == 9 and records_in(secured, prefix + ALERTS) == 0
    # no certificate, or one the stack's CA did not sign: the broker ends the TLS handshake with an
    # alert (Java answers "bad certificate" / "certificate unknown"), so no request is ever read
    key, cert = tmp_path / "own.key", tmp_path / "own.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=producer"], check=True, capture_output=True)
    host, port = secured["FAIRWATCH_KAFKA_MTLS"].rsplit(":", 1)
    for own, alert in ((None, "BAD_CERTIFICATE"), ((str(cert), str(key)), "CERTIFICATE_UNKNOWN")):
        context = ssl.create_default_context(cafile=kafka_link(secured).ca_file)
        if own:
            context.load_cert_chain(*own)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with pytest.raises(ssl.SSLError, match=alert):
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    tls.sendall(b"\x00\x00\x00\x00")  # TLS 1.3: the alert comes with the first read
                    tls.recv(4)
    assert records_in(secured, topic) == 9


def test_a_sites_certificate_writes_its_own_deployments_topics_and_not_anothers(secured, tmp_path):
    """The issue's attack "a producer writing another deployment's topic": with one topic prefix
    per deployment, each site's principal (its certificate's CN, signed by the stack's CA) is
    granted only its own prefix's input topics. Oracle: the admin's count of each topic."""
    import subprocess

    from fairwatch.testing.stack import local_stack_dir

    tls = local_stack_dir() / "tls"
    admin, kafka = kafka_link(secured), secured["FAIRWATCH_KAFKA"]
    sites = {}
    for site in ("site-a", "site-b"):
        key, csr, cert = (tmp_path / f"{site}.{ext}" for ext in ("key", "csr", "pem"))
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                        "-subj", f"/CN={site}"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(tls / "ca.pem"), "-CAkey",
                        str(tls / "ca.key"), "-CAcreateserial", "-CAserial", str(tmp_path / "ca.srl"), "-out", str(cert),
                        "-days", "1"], check=True, capture_output=True)
        prefix = f"{site.replace('-', '')}{uuid.uuid4().hex[:6]}."
        ensure_topics(kafka, prefix, PARTITIONS, link=admin)
        grant_producer(kafka, prefix, principal=site, link=admin)
        sites[site] = (prefix, str(cert), str(key))
    try:
        (own, cert, key), (other, _, _) = sites["site-a"], sites["site-b"]
        with closing(_mtls_producer(secured, certfile=cert, keyfile=key)) as producer:
            for i in range(5):
                producer.send(own + MATCH_EVENTS, value=b"e%d" % i).get(timeout=15)
            for topic in (other + MATCH_EVENTS, other + VERIFIED_OUTCOMES):
                with pytest.raises(TopicAuthorizationFailedError):
                    producer.send(topic, value=b"forged").get(timeout=15)
        assert records_in(secured, own + MATCH_EVENTS) == 5
        assert records_in(secured, other + MATCH_EVENTS) == records_in(secured, other + VERIFIED_OUTCOMES) == 0
    finally:
        for site, (prefix, _, _) in sites.items():
            revoke_producer(kafka, prefix, principal=site, link=admin)
            delete_resources(kafka, (prefix,), [], "", [], link=admin)
