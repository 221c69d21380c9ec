"""docker-compose.yml's Kafka and Alertmanager settings, run by the real servers (no docker engine here).

Kafka: the kafka service's environment, with its ports, paths and host names moved to this machine,
is turned into server.properties by the apache/kafka image's own code (kafka.docker.KafkaDockerWrapper
of the 4.1.1 jars that scripts/stack downloads, the version compose runs), which also formats the
storage; a broker is started on it with the files of the certs service. Then the compose jobs' and
workers' settings are used as they are: the topics job (User:admin) makes the topics and ACLs, the
worker and producer principals do what their ACLs allow and no more, and a client without a
certificate, or with one of another CA, is turned away. Kafka itself says whether each setting is one
it knows. Alertmanager (Debian's 0.25; compose runs 0.28.1) takes the certs service's web config:
401 without the password, 200 with the worker's settings over TLS, and the health check passes.

The certs service's command is run as in tests/deploy/test_compose_security.py. Both servers bind
loopback ports free at the time and are stopped by the fixtures.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.detect.delivery import alertmanager_client
from fairwatch.testing.live import free_port
from fairwatch.testing.stack import run_stack
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from tests.deploy.compose import REPO, example_env, host_path, load, run_certs

pytestmark = pytest.mark.services

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
# the broker's log here: INFO to stdout (the image's own log4j2.yaml is not in the jars; it changes no setting)
LOG4J = """status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
"""
CLIENT_PROPERTIES = REPO / "deploy" / "kafka" / "client-ssl.properties"


def kafka_home(version: str) -> Path:
    """The jars of Kafka ``version`` that scripts/stack installs (installed now if missing)."""
    cache = Path(os.path.expanduser(os.environ.get("FAIRWATCH_CACHE") or "~/.cache/fairwatch"))
    home = cache / f"kafka-{version}"
    if not (home / "libs.complete").exists() or not (home / "tools.complete").exists():
        result = run_stack("install", env={**os.environ, "FAIRWATCH_KAFKA_VERSION": version})
        assert result.returncode == 0, result.stderr[-3000:]
    assert (home / "libs.complete").exists() and (home / "tools.complete").exists(), home
    return home


def wait_until(check, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what} not within {timeout:.0f} s\n{tail}")
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module")
def made(compose, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compose-services")
    result = run_certs(compose, root, mounts_here=True)
    assert result.returncode == 0, result.stderr
    return root


# --- Kafka ------------------------------------------------------------------------------------


class Broker:
    def __init__(self, root: Path, ports: dict[str, int], properties: dict[str, str], log: Path):
        self.root, self.ports, self.properties, self.log = root, ports, properties, log
        self.internal = f"localhost:{ports['9092']}"
        self.external = f"localhost:{ports['29092']}"


def move(value: str, root: Path, compose: dict, ports: dict[str, int]) -> str:
    """A kafka setting of compose with its container paths, ports and host names moved here."""
    kafka = compose["services"]["kafka"]
    for path in re.findall(r"/etc/kafka/tls/[\w.-]+", value):
        value = value.replace(path, str(host_path(root, kafka, path)))
    value = value.replace("/var/lib/kafka/data", str(root / "kafka-data"))
    value = re.sub(r"\b(9092|9093|29092)\b", lambda m: str(ports[m.group(1)]), value)
    return value.replace("//kafka:", "//localhost:")


@pytest.fixture(scope="module")
def broker(compose, made, tmp_path_factory):
    kafka = compose["services"]["kafka"]
    version = kafka["image"].split(":")[1]
    home = kafka_home(version)
    root = tmp_path_factory.mktemp("compose-kafka")
    ports = {p: free_port() for p in ("9092", "9093", "29092")}
    env = {name: move(str(value), made, compose, ports) for name, value in kafka["environment"].items()}
    env["KAFKA_LOG_DIRS"] = str(root / "data")
    env["KAFKA_HEAP_OPTS"] = "-Xms256m -Xmx512m"
    for sub in ("default", "mounted", "final"):
        (root / sub).mkdir()
    java = [os.environ.get("JAVA", "java"), "-Xmx256m", "-cp", f"{home / 'libs'}/*"]
    # the image's launch script: the wrapper writes server.properties from KAFKA_* and formats the storage
    setup = subprocess.run([*java, "kafka.docker.KafkaDockerWrapper", "setup", "--default-configs-dir", str(root / "default"),
                            "--mounted-configs-dir", str(root / "mounted"), "--final-configs-dir", str(root / "final")],
                           env={"PATH": os.environ["PATH"], "HOME": str(root), **env}, capture_output=True, text=True,
                           timeout=120)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    text = (root / "final" / "server.properties").read_text()
    properties = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    log = root / "kafka.log"
    (root / "log4j2.properties").write_text(LOG4J)
    with log.open("wb") as out:
        process = subprocess.Popen([*java[:1], "-Xms256m", "-Xmx512m", "-cp", f"{home / 'libs'}/*",
                                    f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
                                    "kafka.Kafka", str(root / "final" / "server.properties")],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)
    try:
        wait_until(lambda: "Kafka Server started" in log.read_text(errors="replace") or process.poll() is not None,
                   120, "the broker's start", log)
        assert process.poll() is None, log.read_text()[-3000:]
        yield Broker(root, ports, properties, log)
    finally:
        stop(process)


def fairwatch_env(compose: dict, made: Path, service: str, broker: Broker) -> dict[str, str]:
    """A compose service's environment, its files and the broker's address moved here."""
    spec = compose["services"][service]
    env = {}
    for name, value in spec["environment"].items():
        value = str(value)
        if value.startswith("/etc/"):
            value = str(host_path(made, spec, value))
        env[name] = value
    env["FAIRWATCH_KAFKA"] = broker.internal
    return env


def link(compose, made, service, broker) -> KafkaLink:
    return KafkaLink.from_env(fairwatch_env(compose, made, service, broker))


def test_the_image_turns_the_kafka_environment_into_settings_kafka_knows(broker, compose):
    props = broker.properties
    assert props["listener.security.protocol.map"] == "INTERNAL:SSL,CONTROLLER:SSL,EXTERNAL:SSL"
    assert props["ssl.client.auth"] == "required"
    assert props["ssl.principal.mapping.rules"] == "RULE:^CN=([^,]+)$/$1/,DEFAULT"  # compose's $$ is one $
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:kafka;User:admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "heap.opts" not in props  # KAFKA_HEAP_OPTS is the JVM's, the wrapper leaves it out
    expected = {k[len("KAFKA_"):].lower().replace("_", ".") for k in compose["services"]["kafka"]["environment"]
                if k.startswith("KAFKA_") and k != "KAFKA_HEAP_OPTS"}
    assert set(props) == expected
    # Kafka's own list: at start the broker logs every setting it knows with the value it took
    # ("KafkaConfig values:"); the two it does not list belong to the StandardAuthorizer, whose
    # effect the ACL tests below show (admin needs no ACL; a principal without one is refused)
    log = broker.log.read_text(errors="replace")
    known = dict(re.findall(r"^\s+([a-z0-9.]+) = (.*)$", log.split("KafkaConfig values:", 1)[1], re.M))
    assert len(known) > 300
    assert set(props) - set(known) == {"super.users", "allow.everyone.if.no.acl.found"}
    for key in set(props) & set(known):  # lists are shown as [a, b]
        shown = known[key][1:-1].replace(", ", ",") if known[key].startswith("[") else known[key]
        assert shown == props[key], (key, known[key], props[key])


def test_the_health_check_command_answers_with_the_brokers_own_certificate(broker, compose, made):
    home = kafka_home(compose["services"]["kafka"]["image"].split(":")[1])
    check = compose["services"]["kafka"]["healthcheck"]["test"][1]
    assert f"--command-config {'/etc/kafka/fairwatch/client-ssl.properties'}" in check
    assert "./deploy/kafka/client-ssl.properties:/etc/kafka/fairwatch/client-ssl.properties:ro" in \
        compose["services"]["kafka"]["volumes"]
    config = broker.root / "client-ssl.properties"
    config.write_text(move(CLIENT_PROPERTIES.read_text(), made, compose, broker.ports))
    # kafka-broker-api-versions.sh runs this class
    result = subprocess.run(["java", "-Xmx128m", "-cp", f"{home / 'libs'}/*:{home / 'tools'}/*",
                             "org.apache.kafka.tools.BrokerApiVersionsCommand", "--bootstrap-server", broker.internal,
                             "--command-config", str(config)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"localhost:{broker.ports['9092']} (id: 1 rack: null" in result.stdout


@pytest.fixture(scope="module")
def topics_job(broker, compose, made):
    """The topics job as compose runs it (User:admin): topics, then the workers' and producers' ACLs."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "streams"),
           **fairwatch_env(compose, made, "topics", broker), "FAIRWATCH_PARTITIONS": "2"}
    result = subprocess.run([sys.executable, "-m", "fairwatch.cli", *compose["services"]["topics"]["command"]],
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def test_the_topics_job_makes_the_topics_and_grants_the_principals(topics_job, compose):
    prefix = example_env()["FAIRWATCH_TOPIC_PREFIX"]
    made_topics = dict(line.split("\t") for line in topics_job.stdout.splitlines())
    assert made_topics[f"{prefix}match-events"] == made_topics[f"{prefix}verified-outcomes"] == "2"
    assert "granted User:worker the worker's ACLs" in topics_job.stderr
    assert f"granted User:producer WRITE on the input topics of {prefix}" in topics_job.stderr


def records(topic: str, lk: KafkaLink, bootstrap: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **lk.kafka_python_kwargs())
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def test_each_principal_does_what_its_acls_allow_and_no_more(topics_job, broker, compose, made):
    prefix = example_env()["FAIRWATCH_TOPIC_PREFIX"]
    admin = link(compose, made, "topics", broker)
    producer_link, worker_link = link(compose, made, "simulator", broker), link(compose, made, "worker", broker)
    events, alerts = f"{prefix}match-events", f"{prefix}alerts"
    before = {t: records(t, admin, broker.internal) for t in (events, alerts)}
    # the producer (a site, the simulator): its input topics, on both listeners
    for bootstrap in (broker.internal, broker.external):
        producer = KafkaProducer(bootstrap_servers=bootstrap, **producer_link.kafka_python_kwargs())
        producer.send(events, b"{}").get(timeout=30)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(alerts, b"forged").get(timeout=30)
        producer.close()
    # and it may read nothing
    consumer = KafkaConsumer(events, bootstrap_servers=broker.internal, group_id=f"g{uuid.uuid4().hex[:6]}",
                             consumer_timeout_ms=3000, **producer_link.kafka_python_kwargs())
    with pytest.raises(Exception, match="Authorization"):
        list(consumer)
    consumer.close()
    # the worker: reads the inputs in its group, writes its own topics
    worker = KafkaProducer(bootstrap_servers=broker.internal, **worker_link.kafka_python_kwargs())
    worker.send(alerts, b"{}").get(timeout=30)
    worker.close()
    consumer = KafkaConsumer(events, bootstrap_servers=broker.internal, group_id="fairwatch", auto_offset_reset="earliest",
                             **worker_link.kafka_python_kwargs())
    got, deadline = [], time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        got += [m for batch in consumer.poll(timeout_ms=500).values() for m in batch]
    consumer.close()
    assert len(got) == 2
    assert records(events, admin, broker.internal) == before[events] + 2
    assert records(alerts, admin, broker.internal) == before[alerts] + 1  # the worker's, not the forged one


def refused(bootstrap: str, **options) -> bool:
    try:
        KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000,
                         **options).close()
    except KafkaTimeoutError as exc:  # kafka-python 3: "Unable to bootstrap from ..."
        return "Unable to bootstrap" in str(exc)
    return False


