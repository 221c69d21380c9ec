"""Where the tests find Kafka, ClickHouse and Alertmanager.

If ``FAIRWATCH_KAFKA``, ``FAIRWATCH_CLICKHOUSE`` and ``FAIRWATCH_ALERTMANAGER`` are all set, the
tests use those services (for example a docker-compose stack). Otherwise they start, or reuse,
the local stack with ``scripts/stack up`` and use the addresses it prints. If the stack cannot be
started the error is raised: tests that need services never skip silently.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from fairwatch.contracts.kafka_link import KAFKA_LINK_ENVIRONMENT, KafkaLink, role_env

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "stack"
REQUIRED = ("FAIRWATCH_KAFKA", "FAIRWATCH_CLICKHOUSE", "FAIRWATCH_ALERTMANAGER")
KAFKA_ROLES = ("worker", "producer", "auditor")  # least-privileged principals beside admin (scripts/stack)
OPTIONAL = ("FAIRWATCH_CLICKHOUSE_HTTP", "FAIRWATCH_CLICKHOUSE_CA_FILE", "FAIRWATCH_ALERTMANAGER_USERNAME",
            "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE", "FAIRWATCH_ALERTMANAGER_CA_FILE", *KAFKA_LINK_ENVIRONMENT,
            *(f"FAIRWATCH_KAFKA_{role.upper()}_{what}" for role in KAFKA_ROLES for what in ("USERNAME", "PASSWORD_FILE")),
            "FAIRWATCH_KAFKA_MTLS", "FAIRWATCH_KAFKA_PRODUCER_CERT_FILE", "FAIRWATCH_KAFKA_PRODUCER_KEY_FILE")
# ClickHouse users besides the writer (FAIRWATCH_CLICKHOUSE): external services without them use
# FAIRWATCH_CLICKHOUSE for each
CLICKHOUSE_ROLES = ("FAIRWATCH_CLICKHOUSE_MIGRATOR", "FAIRWATCH_CLICKHOUSE_READER", "FAIRWATCH_CLICKHOUSE_AUDITOR")
EXPORT_LINE = re.compile(r"^export (FAIRWATCH_[A-Z0-9_]+)=(\S+)$")  # the value as the shell quotes it

_cached: dict[str, str] | None = None
_local = False


class StackUnavailable(RuntimeError):
    """The local service stack could not be started."""


def parse_exports(stdout: str) -> dict[str, str]:
    """Parse the ``export NAME=value`` lines of ``scripts/stack up``; any other line is an error."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        m = EXPORT_LINE.match(line)
        words = shlex.split(m.group(2)) if m else []
        if len(words) != 1:
            raise ValueError(f"unexpected line on stdout of scripts/stack: {line!r}")
        out[m.group(1)] = words[0]
    return out


