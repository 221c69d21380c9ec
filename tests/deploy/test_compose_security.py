"""docker-compose.yml is secure by default: what can be checked without a docker engine.

- The `certs` service's command runs for real (`fairwatch tls init`, paths moved to a temporary
  directory): every file another service's settings name exists in the volume that service mounts,
  owned by the uid its image runs as, and every password reaches the files its users read.
- The links: TLS everywhere, no plaintext port published, passwords never on a command line.
- ClickHouse: the TLS config.d names the certs service's files and removes every plaintext port;
  the users file is loaded by a real ClickHouse engine (chDB, in-process ClickHouse 26.x; compose
  runs 25.8) and each user's grants and profile are enforced there: the migrator runs every
  migration, the writer inserts and reads but cannot ALTER, DELETE, DROP, call url() or switch the
  query log off; reader and auditor only read.
The servers themselves (Kafka from the 4.1.1 jars, Debian's Alertmanager) on these files:
tests/deploy/test_compose_services.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from fairwatch.store.migrations import load_migrations

from tests.deploy.compose import (
    PASSWORDS,
    REPO,
    example_env,
    host_path,
    image_user,
    load,
    run_certs,
    tls_mounts,
)

CLICKHOUSE_TLS = REPO / "deploy" / "clickhouse" / "config.d" / "fairwatch-tls.xml"
CLICKHOUSE_USERS = REPO / "deploy" / "clickhouse" / "users.d" / "fairwatch-users.xml"
DATASOURCE = REPO / "dashboards" / "provisioning" / "datasources" / "fairwatch-clickhouse.yaml"
# the plaintext ports of clickhouse/clickhouse-server's config.xml (HTTP, native, MySQL, PostgreSQL, interserver)
PLAINTEXT_PORTS = ("http_port", "tcp_port", "mysql_port", "postgresql_port", "interserver_http_port")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module")
def made(compose, tmp_path_factory) -> Path:
    """What the certs service makes, in a temporary directory (ROOT/tls/<bundle>, ROOT/ca)."""
    root = tmp_path_factory.mktemp("compose-certs")
    result = run_certs(compose, root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return root


def container_mount(service: dict, source: str) -> str:
    [target] = [v.split(":")[1] for v in service["volumes"] if v.split(":")[0] == source]
    return target


# --- the certs service and its volumes -------------------------------------------------------


def test_each_service_mounts_its_own_volume_read_only_after_the_certs_service(compose):
    services, volumes = compose["services"], compose["volumes"]
    certs = services["certs"]
    made_for = {v.split(":")[0] for v in certs["volumes"]}
    assert made_for == {name for name in volumes if name.startswith("tls-")}
    assert all(":ro" not in v for v in certs["volumes"])
    assert certs["user"] == "0:0" and certs["cap_drop"] == ["ALL"]
    assert set(certs["cap_add"]) == {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    users = {}
    for name, service in services.items():
        if name == "certs":
            continue
        mounts = [v for v in service.get("volumes", []) if v.startswith("tls-")]
        assert not [v for v in mounts if v.startswith("tls-ca:")], f"{name} mounts the CA's key"
        assert all(v.endswith(":ro") for v in mounts), name
        if mounts:
            assert len(mounts) == 1, f"{name} mounts several credential volumes: {mounts}"
            assert service["depends_on"]["certs"] == {"condition": "service_completed_successfully"}, name
            users.setdefault(mounts[0].split(":")[0], []).append(name)
    # one holder per volume, but the two workers share theirs
    assert users == {"tls-kafka": ["kafka"], "tls-clickhouse": ["clickhouse"], "tls-alertmanager": ["alertmanager"],
                     "tls-grafana": ["grafana"], "tls-admin": ["topics"], "tls-migrator": ["migrate"],
                     "tls-worker": ["worker", "worker-2"], "tls-sealer": ["sealer"], "tls-producer": ["simulator"]}


def test_the_certs_service_gives_each_volume_to_the_user_of_the_image_that_mounts_it(compose, made):
    for name, service in compose["services"].items():
        for bundle in tls_mounts(service):
            if name == "certs":
                continue
            where = made / "tls" / bundle
            if os.geteuid() == 0:  # the certs service runs as root; here too, or --owner was left out
                uid, gid = image_user(service)
                for path in [where, *where.iterdir()]:
                    assert (path.stat().st_uid, path.stat().st_gid) == (uid, gid), (name, path)
            assert where.stat().st_mode & 0o777 == 0o700
            for path in where.iterdir():
                secret = path.name in ("key.pem", "keystore.pem", "web.yml", "healthcheck-password") \
                    or "password" in path.name
                assert path.stat().st_mode & 0o777 == (0o600 if secret else 0o644 if path.suffix == ".pem" else 0o600), path
    assert (made / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600


def referenced_files(compose: dict) -> list[tuple[str, str]]:
    """(service, path in its container) of every credential file a service's settings name."""
    services = compose["services"]
    out = []
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            if isinstance(value, str) and value.startswith("/etc/"):
                out.append((name, value))
            if isinstance(value, str) and value.startswith("clickhouse://"):
                query = parse_qs(urlparse(value).query)
                out += [(name, query["ca_certs"][0]), (name, query["password_file"][0])]
    kafka = services["kafka"]["environment"]
    assert {kafka["KAFKA_SSL_KEYSTORE_LOCATION"], kafka["KAFKA_SSL_TRUSTSTORE_LOCATION"]} <= {p for n, p in out if n == "kafka"}
    out += [("alertmanager", a.split("=", 1)[1]) for a in services["alertmanager"]["command"]
            if a.startswith("--web.config.file=")]
    out += [("alertmanager", a.split("=", 1)[1]) for a in services["alertmanager"]["healthcheck"]["test"]
            if a.startswith("--http.config.file=")]
    out += [("clickhouse", e.text) for e in ET.parse(CLICKHOUSE_TLS).getroot().iter()
            if e.tag in ("certificateFile", "privateKeyFile")]
    out += [("clickhouse", re.search(r"--ca-certificate=(\S+)", services["clickhouse"]["healthcheck"]["test"][1]).group(1))]
    out += [("grafana", p) for p in re.findall(r"\$__file\{(/[^}]+)\}", DATASOURCE.read_text())]
    return out


