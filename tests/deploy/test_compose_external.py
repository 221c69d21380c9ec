"""deploy/external-clusters.yml: docker-compose.yml pointed at Kafka and ClickHouse clusters run
elsewhere (issue 30 item 5). The override is merged the way compose merges it (tests/deploy/compose.py)
and the result checked against the compose specification and the security rules of the base file;
tests/stream/test_cluster_workers.py runs the merged topics job, migrate job and workers against the
local cluster as the external one."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jsonschema
import pytest

from tests.deploy.compose import (
    EXTERNAL_CLUSTERS,
    PASSWORDS,
    example_env,
    external_mounts,
    load,
    load_with,
    merge,
    started_by_default,
)
from tests.deploy.test_deploy import _tool

EXTERNAL = {
    "FAIRWATCH_EXTERNAL_KAFKA": "kafka-a.example.org:9093,kafka-b.example.org:9093,kafka-c.example.org:9093",
    "FAIRWATCH_EXTERNAL_CLICKHOUSE_HOST": "ch-1.example.org",
    "FAIRWATCH_EXTERNAL_CLICKHOUSE_CLUSTER": "fairwatch",
    "FAIRWATCH_EXTERNAL_SECRETS": "/srv/fairwatch/secrets",
}
KAFKA_CLIENTS = {"topics": "admin", "worker": "worker", "worker-2": "worker", "simulator": "producer"}
CLICKHOUSE_CLIENTS = {"worker": ("FAIRWATCH_CLICKHOUSE", "writer", "worker"),
                      "worker-2": ("FAIRWATCH_CLICKHOUSE", "writer", "worker"),
                      "sealer": ("FAIRWATCH_CLICKHOUSE", "writer", "sealer"),
                      "migrate": ("FAIRWATCH_CLICKHOUSE_MIGRATOR", "migrator", "migrator")}


@pytest.fixture(scope="module")
def model() -> dict:
    return load_with(EXTERNAL_CLUSTERS, {**example_env(), **EXTERNAL})


def _in_mount(service: dict, path: str, role: str) -> bool:
    """``path`` lies in the service's mount of the role's directory of FAIRWATCH_EXTERNAL_SECRETS."""
    return any(path.startswith(target.rstrip("/") + "/") and source == Path(EXTERNAL["FAIRWATCH_EXTERNAL_SECRETS"]) / role
               for target, source in external_mounts(service).items())


def test_the_merged_file_is_a_valid_compose_file_that_starts_no_local_engine(model):
    schema = _tool("module", "compose-spec")
    import json

    jsonschema.validate(model, json.loads((Path(schema) / "schema" / "compose-spec.json").read_text()),
                        cls=jsonschema.Draft7Validator)
    started = started_by_default(model)
    assert "kafka" not in started and "clickhouse" not in started
    assert {"certs", "alertmanager", "grafana", "topics", "migrate", "worker", "sealer"} <= set(started)
    for name, service in model["services"].items():
        if name in ("kafka", "clickhouse"):
            continue
        assert not {"kafka", "clickhouse"} & set(service.get("depends_on", {})), name
    # without the override the same file still runs its own engines
    assert {"kafka", "clickhouse"} <= set(started_by_default(load()))


def test_every_kafka_client_uses_the_external_brokers_over_sasl_ssl_with_its_own_role(model):
    for name, role in KAFKA_CLIENTS.items():
        service = model["services"][name]
        env = service["environment"]
        assert env["FAIRWATCH_KAFKA"] == EXTERNAL["FAIRWATCH_EXTERNAL_KAFKA"], name
        assert env["FAIRWATCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["FAIRWATCH_KAFKA_SASL_MECHANISM"]
        assert env["FAIRWATCH_KAFKA_USERNAME"] == role and env["FAIRWATCH_KAFKA_PASSWORD"] == ""
        for key in ("FAIRWATCH_KAFKA_PASSWORD_FILE", "FAIRWATCH_KAFKA_CA_FILE"):
            assert _in_mount(service, env[key], role), (name, key)
        assert env["FAIRWATCH_KAFKA_CERT_FILE"] == env["FAIRWATCH_KAFKA_KEY_FILE"] == ""
    assert model["services"]["topics"]["environment"]["FAIRWATCH_REPLICATION"] == "3"
    assert model["services"]["topics"]["command"] == ["topics", "--grant-worker", "worker", "--grant-producer", "producer"]


def test_every_store_url_is_tls_to_the_cluster_with_its_users_password_file(model):
    for name, (key, user, role) in CLICKHOUSE_CLIENTS.items():
        service = model["services"][name]
        url = urlparse(service["environment"][key])
        query = parse_qs(url.query)
        assert (url.username, url.password, url.hostname, url.port) == (user, None, "ch-1.example.org", 9440), name
        assert query["secure"] == ["1"] and query["cluster"] == ["fairwatch"], name
        assert _in_mount(service, query["password_file"][0], role) and _in_mount(service, query["ca_certs"][0], role)
    grafana = model["services"]["grafana"]
    assert grafana["environment"]["FAIRWATCH_CLICKHOUSE_HOST"] == "ch-1.example.org"
    assert external_mounts(grafana)["/etc/grafana/fairwatch"] == Path(EXTERNAL["FAIRWATCH_EXTERNAL_SECRETS"]) / "grafana"


def test_each_role_mounts_only_its_own_directory_and_no_secret_is_in_the_file(model):
    secrets = Path(EXTERNAL["FAIRWATCH_EXTERNAL_SECRETS"])
    roles = {name: {source.name for source in external_mounts(s).values() if source.parent == secrets}
             for name, s in model["services"].items()}
    assert roles["topics"] == {"admin"} and roles["migrate"] == {"migrator"} and roles["sealer"] == {"sealer"}
    assert roles["worker"] == roles["worker-2"] == {"worker"} and roles["simulator"] == {"producer"}
    assert roles["grafana"] == {"grafana"} and not roles["alertmanager"] and not roles["certs"]
    text = EXTERNAL_CLUSTERS.read_text()
    assert not re.search(r"PASSWORD\}", text) and not re.search(r"(?i)password=[^&\s\"]", text)
    for name in PASSWORDS:
        assert name not in text


@pytest.mark.parametrize("missing", ["FAIRWATCH_EXTERNAL_KAFKA", "FAIRWATCH_EXTERNAL_CLICKHOUSE_HOST",
                                     "FAIRWATCH_EXTERNAL_CLICKHOUSE_CLUSTER", "FAIRWATCH_EXTERNAL_SECRETS"])
def test_a_missing_setting_stops_compose_with_its_name(missing):
    env = {**example_env(), **{k: v for k, v in EXTERNAL.items() if k != missing}}
    env[missing] = ""
    with pytest.raises(KeyError, match=missing):
        load_with(EXTERNAL_CLUSTERS, env)


def test_a_sequence_merged_without_override_is_refused():
    with pytest.raises(ValueError, match="tag it !override"):
        merge({"services": {"w": {"volumes": ["a:/a"]}}}, {"services": {"w": {"volumes": ["b:/b"]}}})
