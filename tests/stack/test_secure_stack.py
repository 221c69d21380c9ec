"""The secured stack's ClickHouse and Alertmanager refuse what the security issue showed to work
without credentials, and the authorised paths still work with exact counts.

Each attack is reproduced as the issue's probe did it (from localhost) and must be refused with the
server's own words; the oracle for the authorised path is a count of what was written.
"""

from __future__ import annotations

import os
import ssl
import stat
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import httpx
import pytest
from fairwatch.detect.delivery import AlertmanagerLinkError, alertmanager_client
from fairwatch.store.clickhouse import ServerStore, StoreError, link_options, open_store
from fairwatch.store.migrations import migrate
from fairwatch.testing.stack import local_stack_dir, server_url

pytestmark = pytest.mark.services


def _secured(stack) -> None:
    assert stack["FAIRWATCH_CLICKHOUSE"].startswith("clickhouse://writer@") and "secure=1" in stack["FAIRWATCH_CLICKHOUSE"], \
        "these tests judge the secured local stack (FAIRWATCH_STACK_INSECURE must not be set)"


def _client(url: str, **override):
    """A raw clickhouse-driver client as an attacker or a misconfigured client would open it."""
    from clickhouse_driver import Client

    parsed = urlparse(url)
    options = dict(host=parsed.hostname, port=parsed.port, user=parsed.username, password="", connect_timeout=5,
                   database="default", send_receive_timeout=10)
    options.update(link_options(parsed.query))
    options.update(override)
    return Client(**options)


@pytest.fixture
def database(stack):
    """A migrated database of fairwatch's tables (made as the migrator), dropped afterwards."""
    _secured(stack)
    name = f"fw_sec_{uuid.uuid4().hex[:8]}"
    with closing(open_store(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], name))) as admin:
        migrate(admin)
        yield name
        admin.execute(f"DROP DATABASE IF EXISTS {name}")


# ---- ClickHouse: who may connect -------------------------------------------------------------------------


def test_no_password_a_wrong_password_and_the_old_default_user_are_refused(stack):
    _secured(stack)
    writer = stack["FAIRWATCH_CLICKHOUSE"]
    for override, words in (({"password": ""}, "Password required for user writer"),
                            ({"password": "S3cretGuess"}, "Wrong password for user writer"),
                            ({"user": "default", "password": ""}, "Unknown user default")):
        with pytest.raises(Exception, match=words) as refused:
            _client(writer, **override).execute("SELECT 1")
        assert "S3cretGuess" not in str(refused.value)


def test_plaintext_and_an_untrusted_certificate_are_refused(stack):
    _secured(stack)
    writer = stack["FAIRWATCH_CLICKHOUSE"]
    with pytest.raises(Exception):  # the port speaks TLS only: a plaintext handshake gets no server hello
        _client(writer, secure=False, ca_certs=None, verify=False).execute("SELECT 1")
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):  # the system's CAs do not know the stack's CA
        _client(writer, ca_certs=None).execute("SELECT 1")
    assert _client(writer).execute("SELECT 1") == [(1,)]  # the exported link itself works


# ---- ClickHouse: least privilege -------------------------------------------------------------------------