def test_every_credential_file_a_service_names_is_in_the_volume_it_mounts(compose, made):
    files = referenced_files(compose)
    assert len(files) >= 25, files
    for service, path in files:
        local = host_path(made, compose["services"][service], path)
        assert local is not None, f"{service}: {path} is in none of its volumes"
        assert local.is_file(), f"{service}: {path} was not made by the certs service ({local})"
    # the web config and the health check's client config name files of the same volume, as the
    # container sees them
    web = yaml.safe_load((made / "tls" / "alertmanager" / "web.yml").read_text())
    check = yaml.safe_load((made / "tls" / "alertmanager" / "healthcheck.yml").read_text())
    alertmanager = compose["services"]["alertmanager"]
    for path in [*web["tls_server_config"].values(), check["basic_auth"]["password_file"], check["tls_config"]["ca_file"]]:
        if path.startswith("/"):
            assert host_path(made, alertmanager, path).is_file(), path


def test_each_password_reaches_the_files_of_the_users_that_log_in_with_it(compose, made):
    """The chain: a service's URL names a user; the ClickHouse users file takes that user's password
    from a variable; the certs service writes that variable into the file the URL names."""
    env = example_env()
    services = compose["services"]
    users = ET.parse(CLICKHOUSE_USERS).getroot().find("users")
    variable_of = {u.tag: u.find("password").get("from_env") for u in users if u.find("password") is not None}
    assert variable_of == {"migrator": "CLICKHOUSE_MIGRATOR_PASSWORD", "writer": "CLICKHOUSE_WRITER_PASSWORD",
                           "reader": "CLICKHOUSE_READER_PASSWORD", "auditor": "CLICKHOUSE_AUDITOR_PASSWORD"}
    clickhouse_env = services["clickhouse"]["environment"]
    for variable in variable_of.values():
        assert clickhouse_env[variable] == env[variable]
    urls = {(name, key): value for name, s in services.items() for key, value in s.get("environment", {}).items()
            if isinstance(value, str) and value.startswith("clickhouse://")}
    assert {(n, urlparse(u).username) for (n, _), u in urls.items()} == {
        ("worker", "writer"), ("worker-2", "writer"), ("sealer", "writer"), ("migrate", "migrator")}
    for (name, key), url in urls.items():
        parsed = urlparse(url)
        assert parsed.password is None and parsed.hostname == "clickhouse" and parsed.port == 9440
        assert parsed.path == "/fairwatch" and parse_qs(parsed.query)["secure"] == ["1"]
        password_file = host_path(made, services[name], parse_qs(parsed.query)["password_file"][0])
        assert password_file.read_text() == env[variable_of[parsed.username]], (name, key)
    grafana = services["grafana"]["environment"]
    assert grafana["FAIRWATCH_CLICKHOUSE_USER"] == "reader" and grafana["FAIRWATCH_CLICKHOUSE_PORT"] == "9440"
    assert (made / "tls" / "grafana" / "clickhouse-password").read_text() == env["CLICKHOUSE_READER_PASSWORD"]
    worker = services["worker"]["environment"]
    assert worker["FAIRWATCH_ALERTMANAGER"] == "https://alertmanager:9093"
    assert host_path(made, services["worker"], worker["FAIRWATCH_ALERTMANAGER_PASSWORD_FILE"]).read_text() == \
        env["ALERTMANAGER_PASSWORD"]


