"""`fairwatch tls init`, docker-compose's `certs` service: a local CA and per-service bundles.

Oracles outside fairwatch: `openssl verify` (chain, purpose, expiry as of a date) and `openssl x509`
for what a certificate names; the file modes and owners from stat; the bcrypt hashes from the C
library's crypt(3) (Alertmanager's acceptance of them is tests/deploy/test_compose_services.py).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fairwatch.cli.boundary import EXIT_OK, EXIT_USAGE
from fairwatch.cli.local_ca import bcrypt_matches, init, make_plan
from fairwatch.testing.cli_runs import run_captured, single_error

OPENSSL = shutil.which("openssl")
WRITER_PW = "wr1ter-Pw_0123456789abcdef"
AM_PW = "al3rt-Pw_0123456789abcdef"


invoke, one_error = run_captured, single_error


def args(tmp_path: Path, *extra: str) -> list[str]:
    return ["tls", "init", "--dir", str(tmp_path / "tls"), "--ca-dir", str(tmp_path / "ca"),
            "--server", "kafka", "--server", "alertmanager", "--client", "worker", "--client", "producer",
            "--ca-only", "grafana", "--san", "localhost", "--san", "127.0.0.1", "--san", "broker.example.org",
            "--secret", "worker/clickhouse-password=FW_TEST_WRITER_PW",
            "--secret", "worker/alertmanager-password=FW_TEST_AM_PW",
            "--web-config", "alertmanager=fairwatch:FW_TEST_AM_PW", *extra]


@pytest.fixture
def passwords(monkeypatch):
    monkeypatch.setenv("FW_TEST_WRITER_PW", WRITER_PW)
    monkeypatch.setenv("FW_TEST_AM_PW", AM_PW)


def openssl(*argv: str) -> subprocess.CompletedProcess:
    assert OPENSSL, "openssl is missing (Debian package openssl): the oracle of these tests"
    return subprocess.run([OPENSSL, *argv], capture_output=True, text=True, timeout=30)


def verify(ca: Path, cert: Path, purpose: str, at: datetime | None = None) -> bool:
    extra = ["-attime", str(int(at.timestamp()))] if at else []
    return openssl("verify", "-purpose", purpose, *extra, "-CAfile", str(ca), str(cert)).returncode == 0


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_ca_and_bundles_that_chain_to_it(capsys, tmp_path, passwords):
    code, out, err = invoke(capsys, *args(tmp_path))
    assert code == EXIT_OK and err == "", err
    tls, ca = tmp_path / "tls", tmp_path / "ca" / "ca.pem"
    assert sorted(p.name for p in tls.iterdir()) == ["alertmanager", "grafana", "kafka", "producer", "worker"]
    # the CA's key is in its own directory only, 0600 in 0700
    assert mode(tmp_path / "ca") == 0o700 and mode(tmp_path / "ca" / "ca.key") == 0o600
    assert not [p for p in tls.rglob("*") if p.name == "ca.key"]
    ca_key = (tmp_path / "ca" / "ca.key").read_bytes()
    assert all(ca_key not in data for data in files(tls).values())
    for bundle in tls.iterdir():
        assert mode(bundle) == 0o700
        assert (bundle / "ca.pem").read_bytes() == ca.read_bytes()
    for name, purpose in (("kafka", "sslserver"), ("alertmanager", "sslserver"), ("kafka", "sslclient"),
                          ("worker", "sslclient"), ("producer", "sslclient")):
        assert verify(ca, tls / name / "cert.pem", purpose), (name, purpose)
    # a client certificate is no server certificate
    assert not verify(ca, tls / "worker" / "cert.pem", "sslserver")
    assert not (tls / "grafana" / "cert.pem").exists() and not (tls / "grafana" / "key.pem").exists()
    for name in ("kafka", "alertmanager", "worker", "producer"):
        text = openssl("x509", "-in", str(tls / name / "cert.pem"), "-noout", "-subject", "-ext",
                       "subjectAltName").stdout
        assert f"CN = {name}" in text or f"CN={name}" in text, text
        if name in ("kafka", "alertmanager"):
            assert f"DNS:{name}, DNS:localhost, IP Address:127.0.0.1, DNS:broker.example.org" in text, text
        else:
            assert "Alternative" not in text, text
        assert mode(tls / name / "key.pem") == mode(tls / name / "keystore.pem") == 0o600
        assert mode(tls / name / "cert.pem") == 0o644
        key = serialization.load_pem_private_key((tls / name / "key.pem").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((tls / name / "cert.pem").read_bytes())
        assert key.public_key() == cert.public_key()
        # Kafka's PEM keystore: the same key and certificate in one file
        keystore = (tls / name / "keystore.pem").read_bytes()
        assert keystore == (tls / name / "key.pem").read_bytes() + (tls / name / "cert.pem").read_bytes()
    # secrets: copied from the environment, 0600, never printed
    assert (tls / "worker" / "clickhouse-password").read_text() == WRITER_PW
    assert (tls / "worker" / "alertmanager-password").read_text() == AM_PW
    assert mode(tls / "worker" / "clickhouse-password") == 0o600
    assert WRITER_PW not in out + err and AM_PW not in out + err
    assert "kafka/cert.pem: issued (none yet)" in out.splitlines()


def test_a_second_run_keeps_everything_byte_for_byte(capsys, tmp_path, passwords):
    assert invoke(capsys, *args(tmp_path))[0] == EXIT_OK
    before = files(tmp_path)
    code, out, err = invoke(capsys, *args(tmp_path))
    assert code == EXIT_OK and err == ""
    assert files(tmp_path) == before
    assert not [line for line in out.splitlines() if "issued" in line or "written" in line], out
    assert "worker/cert.pem: kept" in out and "alertmanager/web.yml: unchanged" in out


def test_a_new_ca_reissues_every_certificate_it_did_not_sign(capsys, tmp_path, passwords):
    assert invoke(capsys, *args(tmp_path))[0] == EXIT_OK
    tls = tmp_path / "tls"
    old_ca = tmp_path / "old-ca.pem"
    shutil.copy(tmp_path / "ca" / "ca.pem", old_ca)
    shutil.rmtree(tmp_path / "ca")  # rotation of the CA: delete it, start again
    code, out, _ = invoke(capsys, *args(tmp_path))
    assert code == EXIT_OK
    ca = tmp_path / "ca" / "ca.pem"
    assert ca.read_bytes() != old_ca.read_bytes()
    for name in ("kafka", "alertmanager", "worker", "producer"):
        assert f"{name}/cert.pem: issued (not signed by the current CA)" in out.splitlines(), out
        assert verify(ca, tls / name / "cert.pem", "sslclient")
        assert not verify(old_ca, tls / name / "cert.pem", "sslclient")
        assert (tls / name / "ca.pem").read_bytes() == ca.read_bytes()
    assert (tls / "grafana" / "ca.pem").read_bytes() == ca.read_bytes()


def test_a_certificate_signed_by_another_ca_is_replaced(capsys, tmp_path, passwords):
    assert invoke(capsys, *args(tmp_path))[0] == EXIT_OK
    other = tmp_path / "other"
    assert invoke(capsys, "tls", "init", "--dir", str(other / "tls"), "--ca-dir", str(other / "ca"),
                  "--client", "worker")[0] == EXIT_OK
    tls = tmp_path / "tls"
    for part in ("cert.pem", "key.pem"):  # a foreign pair, valid in itself
        shutil.copy(other / "tls" / "worker" / part, tls / "worker" / part)
    kept = (tls / "producer" / "cert.pem").read_bytes()
    code, out, _ = invoke(capsys, *args(tmp_path))
    assert code == EXIT_OK and "worker/cert.pem: issued (not signed by the current CA)" in out
    assert verify(tmp_path / "ca" / "ca.pem", tls / "worker" / "cert.pem", "sslclient")
    assert (tls / "producer" / "cert.pem").read_bytes() == kept


def test_expiring_deleted_or_renamed_certificates_are_issued_again(tmp_path, passwords):
    env = {"FW_TEST_WRITER_PW": WRITER_PW, "FW_TEST_AM_PW": AM_PW}

    def plan(sans=("localhost",), days=825):
        return make_plan(tmp_path / "tls", tmp_path / "ca", ["kafka"], ["worker"], [], list(sans), [], [], [],
                         days=days)

    now = datetime.now(timezone.utc)
    init(plan(), env, now)
    tls = tmp_path / "tls"
    # 800 days on, the 825-day certificates are within the 30 renewal days; the CA (10 years) is not
    later = now + timedelta(days=800)
    actions = {c.path: (c.action, c.detail) for c in init(plan(), env, later)}
    assert actions["kafka/cert.pem"][0] == actions["worker/cert.pem"][0] == "issued"
    assert actions["kafka/cert.pem"][1].startswith("expires ")
    assert actions[str(tmp_path / "ca" / "ca.pem")][0] == "kept"
    assert verify(tmp_path / "ca" / "ca.pem", tls / "kafka" / "cert.pem", "sslserver", at=later + timedelta(days=60))
    # a server's new name (--san) re-issues the servers only
    worker = (tls / "worker" / "cert.pem").read_bytes()
    actions = {c.path: (c.action, c.detail) for c in init(plan(("localhost", "kafka.example.org")), env, later)}
    assert actions["kafka/cert.pem"] == ("issued", "other subject alternative names")
    assert actions["worker/cert.pem"][0] == "kept" and (tls / "worker" / "cert.pem").read_bytes() == worker
    # a deleted key: that bundle alone gets a new pair
    (tls / "worker" / "key.pem").unlink()
    actions = {c.path: c.action for c in init(plan(("localhost", "kafka.example.org")), env, later)}
    assert actions["worker/cert.pem"] == "issued" and actions["kafka/cert.pem"] == "kept"


def test_owners_are_set_on_every_file_and_directory_of_a_bundle(capsys, tmp_path, passwords):
    owner = ["--owner", "kafka=1000:1000", "--owner", "worker=10001:10001", "--owner", "grafana=472:0"]
    code, out, err = invoke(capsys, *args(tmp_path, *owner))
    if os.geteuid() != 0:  # only root gives files away (the certs service runs as root for this)
        assert code == EXIT_USAGE and "Operation not permitted" in one_error(err)
        return
    assert code == EXIT_OK, err
    tls = tmp_path / "tls"
    for name, ids in (("kafka", (1000, 1000)), ("worker", (10001, 10001)), ("grafana", (472, 0))):
        for path in [tls / name, *(tls / name).iterdir()]:
            assert (path.stat().st_uid, path.stat().st_gid) == ids, path
    me = (os.geteuid(), os.getegid())
    assert (tls / "producer" / "key.pem").stat().st_uid == me[0]  # no --owner: whoever ran it


def test_secret_files_follow_the_environment_and_a_missing_one_writes_nothing(capsys, tmp_path, passwords,
                                                                               monkeypatch):
    assert invoke(capsys, *args(tmp_path))[0] == EXIT_OK
    monkeypatch.setenv("FW_TEST_WRITER_PW", "n3w-" + WRITER_PW)
    code, out, _ = invoke(capsys, *args(tmp_path))
    assert code == EXIT_OK and "worker/clickhouse-password: written" in out
    assert (tmp_path / "tls" / "worker" / "clickhouse-password").read_text() == "n3w-" + WRITER_PW
    monkeypatch.delenv("FW_TEST_AM_PW")
    shutil.rmtree(tmp_path / "tls")
    code, out, err = invoke(capsys, *args(tmp_path))
    assert code == EXIT_USAGE and out == ""
    assert "FW_TEST_AM_PW is not set" in one_error(err)
    assert not (tmp_path / "tls").exists()  # refused before anything was written


def test_the_web_config_hashes_with_bcrypt_and_keeps_a_hash_that_still_matches(capsys, tmp_path, passwords,
                                                                               monkeypatch):
    import yaml

    assert invoke(capsys, *args(tmp_path))[0] == EXIT_OK
    where = tmp_path / "tls" / "alertmanager"
    web = yaml.safe_load((where / "web.yml").read_text())
    assert web["tls_server_config"] == {"cert_file": f"{where.resolve()}/cert.pem",
                                        "key_file": f"{where.resolve()}/key.pem", "min_version": "TLS12"}
    users = web["basic_auth_users"]
    assert set(users) == {"fairwatch", "healthcheck"}
    assert users["fairwatch"].startswith("$2b$10$") and bcrypt_matches(AM_PW, users["fairwatch"])
    assert not bcrypt_matches(AM_PW + "x", users["fairwatch"])
    check = (where / "healthcheck-password").read_text()
    assert len(check) >= 32 and bcrypt_matches(check, users["healthcheck"]) and mode(where / "healthcheck-password") == 0o600
    client = yaml.safe_load((where / "healthcheck.yml").read_text())
    assert client == {"basic_auth": {"username": "healthcheck", "password_file": f"{where.resolve()}/healthcheck-password"},
                      "tls_config": {"ca_file": f"{where.resolve()}/ca.pem"}}
    assert AM_PW not in (where / "web.yml").read_text()
    # a new password: a new hash for that user; the health check's stays
    monkeypatch.setenv("FW_TEST_AM_PW", "n3w-" + AM_PW)
    assert invoke(capsys, *args(tmp_path, "--mount", "alertmanager=/etc/alertmanager/tls"))[0] == EXIT_OK
    again = yaml.safe_load((where / "web.yml").read_text())
    assert bcrypt_matches("n3w-" + AM_PW, again["basic_auth_users"]["fairwatch"])
    assert again["basic_auth_users"]["healthcheck"] == users["healthcheck"]
    # --mount: the paths are where the service sees the bundle
    assert again["tls_server_config"]["cert_file"] == "/etc/alertmanager/tls/cert.pem"


@pytest.mark.parametrize("extra, message", [
    (["--owner", "kafka=appuser"], "expected NAME=UID:GID"),
    (["--owner", "nobody=1:1"], "no --server, --client or --ca-only bundle"),
    (["--secret", "worker/pw=s3cret value"], "expected BUNDLE/FILE=VARIABLE"),
    (["--secret", "worker/key.pem=FW_TEST_WRITER_PW"], "is a file tls init writes itself"),
    (["--secret", "nobody/pw=FW_TEST_WRITER_PW"], "no bundle nobody"),
    (["--web-config", "worker=fairwatch:FW_TEST_AM_PW"], "needs a --server bundle"),
    (["--san", "not a host"], "not a host name or an IP address"),
    (["--server", "Kafka!"], "bad bundle name"),
    (["--client", "kafka"], "bundle kafka is named twice"),
    (["--mount", "alertmanager=relative/path"], "expected BUNDLE=/absolute/path"),
])
def test_bad_options_are_one_error_line_and_write_nothing(capsys, tmp_path, passwords, extra, message):
    code, out, err = invoke(capsys, *args(tmp_path, *extra))
    assert code == EXIT_USAGE and out == ""
    assert message in one_error(err)
    assert not (tmp_path / "tls").exists() and not (tmp_path / "ca").exists()
    assert WRITER_PW not in err and AM_PW not in err


def test_never_writes_through_a_symbolic_link(capsys, tmp_path, passwords):
    assert invoke(capsys, *args(tmp_path))[0] == EXIT_OK
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    secret = tmp_path / "tls" / "worker" / "clickhouse-password"
    secret.unlink()
    secret.symlink_to(target)
    code, _, err = invoke(capsys, *args(tmp_path))
    assert code == EXIT_USAGE and "is a symbolic link" in one_error(err)
    assert target.read_text() == "keep me"