def test_strangers_are_turned_away_at_the_handshake(broker, compose, made, tmp_path):
    ca = str(host_path(made, compose["services"]["worker"], "/etc/fairwatch/tls/ca.pem"))
    # no certificate; plaintext
    for bootstrap in (broker.internal, broker.external):
        assert refused(bootstrap, security_protocol="SSL", ssl_cafile=ca)
        assert refused(bootstrap)
    # a certificate named admin, signed by another CA
    other = tmp_path / "other"
    result = subprocess.run([sys.executable, "-m", "fairwatch.cli", "tls", "init", "--dir", str(other / "tls"),
                             "--ca-dir", str(other / "ca"), "--client", "admin"],
                            env={**os.environ, "PYTHONPATH": str(REPO / "streams")}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    forged = other / "tls" / "admin"
    assert refused(broker.internal, security_protocol="SSL", ssl_cafile=ca, ssl_certfile=str(forged / "cert.pem"),
                   ssl_keyfile=str(forged / "key.pem"))
    # the handshake itself: the broker ends it without a client certificate
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", broker.ports["9092"]), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00")  # ApiVersions v0
                if not tls.recv(4):
                    raise ConnectionResetError("closed")
    # the broker's controller listener is on its container's loopback only
    assert "CONTROLLER://localhost:" in broker.properties["listeners"]