ATTACKS = [  # what the issue did as `default` to rewrite counts and empty the alerts table
    "ALTER TABLE group_counts UPDATE impostor_errors = 0 WHERE 1",
    "ALTER TABLE alerts DELETE WHERE 1",
    "TRUNCATE TABLE alerts",
    "DROP TABLE alerts",
    "RENAME TABLE alerts TO alerts_gone",
    "CREATE TABLE shadow (x UInt8) ENGINE = Memory",
    "OPTIMIZE TABLE alerts FINAL",
    "DROP DATABASE {database}",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_writer_can_not_alter_delete_or_drop(stack, database, attack):
    client = _client(server_url(stack["FAIRWATCH_CLICKHOUSE"], database), database=database)
    with pytest.raises(Exception, match="DDL queries are prohibited"):
        client.execute(attack.format(database=database))
    with pytest.raises(Exception, match="Cannot modify 'allow_ddl'"):  # nor give itself the right back
        client.execute("SELECT 1 SETTINGS allow_ddl = 1")
    tables = client.execute("SELECT name FROM system.tables WHERE database = %(d)s", {"d": database})
    assert ("alerts",) in tables and ("shadow",) not in tables


@pytest.mark.parametrize("role", ["FAIRWATCH_CLICKHOUSE_READER", "FAIRWATCH_CLICKHOUSE_AUDITOR"])
def test_readers_and_auditors_only_read(stack, database, role):
    client = _client(server_url(stack[role], database), database=database)
    assert client.execute("SELECT count() FROM alerts") == [(0,)]
    for attack in ("INSERT INTO dead_letters (reason) VALUES ('x')", "ALTER TABLE alerts DELETE WHERE 1",
                   "SELECT * FROM url('http://127.0.0.1:9/', TSV, 'x String')", "SET readonly = 0"):
        with pytest.raises(Exception, match="readonly|read-only|Cannot modify 'readonly'"):
            client.execute(attack)


def test_the_writer_writes_what_it_is_given_and_every_query_is_logged(stack, database):
    """The authorised path: the worker's user opens the migrated database (no DDL: migrate() is a
    no-op when up to date), inserts, and reads back exactly those rows; the server's query log
    names the user of each query, so a rewrite would leave a trace."""
    writer_url = server_url(stack["FAIRWATCH_CLICKHOUSE"], database)
    tag = uuid.uuid4().hex
    with closing(open_store(writer_url)) as writer:
        statuses = {r.status for r in migrate(writer)}
        assert "already_applied" in statuses and statuses <= {"already_applied", "skipped_old_server"}
        at = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
        rows = [(tag, -1, i, tag, "bad_json", "probe", at) for i in range(7)]
        writer.insert("dead_letters", ["source_topic", "kafka_partition", "kafka_offset", "value_b64", "reason_code",
                                       "reason", "rejected_at"], rows)
        assert writer.query("SELECT count() FROM dead_letters WHERE source_topic = %(t)s", {"t": tag}) == [(7,)]
    with closing(ServerStore(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], "default"), create_database=False)) as admin:
        admin.execute("SYSTEM FLUSH LOGS")
        logged = admin.query("SELECT user, count() FROM system.query_log WHERE query LIKE %(q)s AND type = 2"
                             " GROUP BY user", {"q": f"%{tag}%"})
    assert dict(logged).get("writer", 0) >= 1, logged


def test_a_fresh_database_is_refused_to_the_writer_with_who_must_migrate(stack):
    _secured(stack)
    name = f"fw_sec_fresh_{uuid.uuid4().hex[:8]}"
    with pytest.raises(StoreError, match=f"has no database {name}, and this user may not create it") as refused:
        open_store(server_url(stack["FAIRWATCH_CLICKHOUSE"], name))
    assert "fairwatch migrate" in str(refused.value) and "cannot reach" not in str(refused.value)


# ---- Alertmanager -------------------------------------------------------------------------------------


def _silence(creator: str) -> dict:
    now = datetime.now(timezone.utc)
    return {"matchers": [{"name": "alertname", "value": "Fairwatch.*", "isRegex": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(days=3000)).isoformat(),
            "createdBy": creator, "comment": "probe"}


def test_alertmanager_refuses_strangers_and_serves_the_configured_user(stack):
    _secured(stack)
    url = stack["FAIRWATCH_ALERTMANAGER"]
    assert url.startswith("https://")
    ca = stack["FAIRWATCH_ALERTMANAGER_CA_FILE"]
    alert = {"labels": {"alertname": f"FairwatchProbe{uuid.uuid4().hex[:6]}", "test_id": uuid.uuid4().hex},
             "annotations": {"summary": "probe"}}
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca), timeout=10) as stranger:
        assert stranger.post("/api/v2/alerts", json=[alert]).status_code == 401
        assert stranger.post("/api/v2/silences", json=_silence("stranger")).status_code == 401
        assert stranger.get("/api/v2/silences").status_code == 401
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca), timeout=10,
                      auth=("fairwatch", "S3cretGuess")) as guesser:
        assert guesser.post("/api/v2/silences", json=_silence("guesser")).status_code == 401
    with pytest.raises(httpx.ConnectError):  # not trusted without the stack's CA
        httpx.get(f"{url}/-/ready", timeout=10)
    plain = httpx.get(url.replace("https://", "http://") + "/-/ready", timeout=10)  # no plaintext port
    assert plain.status_code == 400 and "HTTPS server" in plain.text
    with alertmanager_client(url, 10, stack) as client:  # the exported link: posts and reads back
        assert client.post("/api/v2/alerts", json=[alert]).status_code == 200
        got = client.get("/api/v2/alerts", params={"filter": f'test_id="{alert["labels"]["test_id"]}"'})
        assert got.status_code == 200 and len(got.json()) == 1


