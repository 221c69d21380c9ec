"""Deployment files: the Helm chart, docker-compose.yml and the Dockerfile.

No cluster and no docker engine here, so what can be checked without one is checked against
independent references: `helm lint` / `helm template` (helm from the Go module proxy, cached by
scripts/tools); the rendered manifests against the Kubernetes OpenAPI schemas bundled in the
`kubernetes-validate` package and the KEDA / Prometheus Operator CRD schemas of their Go modules;
the compose file against the Compose Specification schema shipped in compose-go; the Alertmanager
config with amtool. The drift tests take streams/fairwatch/stream/worker_settings.py as the oracle: every setting
the worker reads must be settable in the chart and in compose, with the same defaults.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fairwatch.stream.worker_settings import WORKER_ENVIRONMENT
from fairwatch.testing.docs import configuration_page

from tests.deploy.compose import PASSWORDS, env_example, interpolate

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "fairwatch"
PRODUCTION = CHART / "values-production.yaml"
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "fairwatch.env.example"
# oldest Kubernetes the chart supports (persistentVolumeClaimRetentionPolicy, policy/v1) and newest bundled
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
# settings whose deployed value differs from the code's default, on purpose
DEPLOYED_OVERRIDES = {
    "FAIRWATCH_KAFKA": "no default: the cluster's address",
    "FAIRWATCH_CLICKHOUSE": "no default: the store's URL, from a Secret",
    "FAIRWATCH_DATA_DIR": "the mounted state volume instead of the working directory",
    "FAIRWATCH_WEB_HOST": "probes and Prometheus reach the pod from outside its loopback",
    "FAIRWATCH_INSTANCE_ID": "each worker's stable name (pod name, compose service) for static membership",
    "FAIRWATCH_ALERTMANAGER": "the deployment's Alertmanager (the compose service, the chart's value)",
    "FAIRWATCH_ALERTMANAGER_PASSWORD": "from a Secret in the chart (optional key), never a value",
    "FAIRWATCH_KAFKA_PASSWORD": "from a Secret in the chart (optional key), never a value",
    "FAIRWATCH_GRAFANA": "the deployment's Grafana (the compose service, the chart's value)",
    "FAIRWATCH_GRAFANA_TOKEN": "a secret: from a Secret / the env file, never a value in the manifest",
    "FAIRWATCH_AUDIT_KEY": "a secret: from a Secret / the env file, never a value in the manifest",
}
# compose is secured by default: its links' settings name the files of the certs service's volumes
COMPOSE_OVERRIDES = {
    **DEPLOYED_OVERRIDES,
    **{f"FAIRWATCH_KAFKA_{name}": "mutual TLS with the certificate of the mounted tls-* volume"
       for name in ("SECURITY_PROTOCOL", "CA_FILE", "CERT_FILE", "KEY_FILE")},
    **{f"FAIRWATCH_ALERTMANAGER_{name}": "basic auth over TLS, the password a file of tls-worker"
       for name in ("USERNAME", "PASSWORD_FILE", "CA_FILE")},
}


# --- tools ------------------------------------------------------------------------------------

def _tool(*args: str) -> str:
    result = subprocess.run([str(REPO / "scripts" / "tools"), *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"scripts/tools {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def helm() -> str:
    return _tool("helm")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def render(helm: str, *args: str) -> list[dict]:
    result = run_helm(helm, "template", "fw", str(CHART), "--namespace", "audit", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def default_docs(helm) -> list[dict]:
    return render(helm)


@pytest.fixture(scope="module")
def production_docs(helm) -> list[dict]:
    return render(helm, "-f", str(PRODUCTION))


def one(docs: list[dict], kind: str, component: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind
             and (component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def env_names(container: dict) -> list[str]:
    return [e["name"] for e in container.get("env", [])]


# --- what the code reads (the oracle of the drift tests) ---------------------------------------

@cache
def variables_the_code_reads() -> frozenset[str]:
    source = "\n".join(p.read_text() for p in (REPO / "streams" / "fairwatch").rglob("*.py"))
    return frozenset(re.findall(r'"(FAIRWATCH_[A-Z0-9_]+)"', source))


@cache
def variables_the_readme_documents() -> frozenset[str]:
    """FAIRWATCH_* variables the documentation documents: the configuration page (docs site),
    generated at every docs build by docs/hooks/generate.py; built here with the same function.

    The README no longer holds the settings tables. Fails when a variable the code reads is not
    on that page (so a setting cannot be added without being documented).
    """
    page = configuration_page()
    documented = frozenset(re.findall(r"^\| `(FAIRWATCH_[A-Z0-9_]+)`", page, re.M))
    undocumented = variables_the_code_reads() - documented
    assert not undocumented, f"read by streams/fairwatch but not on the configuration page: {sorted(undocumented)}"
    return documented


def unsettable(settings: dict, deployed: set[str]) -> set[str]:
    """Settings the worker reads that a deployment cannot set."""
    return set(settings) - deployed


def unknown(deployed: set[str]) -> set[str]:
    """FAIRWATCH_* variables a deployment sets that neither the code reads nor the configuration page documents."""
    return {n for n in deployed if n.startswith("FAIRWATCH_")} - variables_the_code_reads() \
        - variables_the_readme_documents()


def test_drift_checks_catch_a_new_setting():
    # the checks themselves, on a hand-made case: a setting added to the worker but not deployed
    deployed = set(WORKER_ENVIRONMENT)
    added = dict(WORKER_ENVIRONMENT, FAIRWATCH_SOMETHING_NEW=("1", "new"))
    assert unsettable(added, deployed) == {"FAIRWATCH_SOMETHING_NEW"}
    assert unknown(deployed | {"FAIRWATCH_TYPO_KAFKA"}) == {"FAIRWATCH_TYPO_KAFKA"}
    assert "FAIRWATCH_KAFKA" in variables_the_code_reads()


# --- Helm --------------------------------------------------------------------------------------

def test_helm_lint_passes_with_default_and_production_values(helm):
    for extra in ([], ["-f", str(PRODUCTION)]):
        result = run_helm(helm, "lint", "--strict", str(CHART), *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


def test_default_render_has_the_expected_objects(default_docs, production_docs):
    kinds = sorted(d["kind"] for d in default_docs if d["kind"] != "ConfigMap")
    assert kinds == sorted(["ServiceAccount", "Secret", "Service", "StatefulSet", "PodDisruptionBudget", "Job",
                            "NetworkPolicy"]), kinds
    # one ConfigMap per dashboard, holding the file unchanged, labelled for the Grafana sidecar
    dashboards = {p.name: p.read_text() for p in (REPO / "dashboards" / "json").glob("*.json")}
    assert dashboards, "no dashboards in dashboards/json"
    maps = [d for d in default_docs if d["kind"] == "ConfigMap"]
    assert {k: v for m in maps for k, v in m["data"].items()} == {k: v.rstrip("\n") for k, v in dashboards.items()}
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "1" for m in maps)
    kinds = sorted(d["kind"] for d in production_docs)
    # production: existing Secret (none rendered), policies ConfigMap, ServiceMonitor, KEDA
    assert "Secret" not in kinds
    for kind in ("ConfigMap", "ServiceMonitor", "ScaledObject", "StatefulSet", "PodDisruptionBudget", "Job"):
        assert kind in kinds, kinds
    # KEDA owns the replica count when enabled: the StatefulSet must not fight it
    assert "replicas" not in one(production_docs, "StatefulSet", "worker")["spec"]


@cache
def crd_schema(kind: str) -> dict:
    """openAPIV3Schema of a CRD, made strict (unknown fields rejected) the way kubeconform -strict does."""
    module, path, version = {
        "ScaledObject": ("keda", "config/crd/bases/keda.sh_scaledobjects.yaml", "v1alpha1"),
        "ServiceMonitor": ("prometheus-operator",
                           "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml", "v1"),
    }[kind]
    crd = yaml.safe_load((Path(_tool("module", module)) / path).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)

    def strict(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)
        return node

    schema = strict(copy.deepcopy(schema))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is checked by the API server
    return schema


def validate_manifest(doc: dict, version: str) -> None:
    if doc["kind"] in ("ScaledObject", "ServiceMonitor"):
        jsonschema.validate(doc, crd_schema(doc["kind"]), cls=jsonschema.Draft7Validator)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_network_policy_opens_only_the_web_port_of_the_workers_to_the_listed_peers(default_docs, helm):
    policy = one(default_docs, "NetworkPolicy")
    workers = one(default_docs, "StatefulSet", "worker")["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= workers["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    ports = {p["name"]: p["containerPort"] for c in workers["spec"]["containers"] for p in c.get("ports", [])}
    assert rule["ports"] == [{"port": "web", "protocol": "TCP"}] and "web" in ports  # a named port that exists
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert "NetworkPolicy" not in {d["kind"] for d in render(helm, "--set", "networkPolicy.enabled=false")}


def test_rendered_manifests_pass_schema_validation(default_docs, production_docs):
    for docs in (default_docs, production_docs):
        for doc in docs:
            for version in KUBERNETES_VERSIONS:
                validate_manifest(doc, version)


def test_the_validators_reject_a_broken_manifest(production_docs):
    # without this, a validator that accepts anything would pass the test above
    statefulset = copy.deepcopy(one(production_docs, "StatefulSet", "worker"))
    statefulset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(statefulset, KUBERNETES_VERSIONS[0])
    statefulset = copy.deepcopy(one(production_docs, "StatefulSet", "worker"))
    statefulset["spec"]["podManagementPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(statefulset, KUBERNETES_VERSIONS[-1])
    scaled = copy.deepcopy(one(production_docs, "ScaledObject"))
    scaled["spec"]["cooldownPeriods"] = 300
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(scaled, KUBERNETES_VERSIONS[0])
    monitor = copy.deepcopy(one(production_docs, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "every minute"
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(monitor, KUBERNETES_VERSIONS[0])


@pytest.mark.parametrize("values, message", [
    (["--set", "worker.replicas=9"], "worker.replicas (9) exceeds kafka.partitions (8)"),
    (["--set", "kafka.partitions=4", "--set", "worker.replicas=5"], "worker.replicas (5) exceeds kafka.partitions (4)"),
    (["--set", "keda.enabled=true", "--set", "keda.maxReplicas=12"], "keda.maxReplicas (12) exceeds kafka.partitions (8)"),
    (["--set", "kafka.sasl.enabled=true", "--set", "kafka.sasl.username=w"], "would send the Kafka password in clear"),
    (["--set", "kafka.sasl.enabled=true", "--set", "kafka.tls.enabled=true"], "needs kafka.sasl.username"),
    (["--set", "kafka.sasl.mechanism=GSSAPI"], "mechanism"),
    (["--set", "alertmanager.url=http://am:9093", "--set", "alertmanager.username=fw"], "needs an https alertmanager.url"),
    (["--set", "clickhouse.url="], "set clickhouse.url or clickhouse.existingSecret"),
    # values.schema.json: a misspelt setting or a wrong type is refused, not silently ignored
    (["--set", "worker.batchsize=100"], "additional properties 'batchsize' not allowed"),
    (["--set", "worker.tableStore=redis://"], "tableStore"),
    (["--set", "kafka.partitions=0"], "partitions"),
    # the evidence log's sealer needs the operator's key, which only its operator can make
    (["--set", "evidence.enabled=true"], "evidence.enabled needs evidence.keySecret"),
    (["--set", "evidence.sealSeconds=0"], "sealSeconds"),
    (["--set", "evidence.origin="], "origin"),
])
def test_chart_refuses_values_the_workers_cannot_honour(helm, values, message):
    result = run_helm(helm, "template", "fw", str(CHART), *values)
    assert result.returncode != 0
    assert message in result.stderr


def test_kafka_sasl_ssl_clickhouse_and_alertmanager_tls_render_for_workers_and_the_migrations_job(helm):
    """Security issue: the chart renders the links secured. Oracle: the settings each value must
    give (fairwatch.contracts.kafka_link reads them), the Secret keys and the mounted files."""
    docs = render(helm, "--set", "kafka.tls.enabled=true", "--set", "kafka.tls.caSecret=kafka-ca",
                  "--set", "kafka.tls.clientCertSecret=fw-client", "--set", "kafka.sasl.enabled=true",
                  "--set", "kafka.sasl.username=worker", "--set", "secrets.kafkaPassword=k4fka",
                  "--set", "clickhouse.caSecret=ch-ca", "--set", "alertmanager.caSecret=am-ca",
                  "--set", "alertmanager.url=https://am:9093", "--set", "alertmanager.username=fairwatch",
                  "--set", "secrets.alertmanagerPassword=am-pw")
    secret = one(docs, "Secret")
    assert secret["stringData"]["kafka-password"] == "k4fka" and secret["stringData"]["alertmanager-password"] == "am-pw"
    job = one(docs, "Job")["spec"]["template"]["spec"]
    pods = [one(docs, "StatefulSet", "worker")["spec"]["template"]["spec"], job]
    containers = [pods[0]["containers"][0], *job["initContainers"]]  # the ones that talk to Kafka
    expected = {"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "FAIRWATCH_KAFKA_USERNAME": "worker", "FAIRWATCH_KAFKA_PASSWORD_FILE": "",
                "FAIRWATCH_KAFKA_CA_FILE": "/etc/fairwatch/kafka-ca/ca.crt",
                "FAIRWATCH_KAFKA_CERT_FILE": "/etc/fairwatch/kafka-client/tls.crt",
                "FAIRWATCH_KAFKA_KEY_FILE": "/etc/fairwatch/kafka-client/tls.key"}
    for container in containers:
        env = {e["name"]: e for e in container["env"]}
        assert {k: env[k].get("value") for k in expected} == expected, container["name"]
        assert env["FAIRWATCH_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "kafka-password"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert {k: mounts.get(k) for k in ("kafka-ca", "kafka-client", "clickhouse-ca", "alertmanager-ca")} == {
            "kafka-ca": "/etc/fairwatch/kafka-ca", "kafka-client": "/etc/fairwatch/kafka-client",
            "clickhouse-ca": "/etc/fairwatch/clickhouse-ca", "alertmanager-ca": "/etc/fairwatch/alertmanager-ca"}
    for pod in pods:
        volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert volumes == {"kafka-ca": "kafka-ca", "kafka-client": "fw-client", "clickhouse-ca": "ch-ca",
                           "alertmanager-ca": "am-ca"}
    [migrate] = job["containers"]
    assert not [e["name"] for e in migrate["env"] if e["name"].startswith("FAIRWATCH_KAFKA")]  # no Kafka credential
    assert {m["name"] for m in migrate["volumeMounts"]} == {"tmp", "clickhouse-ca"}  # nor the Kafka client key
    migrator = {e["name"]: e for e in migrate["env"]}["FAIRWATCH_CLICKHOUSE_MIGRATOR"]
    assert migrator["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "clickhouse-migrator-url",
                                                     "optional": True}
    worker = {e["name"]: e for e in pods[0]["containers"][0]["env"]}
    assert worker["FAIRWATCH_ALERTMANAGER_CA_FILE"]["value"] == "/etc/fairwatch/alertmanager-ca/ca.crt"
    assert worker["FAIRWATCH_ALERTMANAGER_USERNAME"]["value"] == "fairwatch"
    assert worker["FAIRWATCH_ALERTMANAGER_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "alertmanager-password"
    # TLS alone: SSL, no SASL settings
    tls_only = one(render(helm, "--set", "kafka.tls.enabled=true"), "StatefulSet", "worker")
    plain = {e["name"]: e.get("value") for e in tls_only["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (plain["FAIRWATCH_KAFKA_SECURITY_PROTOCOL"], plain["FAIRWATCH_KAFKA_USERNAME"], plain["FAIRWATCH_KAFKA_CA_FILE"]) \
        == ("SSL", "", "")


def test_replicas_up_to_the_partition_count_render(helm):
    docs = render(helm, "--set", "kafka.partitions=4", "--set", "worker.replicas=4")
    assert one(docs, "StatefulSet", "worker")["spec"]["replicas"] == 4


def test_chart_sets_every_worker_setting_and_nothing_unknown(default_docs, production_docs):
    for docs in (default_docs, production_docs):
        worker = one(docs, "StatefulSet", "worker")["spec"]["template"]["spec"]["containers"][0]
        names = env_names(worker)
        assert len(names) == len(set(names)), "an env var is set twice"
        assert not unsettable(WORKER_ENVIRONMENT, set(names)), unsettable(WORKER_ENVIRONMENT, set(names))
        assert not unknown(set(names)), unknown(set(names))
        job = one(docs, "Job")["spec"]["template"]["spec"]
        for container in job["initContainers"] + job["containers"]:
            assert not unknown(set(env_names(container)))
            # the topics/migrate verbs read these (cli.py envvar=...), so they must match the workers';
            # only migrate may have a store URL of its own: a user allowed DDL
            for entry in container["env"]:
                if (container["name"], entry["name"]) != ("migrate", "FAIRWATCH_CLICKHOUSE_MIGRATOR"):
                    assert entry in worker["env"], f"{container['name']}: {entry} differs from the workers'"


def test_chart_defaults_are_the_settings_defaults(default_docs):
    worker = one(default_docs, "StatefulSet", "worker")["spec"]["template"]["spec"]["containers"][0]
    values = {e["name"]: e.get("value") for e in worker["env"]}
    for name, (default, _) in WORKER_ENVIRONMENT.items():
        if name not in DEPLOYED_OVERRIDES:
            assert values[name] == default, f"chart default of {name} is {values[name]!r}, the worker's {default!r}"
    assert values["FAIRWATCH_WEB_HOST"] == "0.0.0.0"
    instance = next(e for e in worker["env"] if e["name"] == "FAIRWATCH_INSTANCE_ID")
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # static membership per pod
    [store] = [e for e in worker["env"] if e["name"] == "FAIRWATCH_CLICKHOUSE"]
    assert store["valueFrom"]["secretKeyRef"]["key"] == "clickhouse-url"


def test_probes_and_state_volume_point_where_the_worker_listens_and_writes(default_docs, production_docs):
    for docs in (default_docs, production_docs):
        statefulset = one(docs, "StatefulSet", "worker")
        pod = statefulset["spec"]["template"]["spec"]
        worker = pod["containers"][0]
        values = {e["name"]: e.get("value") for e in worker["env"]}
        ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
        assert ports["web"] == int(values["FAIRWATCH_WEB_PORT"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert worker[probe]["httpGet"] == {"path": "/healthz", "port": "web"}
        mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
        assert mounts["data"] == values["FAIRWATCH_DATA_DIR"]
        assert [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]] == ["data"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert worker["securityContext"]["readOnlyRootFilesystem"] is True
        pdb = one(docs, "PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= statefulset["spec"]["template"]["metadata"][
            "labels"].items()
    scaled = one(production_docs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                        "name": one(production_docs, "StatefulSet", "worker")["metadata"]["name"]}
    trigger = scaled["triggers"][0]["metadata"]
    worker_env = {e["name"]: e.get("value") for e in
                  one(production_docs, "StatefulSet", "worker")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert trigger["consumerGroup"] == worker_env["FAIRWATCH_APP_ID"]
    assert scaled["maxReplicaCount"] <= int(worker_env["FAIRWATCH_PARTITIONS"])
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert behavior["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": behavior[
        "stabilizationWindowSeconds"]}]
    monitor = one(production_docs, "ServiceMonitor")["spec"]
    service = one(production_docs, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_migrations_job_is_a_hook_running_topics_then_migrate(default_docs):
    job = one(default_docs, "Job")
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"post-install", "pre-upgrade"}
    spec = job["spec"]["template"]["spec"]
    assert [c["args"] for c in spec["initContainers"]] == [["topics"]]
    assert [c["args"] for c in spec["containers"]] == [["migrate"]]


# --- the evidence log's sealer -----------------------------------------------------------------

EVIDENCE = ("--set", "evidence.enabled=true", "--set", "evidence.keySecret=fw-evidence-key",
            "--set", "evidence.origin=audit.example.org/fairwatch", "--set", "evidence.sealSeconds=45",
            "--set", "clickhouse.caSecret=ch-ca", "--set", "kafka.tls.enabled=true",
            "--set", "kafka.tls.caSecret=kafka-ca", "--set", "kafka.tls.clientCertSecret=fw-client")


@pytest.fixture(scope="module")
def evidence_docs(helm) -> list[dict]:
    return render(helm, *EVIDENCE)


def sealer_parts(docs: list[dict]) -> tuple[dict, dict, dict, dict]:
    """The sealer's StatefulSet, pod spec, sealer container and its env (name -> entry)."""
    sealer = one(docs, "StatefulSet", "sealer")
    pod = sealer["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return sealer, pod, container, {e["name"]: e for e in container["env"]}


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def test_one_sealer_at_most_never_two(evidence_docs, default_docs):
    """Two sealers at once would append at the same indices and fork the log. A StatefulSet of one
    replica replaces its pod only once the old one is gone (a Deployment, even with Recreate,
    replaces an evicted or deleted pod while the old one may still run): the oracle is the
    Kubernetes documentation of both."""
    sealer, _, container, _ = sealer_parts(evidence_docs)
    assert sealer["spec"]["replicas"] == 1
    assert sealer["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sealer["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert not [d for d in evidence_docs if d["kind"] in ("Deployment", "ReplicaSet", "DaemonSet")]
    labels = sealer["spec"]["template"]["metadata"]["labels"]
    assert selects(sealer["spec"]["selector"]["matchLabels"], labels)
    # nothing scales it, serves it or counts it among the workers
    assert not [d for d in evidence_docs if d["kind"] == "Service" and selects(d["spec"]["selector"], labels)]
    assert sealer["spec"]["serviceName"] not in {d["metadata"]["name"] for d in evidence_docs if d["kind"] == "Service"}
    assert not [d for d in evidence_docs if d["kind"] == "PodDisruptionBudget"
                and selects(d["spec"]["selector"]["matchLabels"], labels)]
    assert not selects(one(evidence_docs, "StatefulSet", "worker")["spec"]["selector"]["matchLabels"], labels)
    assert container["args"] == ["audit", "seal", "--every", "45"]
    assert "ports" not in container
    # off by default: it needs a key that only its operator can make
    assert not [d for d in default_docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "sealer"]


def test_the_sealer_writes_to_clickhouse_as_the_workers_do_and_nothing_else(evidence_docs, helm):
    _, pod, container, env = sealer_parts(evidence_docs)
    workers = one(evidence_docs, "StatefulSet", "worker")["spec"]["template"]["spec"]
    worker_env = {e["name"]: e for e in workers["containers"][0]["env"]}
    assert env["FAIRWATCH_CLICKHOUSE"] == worker_env["FAIRWATCH_CLICKHOUSE"]  # the writer's URL, from the Secret
    assert "value" not in env["FAIRWATCH_CLICKHOUSE"]
    assert env["FAIRWATCH_EVIDENCE_ORIGIN"]["value"] == "audit.example.org/fairwatch"
    assert set(env) == {"FAIRWATCH_CLICKHOUSE", "FAIRWATCH_EVIDENCE_KEY_FILE", "FAIRWATCH_EVIDENCE_DIR",
                        "FAIRWATCH_EVIDENCE_ORIGIN"}  # no Kafka, Alertmanager or Grafana credential
    assert not unknown(set(env)), unknown(set(env))
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    worker_mounts = {m["name"]: m for m in workers["containers"][0]["volumeMounts"]}
    assert mounts["clickhouse-ca"] == worker_mounts["clickhouse-ca"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["clickhouse-ca"] == {v["name"]: v for v in workers["volumes"]}["clickhouse-ca"]
    assert not {"kafka-ca", "kafka-client", "alertmanager-ca"} & (set(mounts) | set(volumes))
    # like the workers: non-root, read-only root filesystem, no Kubernetes API token
    assert pod["securityContext"] == workers["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for each in (container, *pod["initContainers"]):
        assert each["securityContext"] == workers["containers"][0]["securityContext"]
        assert each["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    # what it writes goes to volumes: the checkpoints, /tmp, the key's copy
    writable = {m["mountPath"] for c in (container, *pod["initContainers"]) for m in c["volumeMounts"]
                if not m.get("readOnly")}
    assert writable == {"/var/lib/fairwatch", "/tmp", "/run/fairwatch/evidence-key"}
    # without a CA Secret, nothing is mounted for it
    plain = sealer_parts(render(helm, "--set", "evidence.enabled=true", "--set", "evidence.keySecret=k"))
    assert "clickhouse-ca" not in {m["name"] for m in plain[2]["volumeMounts"]}


def run_key_copy(init: dict, source: Path, target: Path) -> subprocess.CompletedProcess:
    """The init container's command with its two paths (the Secret's file, the copy) moved here."""
    python, flag, script, _, _ = init["command"]
    assert (python, flag) == ("python", "-c")
    return subprocess.run([sys.executable, "-c", script, str(source), str(target)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO / "streams")}, check=False)


def test_the_operator_key_reaches_the_sealer_as_a_file_only_its_user_can_read(evidence_docs, tmp_path):
    """The Secret is mounted with defaultMode 0400, but under the pod's fsGroup the kubelet makes
    its files 0440 (kubernetes/kubernetes#57923), which fairwatch refuses as a key file. Oracle:
    fairwatch.contracts.keys.read_signing_key, what `fairwatch audit seal` reads the key with."""
    from fairwatch.contracts.keys import (
        BadKey,
        generate_key,
        read_signing_key,
        write_signing_key,
    )

    _, pod, container, env = sealer_parts(evidence_docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    [init] = pod["initContainers"]
    secret_volume = volumes["evidence-key-secret"]["secret"]
    assert secret_volume["secretName"] == "fw-evidence-key"
    assert secret_volume["defaultMode"] == 0o400
    assert secret_volume["items"] == [{"key": "operator.key", "path": "operator.key"}]
    assert volumes["evidence-key"]["emptyDir"]["medium"] == "Memory"  # the copy never reaches a disk
    # only the init container sees the Secret; the sealer gets the copy, read-only
    init_mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert init_mounts["evidence-key-secret"]["readOnly"] is True
    assert "evidence-key-secret" not in {m["name"] for m in container["volumeMounts"]}
    [key_mount] = [m for m in container["volumeMounts"] if m["name"] == "evidence-key"]
    assert key_mount["readOnly"] is True
    key_file = env["FAIRWATCH_EVIDENCE_KEY_FILE"]["value"]
    assert key_file == init["command"][-1]
    assert Path(key_file).parent == Path(key_mount["mountPath"]) == Path(init_mounts["evidence-key"]["mountPath"])
    assert init["command"][-2] == init_mounts["evidence-key-secret"]["mountPath"] + "/operator.key"
    assert "env" not in init  # the key's copy needs no store credential

    # the file as the kubelet leaves it under fsGroup: fairwatch refuses it as it is
    operator = generate_key("operator-2026")
    secret_file = write_signing_key(operator, tmp_path / "secret-operator.key")
    secret_file.chmod(0o440)
    with pytest.raises(BadKey, match="can be read by others"):
        read_signing_key(secret_file)
    copy = tmp_path / "copy" / "operator.key"
    copy.parent.mkdir()
    for start in ("first start", "restart, the copy already there"):
        result = run_key_copy(init, secret_file, copy)
        assert result.returncode == 0, (start, result.stderr)
        assert (copy.stat().st_mode & 0o777) == 0o400, start
        assert read_signing_key(copy).verifier == operator.verifier, start
    assert operator.verifier.key_id in result.stdout
    secret_text = operator.text().split("+", 4)[4]  # PRIVATE+KEY+name+hash+base64 (base64 may hold "+")
    assert secret_text not in result.stdout + result.stderr
    # a Secret holding something else stops the pod with one line naming the file, not the content
    secret_file.chmod(0o640)
    secret_file.write_text("PRIVATE+KEY+operator-2026+0000000+" + "A" * 44 + "\n")
    result = run_key_copy(init, secret_file, copy)
    assert result.returncode != 0
    assert result.stderr.startswith(f"error: the operator key {secret_file}:")
    assert "A" * 44 not in result.stderr


def test_the_checkpoints_live_on_a_claim_that_outlives_the_release(evidence_docs, helm):
    _, pod, container, env = sealer_parts(evidence_docs)
    [claim] = [d for d in evidence_docs if d["kind"] == "PersistentVolumeClaim"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "checkpoints"]
    checkpoint_dir = Path(env["FAIRWATCH_EVIDENCE_DIR"]["value"])
    # a folder of the claim, so that its root's lost+found is never taken for a log
    assert checkpoint_dir.parent == Path(mount["mountPath"]) and not mount.get("readOnly")
    existing = render(helm, "--set", "evidence.enabled=true", "--set", "evidence.keySecret=k",
                      "--set", "evidence.checkpoints.existingClaim=audit-checkpoints")
    assert "PersistentVolumeClaim" not in {d["kind"] for d in existing}
    existing_pod = sealer_parts(existing)[1]
    assert {v["name"]: v for v in existing_pod["volumes"]}["checkpoints"]["persistentVolumeClaim"] == {
        "claimName": "audit-checkpoints"}


def test_the_sealer_takes_no_connection_and_reaches_only_dns_and_clickhouse(evidence_docs, helm):
    sealer = one(evidence_docs, "StatefulSet", "sealer")
    labels = sealer["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in evidence_docs if d["kind"] == "NetworkPolicy"]
    [policy] = [p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
    workers = one(evidence_docs, "StatefulSet", "worker")["spec"]["template"]["metadata"]["labels"]
    assert not selects(policy["spec"]["podSelector"]["matchLabels"], workers)
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("ingress")  # Ingress listed with no rule: nothing may connect
    assert policy["spec"]["egress"] == [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"ports": [{"port": 9000, "protocol": "TCP"}, {"port": 9440, "protocol": "TCP"}]},
    ]
    narrowed = render(helm, "--set", "evidence.enabled=true", "--set", "evidence.keySecret=k",
                      "--set", "evidence.networkPolicy.clickhouseTo[0].ipBlock.cidr=10.1.2.0/24",
                      "--set", "evidence.networkPolicy.clickhousePorts={9440}")
    [policy] = [d for d in narrowed if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-sealer")]
    assert policy["spec"]["egress"][1] == {"ports": [{"port": 9440, "protocol": "TCP"}],
                                           "to": [{"ipBlock": {"cidr": "10.1.2.0/24"}}]}
    for doc in narrowed:
        for version in KUBERNETES_VERSIONS:
            validate_manifest(doc, version)
    off = render(helm, "--set", "evidence.enabled=true", "--set", "evidence.keySecret=k",
                 "--set", "networkPolicy.enabled=false")
    assert "NetworkPolicy" not in {d["kind"] for d in off}


def test_evidence_manifests_pass_schema_validation(evidence_docs, production_docs):
    assert one(production_docs, "StatefulSet", "sealer")  # the production example runs the sealer
    for doc in evidence_docs:
        for version in KUBERNETES_VERSIONS:
            validate_manifest(doc, version)


# --- docker-compose ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved like compose does


@pytest.fixture(scope="module")
def compose(compose_raw) -> dict:
    secrets = {k: "s3cret-" + k.lower() for k, v in env_example().items() if "PASSWORD" in k and not v}
    return interpolate(compose_raw, {**env_example(), **secrets})


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    path = Path(_tool("module", "compose-spec")) / "schema" / "compose-spec.json"
    return json.loads(path.read_text())


def test_compose_file_validates_against_the_compose_specification(compose, compose_schema):
    jsonschema.validate(compose, compose_schema, cls=jsonschema.Draft7Validator)
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["depends_on"]["kafka"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema, cls=jsonschema.Draft7Validator)


def test_compose_secrets_come_from_the_env_file(compose_raw):
    # an empty env file must not start anything: every password is required, none has a default
    with pytest.raises(KeyError):
        interpolate(compose_raw, {})
    text = COMPOSE.read_text()
    assert set(re.findall(r"\$\{([A-Z_]*PASSWORD)", text)) == set(PASSWORDS)
    for name in PASSWORDS:
        assert re.search(rf"\$\{{{name}:\?", text) and not re.search(rf"\$\{{{name}:-", text), name
        assert env_example()[name] == "", f"{name} must be empty in the example: each deployment makes its own"
        # each one alone, missing, stops compose with its name
        others = {k: "x" for k in PASSWORDS if k != name}
        with pytest.raises(KeyError, match=name):
            interpolate(compose_raw, {**env_example(), **others})
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used <= set(env_example()), f"not in deploy/fairwatch.env.example: {used - set(env_example())}"


def test_every_compose_service_has_a_healthcheck_or_a_reason(compose):
    for name, service in compose["services"].items():
        reason = service.get("x-no-healthcheck", "")
        assert ("healthcheck" in service) != bool(reason), f"{name}: a healthcheck or x-no-healthcheck, not both"
        if reason:
            assert len(reason.split()) >= 8, f"{name}: say why it has no healthcheck"
            assert service.get("restart", "no") == "no", f"{name}: a one-shot job must not restart"


def test_compose_dependencies_wait_for_health_or_completion(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            wanted = "service_healthy" if "healthcheck" in services[dependency] else "service_completed_successfully"
            assert rule["condition"] == wanted, f"{name} -> {dependency}: {rule['condition']}"


def test_compose_sets_every_worker_setting_with_the_workers_defaults(compose_raw):
    defaults = interpolate(compose_raw, {name: "x" for name in PASSWORDS})
    fairwatch_image = compose_raw["services"]["worker"]["image"]
    for name, service in defaults["services"].items():
        if compose_raw["services"][name].get("image") != fairwatch_image:
            continue
        assert not unknown(set(service.get("environment", {}))), (name, unknown(set(service["environment"])))
    for name in ("worker", "worker-2"):
        env = defaults["services"][name]["environment"]
        assert not unsettable(WORKER_ENVIRONMENT, set(env)), unsettable(WORKER_ENVIRONMENT, set(env))
        for setting, (default, _) in WORKER_ENVIRONMENT.items():
            if setting not in COMPOSE_OVERRIDES:
                assert str(env[setting]) == default, f"compose default of {setting}: {env[setting]!r} vs {default!r}"
    # both workers in one consumer group, each with its own state volume (and the same credentials)
    volumes = [defaults["services"][n]["volumes"] for n in ("worker", "worker-2")]
    assert volumes[0][0] != volumes[1][0] and volumes[0][1:] == volumes[1][1:] == ["tls-worker:/etc/fairwatch/tls:ro"]
    assert all(v[0].split(":")[1] == defaults["services"]["worker"]["environment"]["FAIRWATCH_DATA_DIR"]
               for v in volumes)


def test_env_example_gives_the_workers_defaults():
    example = env_example()
    shared = set(example) & set(WORKER_ENVIRONMENT)
    assert len(shared) >= 10, shared
    for name in shared:
        assert example[name] == WORKER_ENVIRONMENT[name][0], f"{name}: {example[name]!r} in the env example"


def test_compose_runs_one_sealer_with_the_operator_key_as_a_secret_and_a_checkpoint_volume(compose, tmp_path):
    from fairwatch.contracts.keys import generate_key, write_signing_key

    services = compose["services"]
    sealer = services["sealer"]
    assert sealer["image"] == services["worker"]["image"]
    assert sealer["command"] == ["audit", "seal", "--every", "60"]
    assert "profiles" not in sealer and sealer["restart"] == "unless-stopped"  # starts with the stack
    assert "scale" not in sealer and "replicas" not in sealer.get("deploy", {})  # one sealer, never two
    assert "ports" not in sealer
    env = sealer["environment"]
    assert env["FAIRWATCH_CLICKHOUSE"] == services["worker"]["environment"]["FAIRWATCH_CLICKHOUSE"]
    assert not [n for n in env if n.startswith(("FAIRWATCH_KAFKA", "FAIRWATCH_ALERTMANAGER", "FAIRWATCH_GRAFANA"))]
    assert env["FAIRWATCH_EVIDENCE_ORIGIN"] == env_example()["FAIRWATCH_EVIDENCE_ORIGIN"] == "fairwatch"
    # the key: a compose secret from a file, which compose mounts at /run/secrets/<name>
    assert sealer["secrets"] == ["evidence-operator-key"]
    assert env["FAIRWATCH_EVIDENCE_KEY_FILE"] == "/run/secrets/evidence-operator-key"
    key_path = compose["secrets"]["evidence-operator-key"]["file"]
    assert key_path == env_example()["EVIDENCE_OPERATOR_KEY_FILE"]
    assert key_path.startswith("./deploy/secrets/")
    # never in a commit nor in the image's build context
    ignored = subprocess.run(["git", "check-ignore", "-q", key_path], cwd=REPO, check=False)
    assert ignored.returncode == 0, f"{key_path} is not ignored by git"
    assert dockerignored(key_path[2:])
    # the checkpoints: a named volume above FAIRWATCH_EVIDENCE_DIR; and its credentials (the CA, the
    # writer's password): the tls-sealer volume, read-only
    volume, credentials = sealer["volumes"]
    name, mount = volume.split(":")
    assert name in compose["volumes"] and Path(env["FAIRWATCH_EVIDENCE_DIR"]).parent == Path(mount)
    assert credentials == "tls-sealer:/etc/fairwatch/tls:ro"
    # after the credentials and the migrations, like the workers
    # (test_compose_dependencies_wait_for_health_or_completion checks the conditions)
    assert sealer["depends_on"].keys() == {"certs", "clickhouse", "migrate"}
    # its health check accepts the key as fairwatch does: the owner's alone
    kind, python, flag, script = sealer["healthcheck"]["test"]
    assert (kind, python, flag) == ("CMD", "python", "-c")
    key_file = write_signing_key(generate_key("operator-2026"), tmp_path / "operator.key")
    check_env = {**os.environ, "PYTHONPATH": str(REPO / "streams"), "FAIRWATCH_EVIDENCE_KEY_FILE": str(key_file),
                 "FAIRWATCH_EVIDENCE_DIR": str(tmp_path / "volume" / "checkpoints")}
    check = subprocess.run([sys.executable, "-c", script], env=check_env, capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode == 0, check.stderr
    key_file.chmod(0o644)  # a key file others can read: `fairwatch audit seal` refuses it, so does the check
    check = subprocess.run([sys.executable, "-c", script], env=check_env, capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode != 0 and "can be read by others" in check.stderr


def test_compose_bind_mounts_exist_in_the_repository(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"


def test_grafana_gets_every_variable_its_datasource_provisioning_reads(compose):
    provisioning = REPO / "dashboards" / "provisioning" / "datasources" / "fairwatch-clickhouse.yaml"
    wanted = set(re.findall(r"\$\{?(FAIRWATCH_[A-Z_]+)", provisioning.read_text()))
    assert wanted, "the datasource provisioning reads no FAIRWATCH_* variable"
    environment = compose["services"]["grafana"]["environment"]
    assert wanted <= set(environment), wanted - set(environment)
    assert environment["FAIRWATCH_CLICKHOUSE_HOST"] in compose["services"]
    plugins = environment["GF_PLUGINS_PREINSTALL_SYNC"]
    assert re.fullmatch(r"grafana-clickhouse-datasource@\d+\.\d+\.\d+", plugins), "pin the plugin version"


def test_alertmanager_config_passes_amtool():
    amtool = shutil.which("amtool")
    assert amtool, "amtool missing: scripts/stack install installs Debian's prometheus-alertmanager"
    result = subprocess.run([amtool, "check-config", str(REPO / "deploy" / "alertmanager" / "alertmanager.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile --------------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def dockerignored(path: str) -> bool:
    ignored = False
    for rule in (REPO / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        if pattern == "*" or path == pattern or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_dockerfile_is_pinned_non_root_and_copies_what_exists(default_docs):
    instructions = dockerfile()
    args = {k: v for k, v in (i[1].split("=", 1) for i in instructions if i[0] == "ARG" and "=" in i[1])}
    bases = [args.get(v[2:-1], v) if v.startswith("${") else v
             for v in (i[1].split()[0] for i in instructions if i[0] == "FROM")]
    for base in bases:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), f"unpinned base {base}"
    users = [i[1] for i in instructions if i[0] == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "the image must run as a numeric non-root user"
    pod = one(default_docs, "StatefulSet", "worker")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == int(uid), "chart runAsUser differs from the image's USER"
    for op, rest in instructions:
        if op == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: missing"
                assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    assert ("ENTRYPOINT", '["fairwatch"]') in instructions
    assert any(op == "RUN" and "pip install ." in rest for op, rest in instructions)
    env = dict(re.findall(r"(FAIRWATCH_[A-Z_]+)=(\S+)", " ".join(r for o, r in instructions if o == "ENV")))
    assert env["FAIRWATCH_WEB_HOST"] == "0.0.0.0"
    assert ("EXPOSE", WORKER_ENVIRONMENT["FAIRWATCH_WEB_PORT"][0]) in instructions
    assert not unknown(set(env))
    assert dockerignored("tests/test_deploy.py") and dockerignored(".venv/bin/python")


def test_the_installed_package_finds_its_migrations_where_the_image_puts_them(tmp_path):
    # the image installs a wheel (no checkout beside it) and copies schemas/ to FAIRWATCH_SCHEMAS
    instructions = dockerfile()
    env = dict(re.findall(r"(FAIRWATCH_[A-Z_]+)=(\S+)", " ".join(r for o, r in instructions if o == "ENV")))
    copied = [rest.split() for op, rest in instructions if op == "COPY" and rest.split()[-1] == env["FAIRWATCH_SCHEMAS"]]
    assert copied == [["schemas", env["FAIRWATCH_SCHEMAS"]]]
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(wheel_dir), str(REPO)], check=True, timeout=300, capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    *map(str, wheel_dir.glob("fairwatch-*.whl"))], check=True, timeout=300, capture_output=True)
    image_schemas = tmp_path / "opt-fairwatch-schemas"
    shutil.copytree(REPO / "schemas", image_schemas)
    run_env = {**os.environ, "PYTHONPATH": str(site), "FAIRWATCH_SCHEMAS": str(image_schemas)}
    run_env.pop("FAIRWATCH_CLICKHOUSE", None)
    probe = subprocess.run(
        [sys.executable, "-c", "import fairwatch, fairwatch.store.clickhouse as s; print(fairwatch.__file__); print(s.SCHEMAS_DIR)"],
        env=run_env, cwd=tmp_path, capture_output=True, text=True, check=True)
    module_file, schemas_dir = probe.stdout.split()
    assert Path(module_file).is_relative_to(site), "imported the checkout, not the installed wheel"
    assert Path(schemas_dir) == image_schemas
    def migrations(env: dict, cwd: Path, store: str) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "fairwatch.cli", "migrate", "--store", f"chdb://{tmp_path / store}",
                                 "--json"], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return [m["name"] for m in json.loads(result.stdout.splitlines()[-1])["migrations"]]

    # oracle: the same verb run from the checkout, where the schemas sit beside the source
    checkout_env = {k: v for k, v in os.environ.items() if k not in ("FAIRWATCH_SCHEMAS", "FAIRWATCH_CLICKHOUSE")}
    from_checkout = migrations(checkout_env, REPO, "checkout-store")
    assert "001_init" in from_checkout
    assert migrations(run_env, tmp_path, "image-store") == from_checkout


def test_secrets_reach_the_workers_only_through_secret_references(helm, production_docs):
    docs = render(helm, "--set", "secrets.auditKey=k3y", "--set", "secrets.grafanaToken=t0ken")
    secret = one(docs, "Secret")
    assert secret["stringData"] == {"clickhouse-url": "clickhouse://default:@clickhouse:9000/default",
                                    "audit-key": "k3y", "grafana-token": "t0ken"}
    for rendered, name in ((docs, secret["metadata"]["name"]), (production_docs, "fairwatch-clickhouse")):
        env = {e["name"]: e for e in one(rendered, "StatefulSet", "worker")["spec"]["template"]["spec"]["containers"][0]["env"]}
        for variable, key in (("FAIRWATCH_CLICKHOUSE", "clickhouse-url"), ("FAIRWATCH_AUDIT_KEY", "audit-key"),
                              ("FAIRWATCH_GRAFANA_TOKEN", "grafana-token")):
            assert "value" not in env[variable], f"{variable} must come from a Secret"
            assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == name
            assert env[variable]["valueFrom"]["secretKeyRef"]["key"] == key
    rendered_text = run_helm(helm, "template", "fw", str(CHART), "-f", str(PRODUCTION)).stdout
    # no password value: only the names of the variable and the Secret key that carry one
    names = ("existingsecret", "fairwatch_alertmanager_password", "alertmanager-password", "fairwatch_kafka_password",
             "kafka-password")
    stripped = rendered_text.lower()
    for name in names:
        stripped = stripped.replace(name, "")
    assert "password" not in stripped


def test_a_keyring_value_is_mounted_into_every_worker_and_named_by_fairwatch_keyring(helm):
    from fairwatch.contracts.keyring import parse_keyring

    example = REPO / "schemas" / "examples" / "keyring" / "keyring.yaml"
    docs = render(helm, "--set-file", f"keyring={example}")
    [keyring_map] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-keyring")]
    assert keyring_map["data"]["keyring.yaml"] == example.read_text()
    parse_keyring(keyring_map["data"]["keyring.yaml"])  # the worker reads what the chart mounts
    pod = one(docs, "StatefulSet")["spec"]["template"]
    worker = pod["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in worker["env"]}["FAIRWATCH_KEYRING"] == "/etc/fairwatch/keyring/keyring.yaml"
    [mount] = [m for m in worker["volumeMounts"] if m["name"] == "keyring"]
    assert mount["mountPath"] == "/etc/fairwatch/keyring" and mount["readOnly"]
    assert [v for v in pod["spec"]["volumes"] if v["name"] == "keyring"][0]["configMap"]["name"] == \
        keyring_map["metadata"]["name"]
    assert "checksum/keyring" in pod["metadata"]["annotations"]  # a new keyring rolls the workers
    default = one(render(helm), "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in default["env"]}["FAIRWATCH_KEYRING"] == ""