# --- Alertmanager ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alertmanager(compose, made, tmp_path_factory):
    assert os.access(ALERTMANAGER_BIN, os.X_OK), "prometheus-alertmanager missing: scripts/stack install installs it"
    service = compose["services"]["alertmanager"]
    root = tmp_path_factory.mktemp("compose-alertmanager")
    port = free_port()
    web_config = next(a.split("=", 1)[1] for a in service["command"] if a.startswith("--web.config.file="))
    args = [a for a in service["command"] if not a.startswith(("--config.file=", "--storage.path=", "--web.config.file="))]
    assert args == []
    log = root / "alertmanager.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [ALERTMANAGER_BIN, f"--config.file={REPO / 'deploy' / 'alertmanager' / 'alertmanager.yml'}",
             f"--storage.path={root}", f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
             f"--web.config.file={host_path(made, service, web_config)}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: "TLS is enabled" in log.read_text() or process.poll() is not None, 30,
                   "Alertmanager's start", log)
        assert process.poll() is None, log.read_text()
        yield f"https://localhost:{port}", process
    finally:
        stop(process)


def test_alertmanager_answers_the_workers_settings_and_refuses_everyone_else(alertmanager, compose, made):
    url, _ = alertmanager
    worker = compose["services"]["worker"]
    env = {k: (str(host_path(made, worker, v)) if str(v).startswith("/etc/") else str(v))
           for k, v in worker["environment"].items() if k.startswith("FAIRWATCH_ALERTMANAGER")}
    assert env.pop("FAIRWATCH_ALERTMANAGER") == "https://alertmanager:9093"
    ca = env["FAIRWATCH_ALERTMANAGER_CA_FILE"]
    silence = {"matchers": [{"name": "alertname", "value": "Fairwatch.*", "isRegex": True}],
               "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-02T00:00:00Z", "createdBy": "x", "comment": "x"}
    with alertmanager_client(url, 10, env) as client:
        assert client.get("/api/v2/status").status_code == 200
        assert client.post("/api/v2/alerts", json=[{"labels": {"alertname": "FairwatchComposeTest"}}]).status_code == 200
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca), timeout=10) as anonymous:
        assert anonymous.get("/api/v2/status").status_code == 401
        assert anonymous.post("/api/v2/silences", json=silence).status_code == 401
        assert anonymous.get("/-/healthy").status_code == 401
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca), timeout=10,
                      auth=("fairwatch", "wrong-password")) as wrong:
        assert wrong.get("/api/v2/status").status_code == 401
    # plaintext is refused; and a client that does not trust the local CA fails the handshake
    assert httpx.get(url.replace("https://", "http://") + "/api/v2/status", timeout=10).status_code == 400
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/v2/status", timeout=10)


def test_alertmanagers_health_check_passes_with_its_own_user(alertmanager, compose, made):
    url, _ = alertmanager
    test = compose["services"]["alertmanager"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "amtool"]
    args = [a.replace("https://localhost:9093", url) for a in test[2:]]
    config = next(a.split("=", 1)[1] for a in args if a.startswith("--http.config.file="))
    local = host_path(made, compose["services"]["alertmanager"], config)
    args = [f"--http.config.file={local}" if a.startswith("--http.config.file=") else a for a in args]
    ok = subprocess.run(["amtool", *args], capture_output=True, text=True, timeout=60, cwd="/")
    assert ok.returncode == 0, ok.stderr
    assert "route:" in ok.stdout  # `config show` printed the running config
    # the same check with a wrong password fails: it tests the auth, not only the port
    password_file = local.parent / "healthcheck-password"
    original = password_file.read_text()
    password_file.write_text("wrong")
    try:
        bad = subprocess.run(["amtool", *args], capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        password_file.write_text(original)
    assert bad.returncode != 0 and "401" in bad.stderr + bad.stdout