def run_stack(command: str, env: dict[str, str] | None = None, timeout: float = 600,
              cluster: bool = False) -> subprocess.CompletedProcess:
    """Run ``scripts/stack COMMAND`` (with this Python: the script needs only the stdlib); with
    ``cluster``, on the cluster (``--cluster``)."""
    return subprocess.run([sys.executable, str(SCRIPT), command, *(["--cluster"] if cluster else [])], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


CLUSTER_REQUIRED = ("FAIRWATCH_CLUSTER_CLICKHOUSE_MIGRATOR", "FAIRWATCH_CLUSTER_CLICKHOUSE_NODES")
CLUSTER_PREFIX = "FAIRWATCH_" + "CLUSTER_"  # what `scripts/stack up --cluster` puts before the single stack's names


def ensure_cluster() -> dict[str, str]:
    """The cluster's addresses (``FAIRWATCH_CLUSTER_*``): external when all of CLUSTER_REQUIRED are
    set, else the local cluster (``scripts/stack up --cluster``, left running; ``make test`` stops it)."""
    if all(os.environ.get(k) for k in CLUSTER_REQUIRED):
        return {k: v for k, v in os.environ.items() if k.startswith(CLUSTER_PREFIX)}
    try:
        r = run_stack("up", cluster=True)
    except subprocess.TimeoutExpired as e:
        raise StackUnavailable(f"`scripts/stack up --cluster` did not finish in {e.timeout:.0f}s:\n{e.stderr or ''}") from e
    if r.returncode != 0:
        raise StackUnavailable(f"`scripts/stack up --cluster` failed with exit status {r.returncode}:\n{r.stderr}")
    return parse_exports(r.stdout)


def ensure_stack() -> dict[str, str]:
    """The service addresses as ``{"FAIRWATCH_KAFKA": ..., "FAIRWATCH_CLICKHOUSE": ..., ...}``.

    External services when all of REQUIRED are set in the environment, else the local stack
    (started if needed; it is left running for the next session, ``make test`` stops it).
    """
    global _cached, _local
    if _cached is not None:
        return dict(_cached)
    if all(os.environ.get(k) for k in REQUIRED):
        _cached = {k: os.environ[k] for k in REQUIRED + OPTIONAL + CLICKHOUSE_ROLES if os.environ.get(k)}
        for role in CLICKHOUSE_ROLES:
            _cached.setdefault(role, _cached["FAIRWATCH_CLICKHOUSE"])
        _local = False
        return dict(_cached)
    try:
        r = run_stack("up")
    except subprocess.TimeoutExpired as e:
        raise StackUnavailable(f"`scripts/stack up` did not finish in {e.timeout:.0f}s:\n{e.stderr or ''}") from e
    if r.returncode != 0:
        raise StackUnavailable(f"`scripts/stack up` failed with exit status {r.returncode}:\n{r.stderr}")
    env = parse_exports(r.stdout)
    missing = [k for k in REQUIRED if k not in env]
    if missing:
        raise StackUnavailable(f"`scripts/stack up` did not print {missing}; stdout was:\n{r.stdout}")
    _cached, _local = env, True
    return dict(env)


def local_stack_dir() -> Path | None:
    """The state dir of the local stack if ensure_stack() is using it, None for external services."""
    ensure_stack()
    if not _local:
        return None
    return configured_stack_dir()


def configured_stack_dir() -> Path:
    """Where scripts/stack keeps its state with this environment (whether or not it runs)."""
    cache = Path(os.path.expanduser(os.environ.get("FAIRWATCH_CACHE") or "~/.cache/fairwatch"))
    return Path(os.path.expanduser(os.environ.get("FAIRWATCH_STACK_DIR") or str(cache / "stack"))).resolve()


def configured_cluster_dir() -> Path:
    """Where ``scripts/stack --cluster`` keeps the cluster's state with this environment."""
    cache = Path(os.path.expanduser(os.environ.get("FAIRWATCH_CACHE") or "~/.cache/fairwatch"))
    return Path(os.path.expanduser(os.environ.get("FAIRWATCH_CLUSTER_DIR") or str(cache / "cluster"))).resolve()


def cluster_as_stack(cluster: dict[str, str]) -> dict[str, str]:
    """The cluster's settings (:func:`ensure_cluster`) under the single stack's names, which a worker,
    :func:`kafka_env` and ``LiveSetup`` read."""
    return {"FAIRWATCH_" + k[len(CLUSTER_PREFIX):]: v for k, v in cluster.items() if k.startswith(CLUSTER_PREFIX)}


def server_url(base: str, database: str) -> str:
    """The ClickHouse URL ``base`` with its database replaced by ``database`` (its TLS and
    password-file parameters kept)."""
    return urlunparse(urlparse(base)._replace(path=f"/{database}"))


def kafka_env(stack: dict[str, str], role: str = "admin") -> dict[str, str]:
    """The FAIRWATCH_KAFKA_* security settings of ``stack`` for principal ``role`` (admin, or one of
    KAFKA_ROLES), every name present ("" = unset) so that they replace inherited ones in a child's env.
    Without the role's exports (an insecure or external stack), the admin settings."""
    if role != "admin" and role not in KAFKA_ROLES:
        raise ValueError(f"unknown Kafka role {role!r}")
    return role_env(stack, role)


def kafka_link(stack: dict[str, str], role: str = "admin") -> KafkaLink:
    """The :class:`KafkaLink` of principal ``role`` on ``stack`` (see :func:`kafka_env`)."""
    return KafkaLink.from_env(kafka_env(stack, role))


# a row written by hand (tampering in tests, bulk rows in benchmarks) names the columns it gives: the
# tables gained columns since (migrations 014, 015), whose defaults fill the rest
INSERT_EVENT = ("INSERT INTO match_events (event_id, occurred_at, occurred_at_us, deployment, algorithm, mode, score, "
                "threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context, "
                "ingested_at, cluster_id)")
INSERT_OUTCOME = ("INSERT INTO verified_outcomes (event_id, verified_at, truth, reviewer, revision, inclusion_prob, "
                  "ingested_at)")


def wait_for_mutations(store) -> None:
    """ALTER ... UPDATE / DELETE are mutations that run in the background (18.16 has no
    mutations_sync): wait until every one of the store's database is done."""
    for _ in range(200):
        if not store.query_values("SELECT count() FROM system.mutations WHERE database = currentDatabase() "
                                  "AND is_done = 0")[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError("mutations did not finish")