def test_no_password_is_on_a_command_line_or_in_a_url(compose):
    env = example_env()
    secrets = [env[name] for name in PASSWORDS]
    for name, service in compose["services"].items():
        shown = json.dumps([service.get("command"), service.get("healthcheck"), service.get("entrypoint")])
        assert not [s for s in secrets if s in shown], name
        for key, value in service.get("environment", {}).items():
            if isinstance(value, str) and "://" in value:
                assert urlparse(value).password is None, (name, key)
            if any(s == value for s in secrets):
                # only the services that hash or copy them, and ClickHouse, which checks them
                assert name in ("certs", "clickhouse", "grafana"), (name, key)
                assert name != "grafana" or key == "GF_SECURITY_ADMIN_PASSWORD"


def test_every_link_is_tls_and_no_plaintext_port_is_published(compose):
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SSL"}
    listeners = {entry.split("://")[0] for entry in kafka["KAFKA_LISTENERS"].split(",")}
    assert listeners == set(protocols)
    assert kafka["KAFKA_SSL_CLIENT_AUTH"] == "required"
    assert "CONTROLLER://localhost:" in kafka["KAFKA_LISTENERS"]  # the controller: loopback of its container
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"].split(";") == ["User:kafka", "User:admin"]
    # the apache/kafka image's configure script demands JKS keystore and password files under
    # /etc/kafka/secrets when an advertised listener reads "SSL://" (docker/resources/common-scripts/
    # configure); the listeners here are named, so it lets the PEM settings through
    assert "SSL://" not in kafka["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("worker", "worker-2", "topics", "simulator"):
        env = services[name]["environment"]
        assert env["FAIRWATCH_KAFKA_SECURITY_PROTOCOL"] == "SSL", name
        assert env["FAIRWATCH_KAFKA"] == "kafka:9092"
    assert [p.split(":")[-1] for p in services["clickhouse"]["ports"]] == ["9440", "8443"]
    assert "https://" in services["clickhouse"]["healthcheck"]["test"][1]
    assert "--web.config.file=/etc/alertmanager/tls/web.yml" in services["alertmanager"]["command"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_the_topics_job_grants_the_principals_of_the_volumes_the_others_mount(compose, made):
    from cryptography import x509

    services = compose["services"]
    command = services["topics"]["command"]
    granted = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--grant-")}
    cn = {}
    for name in ("worker", "simulator", "topics"):
        [bundle] = tls_mounts(services[name])
        cert = x509.load_pem_x509_certificate((made / "tls" / bundle / "cert.pem").read_bytes())
        cn[name] = cert.subject.rfc4514_string()
    assert cn == {"worker": "CN=worker", "simulator": "CN=producer", "topics": "CN=admin"}
    assert granted == {"--grant-worker": "worker", "--grant-producer": "producer"}
    assert "User:admin" in services["kafka"]["environment"]["KAFKA_SUPER_USERS"].split(";")


# --- ClickHouse: TLS config and users ----------------------------------------------------------


def test_clickhouse_tls_config_removes_the_plaintext_ports_and_names_the_certs_service_files(compose, made):
    root = ET.parse(CLICKHOUSE_TLS).getroot()
    assert root.tag == "clickhouse"
    for port in PLAINTEXT_PORTS:
        [element] = root.findall(port)
        assert element.get("remove") == "remove" and not (element.text or "").strip(), port
    assert root.findtext("https_port") == "8443" and root.findtext("tcp_port_secure") == "9440"
    server = root.find("openSSL/server")
    clickhouse = compose["services"]["clickhouse"]
    mount = container_mount(clickhouse, "tls-clickhouse")
    for tag, made_as in (("certificateFile", "cert.pem"), ("privateKeyFile", "key.pem")):
        path = server.findtext(tag)
        assert path == f"{mount}/{made_as}" and host_path(made, clickhouse, path).is_file()
    assert "tlsv1_1" in server.findtext("disableProtocols")
    # the mounted files are these, where the image reads config.d and users.d
    assert f"./deploy/clickhouse/config.d/{CLICKHOUSE_TLS.name}:/etc/clickhouse-server/config.d/{CLICKHOUSE_TLS.name}:ro" \
        in clickhouse["volumes"]
    assert f"./deploy/clickhouse/users.d/{CLICKHOUSE_USERS.name}:/etc/clickhouse-server/users.d/{CLICKHOUSE_USERS.name}:ro" \
        in clickhouse["volumes"]
    assert clickhouse["environment"]["CLICKHOUSE_SKIP_USER_SETUP"] == "1"
    assert not {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DB"} & set(clickhouse["environment"])
    assert not [v for v in clickhouse["volumes"] if "docker-entrypoint-initdb.d" in v]


def test_grafana_reads_clickhouse_over_tls_with_the_ca_and_the_readers_password(compose):
    source = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    assert source["jsonData"]["secure"] is True and source["jsonData"]["tlsAuthWithCACert"] is True
    assert "tlsSkipVerify" not in source["jsonData"]
    grafana = compose["services"]["grafana"]
    mount = container_mount(grafana, "tls-grafana")
    assert source["secureJsonData"] == {"password": f"$__file{{{mount}/clickhouse-password}}",
                                        "tlsCACert": f"$__file{{{mount}/ca.pem}}"}


def users_config() -> ET.Element:
    return ET.parse(CLICKHOUSE_USERS).getroot()


def test_clickhouse_users_file_declares_four_users_with_const_log_queries_and_no_default():
    root = users_config()
    users = root.find("users")
    assert users.find("default").get("remove") == "remove" and len(users.find("default")) == 0
    names = [u.tag for u in users if u.tag != "default"]
    assert names == ["migrator", "writer", "reader", "auditor"]
    profiles = {p.tag: p for p in root.find("profiles")}
    for user in names:
        element = users.find(user)
        profile = profiles[element.findtext("profile")]
        assert profile.findtext("log_queries") == "1"
        assert profile.find("constraints/log_queries/const") is not None, user
    assert profiles[users.find("reader").findtext("profile")].findtext("readonly") == "2"
    assert profiles[users.find("auditor").findtext("profile")].findtext("readonly") == "1"


# --- ClickHouse users, enforced by a ClickHouse engine (chDB) -------------------------------------

ENGINE_SCRIPT = r"""
import json, sys
from chdb.state import connect
path, config, statements = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
connection = connect(f"{path}?config-file={config}")
out = []
for sql in statements:
    try:
        rows = connection.query(sql, "JSONCompact").bytes()
        out.append(["ok", json.loads(rows)["data"] if rows.strip() else []])
    except Exception as exc:
        out.append(["refused", str(exc).split("\n")[0][:300]])
connection.close()
print(json.dumps(out))
"""


def as_user(tmp_path: Path, user: str, statements: list[str]) -> list[tuple[str, object]]:
    """Run ``statements`` as ClickHouse user ``user`` of the users file, on a chDB engine (one process
    per user: chDB takes its configuration once per process). chDB logs in as ``default`` without a
    password, so the user's definition is loaded under that name, password emptied; its grants,
    profile and constraints are the file's own."""
    root = users_config()
    element = copy.deepcopy(root.find(f"users/{user}"))
    element.tag = "default"
    element.find("password").attrib.clear()
    element.find("password").text = ""
    users = ET.Element("clickhouse")
    users.append(copy.deepcopy(root.find("profiles")))
    ET.SubElement(users.find("profiles"), "default")
    ET.SubElement(ET.SubElement(users, "users"), "default")
    users.find("users").remove(users.find("users/default"))
    users.find("users").append(element)
    ET.SubElement(ET.SubElement(users, "quotas"), "default")
    users_file, config = tmp_path / f"users-{user}.xml", tmp_path / f"config-{user}.xml"
    ET.ElementTree(users).write(users_file)
    config.write_text(f"<clickhouse><users_config>{users_file}</users_config></clickhouse>")
    result = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(tmp_path / "engine"), str(config),
                             json.dumps(statements)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    return [tuple(r) for r in json.loads(result.stdout.strip().splitlines()[-1])]


def refused(outcome: tuple[str, object], *reasons: str) -> bool:
    return outcome[0] == "refused" and any(r in outcome[1] for r in reasons)


DENIED = ("ACCESS_DENIED", "Not enough privileges")
CONSTRAINT = ("SETTING_CONSTRAINT_VIOLATION", "should not be changed")
READONLY = ("READONLY", "readonly mode")


def test_clickhouse_enforces_each_users_grants_and_profile(tmp_path):
    # the migrator: every migration of schemas/clickhouse, as `fairwatch migrate` runs them
    ledger = ("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String,"
              " applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree() ORDER BY version")
    migrations = ["CREATE DATABASE IF NOT EXISTS fairwatch", "USE fairwatch", ledger]
    for migration in load_migrations():
        migrations += list(migration.statements)
        migrations.append(f"INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES "
                          f"({migration.version}, '{migration.name}', '{migration.checksum}', now())")
    probe = ["SELECT count() FROM system.tables WHERE database = 'fairwatch'",
             "CREATE ROLE IF NOT EXISTS fairwatch_auditor", "DROP TABLE fairwatch.alerts",
             "CREATE TABLE default.elsewhere (a UInt8) ENGINE = Memory", "SET log_queries = 0"]
    done = as_user(tmp_path, "migrator", migrations + probe)
    assert [o for o in done[:len(migrations)] if o[0] != "ok"] == []
    count, role, drop, elsewhere, log_off = done[len(migrations):]
    assert count[1][0][0] == len({m for mig in load_migrations() for m in mig.statements if "CREATE TABLE" in m}) + 1
    # CREATE ROLE passes the access check; chDB has no writable access storage to keep the role in
    assert refused(role, "no writeable access storage"), role
    assert refused(drop, *DENIED) and refused(elsewhere, *DENIED) and refused(log_off, *CONSTRAINT)

    row = "INSERT INTO fairwatch.schema_migrations (version, name, checksum, applied_at) VALUES (999, 'x', 'y', now())"
    writer = as_user(tmp_path, "writer", [
        row, "SELECT count() FROM fairwatch.schema_migrations FINAL", "SELECT getSetting('log_queries')",
        "ALTER TABLE fairwatch.schema_migrations DELETE WHERE version = 999",
        "ALTER TABLE fairwatch.schema_migrations UPDATE name = 'forged' WHERE version = 999",
        "ALTER TABLE fairwatch.alerts ADD COLUMN forged UInt8",
        "DROP TABLE fairwatch.alerts", "TRUNCATE TABLE fairwatch.alerts", "OPTIMIZE TABLE fairwatch.alerts FINAL",
        "RENAME TABLE fairwatch.alerts TO fairwatch.alerts_old", "CREATE TABLE fairwatch.forged (a UInt8) ENGINE = Memory",
        "DELETE FROM fairwatch.alerts WHERE 1",
        "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a String')", "SELECT * FROM file('/etc/passwd', CSV, 'a String')",
        "SELECT * FROM remote('127.0.0.1:9', system.one)", "INSERT INTO FUNCTION url('http://127.0.0.1:9/x', CSV, 'a String') VALUES ('x')",
        "SET log_queries = 0", "SELECT 1 SETTINGS log_queries = 0", "SHOW USERS",
        "CREATE USER intruder IDENTIFIED BY 'x'", "GRANT ALL ON fairwatch.* TO default",
    ])
    assert writer[0] == ("ok", []) and writer[1][1][0][0] == len(load_migrations()) + 1
    assert writer[2][1][0][0] in (1, True, "1")  # the query log is on for the writer
    for outcome in writer[3:16]:
        assert refused(outcome, *DENIED), outcome
    assert refused(writer[16], *CONSTRAINT) and refused(writer[17], *CONSTRAINT)
    for outcome in writer[18:]:
        assert refused(outcome, *DENIED), outcome

    for user, readonly in (("reader", 2), ("auditor", 1)):
        got = as_user(tmp_path, user, [
            "SELECT count() FROM fairwatch.schema_migrations FINAL", row, "ALTER TABLE fairwatch.alerts DELETE WHERE 1",
            "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a String')", "SET log_queries = 0",
            "SELECT 1 SETTINGS max_execution_time = 30", "SELECT getSetting('readonly')"])
        assert got[0][0] == "ok" and got[0][1][0][0] == len(load_migrations()) + 1, (user, got[0])
        assert refused(got[1], *DENIED, *READONLY) and refused(got[2], *DENIED, *READONLY), (user, got)
        assert refused(got[3], *DENIED, *READONLY), (user, got[3])
        assert refused(got[4], *CONSTRAINT, *READONLY), (user, got[4])
        # Grafana's plugin sets max_execution_time: the reader may (readonly 2), the auditor may not
        assert (got[5][0] == "ok") == (user == "reader"), (user, got[5])
        assert int(got[6][1][0][0]) == readonly
