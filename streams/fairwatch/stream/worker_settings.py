"""Every setting the worker reads from the environment, in one place.

The Helm chart, docker-compose and the docs' configuration reference document these names; a test
checks that they agree with :data:`WORKER_ENVIRONMENT`, so a setting cannot be read here without
being settable there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fairwatch.contracts.kafka_link import (
    KAFKA_LINK_ENVIRONMENT,
    KafkaLink,
    KafkaLinkError,
)
from fairwatch.contracts.topics import DEFAULT_PREFIX
from fairwatch.core.config import DAY_SECONDS, CoreConfig

# name -> (default, meaning); None as default means required
WORKER_ENVIRONMENT: dict[str, tuple[str | None, str]] = {
    "FAIRWATCH_KAFKA": (None, "Kafka bootstrap servers, host:port[,host:port]"),
    # how every Kafka client connects (the worker, `fairwatch topics`, simulate, smoke, the demo,
    # the producer SDK, alert delivery): fairwatch.contracts.kafka_link; empty is its default
    **{name: ("", meaning) for name, meaning in KAFKA_LINK_ENVIRONMENT.items()},
    "FAIRWATCH_CLICKHOUSE": (None, "store: clickhouse://user:pass@host:9000/db or chdb:///path"),
    "FAIRWATCH_TOPIC_PREFIX": (DEFAULT_PREFIX, "prefix of every topic"),
    "FAIRWATCH_PARTITIONS": ("8", "partitions of the input topics (fixed once created)"),
    "FAIRWATCH_REPLICATION": ("1", "replication factor of the topics the worker creates"),
    "FAIRWATCH_APP_ID": ("fairwatch", "faust application id = Kafka consumer group"),
    "FAIRWATCH_TABLE_STORE": ("rocksdb://", "faust table store for the join state: rocksdb:// or memory://"),
    "FAIRWATCH_DATA_DIR": ("./fairwatch-data", "where the worker keeps its on-disk table state"),
    "FAIRWATCH_WEB_HOST": ("127.0.0.1", "address of the worker's web endpoint (/metrics, /healthz)"),
    "FAIRWATCH_WEB_PORT": ("6066", "port of the worker's web endpoint"),
    "FAIRWATCH_BATCH_SIZE": ("5000", "messages per processing batch at most"),
    "FAIRWATCH_BATCH_WITHIN": ("0.2", "seconds to wait for a batch to fill"),
    "FAIRWATCH_BUCKET_SECONDS": ("60", "width of the event-time count buckets"),
    "FAIRWATCH_TTL_DAYS": ("30", "days an unpaired event or outcome waits before it expires"),
    "FAIRWATCH_INTERSECTIONS": ("", "intersections to count, e.g. sex&race,sex&age"),
    "FAIRWATCH_SESSION_TIMEOUT": ("30", "seconds before Kafka reassigns a dead worker's partitions"),
    "FAIRWATCH_INSTANCE_ID": ("", "static group membership id, e.g. the pod name (a restart keeps its partitions)"),
    "FAIRWATCH_COMMIT_SECONDS": ("2", "how often fully processed input offsets are committed"),
    "FAIRWATCH_SNAPSHOT_SECONDS": ("60", "how often estimate snapshots (last 1h and 24h) are written"),
    "FAIRWATCH_POLICIES": ("", "policy YAML file or directory; drift detection and alerting run only when set"),
    "FAIRWATCH_DETECT_SECONDS": ("60", "how often the detection cycle runs (on the owner of partition 0)"),
    "FAIRWATCH_ALERTMANAGER": ("", "Prometheus Alertmanager URL that receives alerts (optional)"),
    "FAIRWATCH_ALERTMANAGER_USERNAME": ("", "Alertmanager basic-auth user (optional)"),
    "FAIRWATCH_ALERTMANAGER_PASSWORD": ("", "that user's password (keep it secret: from a Secret)"),
    "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": ("", "a file holding that password, instead"),
    "FAIRWATCH_ALERTMANAGER_CA_FILE": ("", "CA that Alertmanager's TLS certificate is checked against (default: the system's)"),
    "FAIRWATCH_GRAFANA": ("", "Grafana URL that receives alert annotations (optional)"),
    "FAIRWATCH_GRAFANA_TOKEN": ("", "Grafana API token or service-account token (optional)"),
    "FAIRWATCH_AUDIT_KEY": ("", "HMAC key of the tamper-evident audit log (optional; keep it secret)"),
    "FAIRWATCH_KEYRING": ("", "keyring file (YAML or JSON): which public keys may sign input for which deployment;"
                              " signatures are checked only when set (docs/signed-input.md)"),
    "FAIRWATCH_AUDIT_CHAIN": ("", "audit log chain this process appends to (default: one per record kind)"),
}

# Read by other commands, or set by the image: name -> who reads it and what it means.
OTHER_ENVIRONMENT: dict[str, str] = {
    "FAIRWATCH_SCHEMAS": "every command that migrates: where schemas/clickhouse is (the image sets it)",
    "FAIRWATCH_CLICKHOUSE_HOST": "dashboards push and Grafana provisioning: ClickHouse host of the datasource",
    "FAIRWATCH_CLICKHOUSE_PORT": "dashboards push and Grafana provisioning: its native port (push: default 9440,"
                                 " TLS)",
    "FAIRWATCH_CLICKHOUSE_SECURE": "dashboards push: 0 for a plaintext datasource, asked for by name (default 1: TLS)",
    "FAIRWATCH_CLICKHOUSE_CA": "dashboards push: a PEM file of the CA the datasource verifies ClickHouse against",
    "FAIRWATCH_CLICKHOUSE_PROTOCOL": "dashboards push: native or http",
    "FAIRWATCH_CLICKHOUSE_DATABASE": "dashboards push and Grafana provisioning: its database",
    "FAIRWATCH_CLICKHOUSE_USER": "dashboards push and Grafana provisioning: a read-only user",
    "FAIRWATCH_CLICKHOUSE_PASSWORD": "dashboards push and Grafana provisioning: that user's password",
    "FAIRWATCH_CLICKHOUSE_PASSWORD_FILE": "dashboards push: a file holding that password (instead of _PASSWORD)",
    "FAIRWATCH_CLICKHOUSE_MIGRATOR": "fairwatch demo: the store URL of a user allowed DDL, for the run's database"
                                     " (default FAIRWATCH_CLICKHOUSE; scripts/stack exports it)",
    "FAIRWATCH_CLICKHOUSE_AUDITOR": "fairwatch demo: the read-only store URL its printed commands use"
                                    " (default FAIRWATCH_CLICKHOUSE; scripts/stack exports it)",
    "FAIRWATCH_REPORT_MIN_GROUP": "fairwatch report: groups with fewer verified comparisons are suppressed",
    "FAIRWATCH_RETENTION_DAYS": "fairwatch migrate: then keep rows this many days as TTLs (at least 183; unset: no"
                                " TTL, every row kept; a server without TTL says so)",
    "FAIRWATCH_DEMO_EVENTS": "make demo / fairwatch demo: match events to simulate",
    "FAIRWATCH_DEMO_SEED": "make demo: simulator seed",
    "FAIRWATCH_DEMO_SECONDS": "make demo: wall time the event time is compressed into",
    "FAIRWATCH_DEMO_WORKERS": "make demo: workers to start",
    "FAIRWATCH_DEMO_OUT": "make demo: output folder (HTML summary, files)",
    "FAIRWATCH_DEBUG": "every fairwatch command: 1 shows tracebacks instead of one `error:` line (as `fairwatch --debug`);"
                       " the worker then also serves faust's /table, /router, /graph and stats pages and /debug/*",
    # the evidence log (docs/evidence.md)
    "FAIRWATCH_EVIDENCE_KEY_FILE": "fairwatch audit seal, fairwatch replay: the operator's signer key file (0600 or"
                                   " stricter; refused when others can read it); replay seals at its end when set",
    "FAIRWATCH_EVIDENCE_KEY": "the same key as text, instead of the file (not both)",
    "FAIRWATCH_EVIDENCE_ORIGIN": "fairwatch audit seal, verify, prove, replay: the logs' origin prefix, naming the"
                                 " operator (default fairwatch): <origin>/deployment/<name>, <origin>/dead-letters",
    "FAIRWATCH_EVIDENCE_DIR": "fairwatch audit seal, replay: also write each checkpoint and consistency proof here,"
                              " outside the store; audit verify and witness read it",
    "FAIRWATCH_EVIDENCE_VERIFIER": "fairwatch audit verify, witness: the operator's public verifier key(s), comma"
                                   " separated, when no --key is given",
    "FAIRWATCH_WITNESS_KEY_FILE": "fairwatch audit witness: the witness's own signer key file (0600 or stricter)",
    "FAIRWATCH_WITNESS_KEY": "the same key as text, instead of the file (not both)",
    "FAIRWATCH_WITNESS_STATE": "fairwatch audit witness: its own directory, the last checkpoint it cosigned per log",
}


def _env(name: str) -> str:
    default, meaning = WORKER_ENVIRONMENT[name]
    value = os.environ.get(name, default)
    if value is None or value == "":
        if default is None:
            raise SettingsError(f"{name} is not set ({meaning})")
    return value or ""


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _kafka_link() -> KafkaLink:
    try:
        return KafkaLink.from_env(os.environ)
    except KafkaLinkError as exc:
        raise SettingsError(str(exc)) from None


def parse_intersections(text: str) -> tuple[tuple[str, ...], ...]:
    """``"sex&race, sex&age"`` -> ``(("sex", "race"), ("sex", "age"))``."""
    combos = tuple(tuple(a.strip() for a in part.split("&")) for part in text.split(",") if part.strip())
    for combo in combos:
        if len(combo) < 2 or not all(combo):
            raise SettingsError(f"FAIRWATCH_INTERSECTIONS: {'&'.join(combo)!r} must name two or more attributes")
    return combos


def _number(name: str, kind: type) -> float | int:
    text = _env(name)
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {text!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    kafka: str
    clickhouse: str
    topic_prefix: str = DEFAULT_PREFIX
    partitions: int = 8
    replication: int = 1
    app_id: str = "fairwatch"
    table_store: str = "rocksdb://"
    data_dir: Path = Path("./fairwatch-data")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 5000
    batch_within: float = 0.2  # batch envelopes rarely fill a batch: it is taken after this long
    session_timeout: float = 30.0
    commit_seconds: float = 2.0
    instance_id: str = ""
    snapshot_seconds: float = 60.0
    policies: str = ""
    detect_seconds: float = 60.0
    keyring: str = ""  # FAIRWATCH_KEYRING: the keyring file ("" = signatures not checked)
    core: CoreConfig = field(default_factory=CoreConfig)
    kafka_link: KafkaLink = field(default_factory=KafkaLink)  # FAIRWATCH_KAFKA_SECURITY_PROTOCOL etc.

    @classmethod
    def from_env(cls) -> WorkerSettings:
        return cls(
            kafka=_env("FAIRWATCH_KAFKA"),
            clickhouse=_env("FAIRWATCH_CLICKHOUSE"),
            topic_prefix=_env("FAIRWATCH_TOPIC_PREFIX"),
            partitions=int(_number("FAIRWATCH_PARTITIONS", int)),
            replication=int(_number("FAIRWATCH_REPLICATION", int)),
            app_id=_env("FAIRWATCH_APP_ID"),
            table_store=_env("FAIRWATCH_TABLE_STORE"),
            data_dir=Path(_env("FAIRWATCH_DATA_DIR")),
            web_host=_env("FAIRWATCH_WEB_HOST"),
            web_port=int(_number("FAIRWATCH_WEB_PORT", int)),
            batch_size=int(_number("FAIRWATCH_BATCH_SIZE", int)),
            batch_within=float(_number("FAIRWATCH_BATCH_WITHIN", float)),
            session_timeout=float(_number("FAIRWATCH_SESSION_TIMEOUT", float)),
            commit_seconds=float(_number("FAIRWATCH_COMMIT_SECONDS", float)),
            instance_id=_env("FAIRWATCH_INSTANCE_ID"),
            snapshot_seconds=float(_number("FAIRWATCH_SNAPSHOT_SECONDS", float)),
            policies=_env("FAIRWATCH_POLICIES"),
            detect_seconds=float(_number("FAIRWATCH_DETECT_SECONDS", float)),
            keyring=_env("FAIRWATCH_KEYRING"),
            kafka_link=_kafka_link(),
            core=CoreConfig(
                bucket_seconds=int(_number("FAIRWATCH_BUCKET_SECONDS", int)),
                ttl_seconds=int(float(_number("FAIRWATCH_TTL_DAYS", float)) * DAY_SECONDS),
                intersections=parse_intersections(_env("FAIRWATCH_INTERSECTIONS")),
            ),
        )

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