def test_alertmanager_link_settings_are_checked_and_never_print_the_password(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("S3cretPw\n")
    with pytest.raises(AlertmanagerLinkError, match="go together"):
        alertmanager_client("https://am:9093", environ={"FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": str(secret)})
    with pytest.raises(AlertmanagerLinkError, match="cannot read") as missing:
        alertmanager_client("https://am:9093", environ={"FAIRWATCH_ALERTMANAGER_USERNAME": "fw",
                                                       "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": str(tmp_path / "no")})
    assert "S3cretPw" not in str(missing.value)
    with pytest.raises(AlertmanagerLinkError, match="FAIRWATCH_ALERTMANAGER_CA_FILE"):
        alertmanager_client("https://am:9093", environ={"FAIRWATCH_ALERTMANAGER_CA_FILE": str(secret)})
    with pytest.raises(AlertmanagerLinkError, match="in clear text"):  # basic auth over http
        alertmanager_client("http://am:9093", environ={"FAIRWATCH_ALERTMANAGER_USERNAME": "fw",
                                                      "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": str(secret)})
    with pytest.raises(AlertmanagerLinkError, match="not both"):
        alertmanager_client("https://am:9093", environ={"FAIRWATCH_ALERTMANAGER_USERNAME": "fw", "FAIRWATCH_ALERTMANAGER_PASSWORD": "x",
                                                       "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": str(secret)})
    with alertmanager_client("https://am:9093", environ={"FAIRWATCH_ALERTMANAGER_USERNAME": "fw",
                                                        "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": str(secret)}) as client:
        assert client.auth is not None and "S3cretPw" not in repr(client.auth)


# ---- secrets at rest and in output ------------------------------------------------------------------------


def test_the_stacks_exports_name_files_and_hold_no_secret(stack):
    _secured(stack)
    secrets = {}
    for name, value in stack.items():
        if name.endswith("_PASSWORD_FILE"):
            secrets[name] = open(value).read().strip()
        elif value.startswith("clickhouse://"):
            secrets[name] = link_options(urlparse(value).query)["password"]
    assert len(secrets) >= 5 and all(len(s) >= 24 for s in secrets.values())
    printed = "\n".join(f"{k}={v}" for k, v in stack.items())
    assert not [k for k, s in secrets.items() if s in printed]
    directory = local_stack_dir()
    if directory is not None:  # the local stack's own files: keys and passwords 0600 in 0700 dirs
        for sub in ("tls", "secrets"):
            assert stat.S_IMODE(os.stat(directory / sub).st_mode) == 0o700
        private = [*directory.glob("secrets/*"), *directory.glob("tls/*.key")]
        assert private and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in private), private


def test_store_url_link_parameters_refuse_contradictions_and_keep_odd_paths(tmp_path):
    odd = tmp_path / "a&b #c+d%"
    odd.mkdir()
    (odd / "pw").write_text("S3cretPw\n")
    (odd / "ca.pem").write_text("not used here")
    from urllib.parse import quote

    assert link_options(f"secure=1&password_file={quote(str(odd / 'pw'), safe='/')}&ca_certs={quote(str(odd / 'ca.pem'), safe='/')}") == {
        "secure": True, "verify": True, "ca_certs": str(odd / "ca.pem"), "password": "S3cretPw"}
    for query, words in (("secure=0&ca_certs=/x", "contradicts"), ("verify=0", "needs secure=1"),
                         ("secure=yes", "must be 1 or 0"), ("secur=1", "unknown store URL parameter secur"),
                         ("secure=1&password_file=/nonexistent/pw", "cannot read")):
        with pytest.raises(StoreError, match=words) as refused:
            link_options(query)
        assert "S3cretPw" not in str(refused.value)
