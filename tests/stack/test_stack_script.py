"""scripts/stack on a separate instance (own state dir and ports): status, up, up again, down.

The shared stack (default ports, default state dir) is not touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from fairwatch.testing.stack import EXPORT_LINE, SCRIPT, parse_exports

pytestmark = pytest.mark.services

def _free_ports(n: int) -> list[int]:
    """Ports free right now (another stack, e.g. a second CI checkout, may hold any fixed ones)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


PORTS = dict(zip(("FAIRWATCH_KAFKA_PORT", "FAIRWATCH_KAFKA_CONTROLLER_PORT", "FAIRWATCH_CLICKHOUSE_PORT",
                  "FAIRWATCH_CLICKHOUSE_HTTP_PORT", "FAIRWATCH_ALERTMANAGER_PORT", "FAIRWATCH_KAFKA_MTLS_PORT"),
                 _free_ports(6)))
SERVICES = ("kafka", "clickhouse", "alertmanager")
INSECURE = {
    "FAIRWATCH_KAFKA": f"127.0.0.1:{PORTS['FAIRWATCH_KAFKA_PORT']}",
    "FAIRWATCH_CLICKHOUSE": f"clickhouse://default:@127.0.0.1:{PORTS['FAIRWATCH_CLICKHOUSE_PORT']}/default",
    "FAIRWATCH_CLICKHOUSE_MIGRATOR": f"clickhouse://default:@127.0.0.1:{PORTS['FAIRWATCH_CLICKHOUSE_PORT']}/default",
    "FAIRWATCH_CLICKHOUSE_READER": f"clickhouse://auditor:@127.0.0.1:{PORTS['FAIRWATCH_CLICKHOUSE_PORT']}/default",
    "FAIRWATCH_CLICKHOUSE_AUDITOR": f"clickhouse://auditor:@127.0.0.1:{PORTS['FAIRWATCH_CLICKHOUSE_PORT']}/default",
    "FAIRWATCH_CLICKHOUSE_HTTP": f"http://127.0.0.1:{PORTS['FAIRWATCH_CLICKHOUSE_HTTP_PORT']}",
    "FAIRWATCH_ALERTMANAGER": f"http://127.0.0.1:{PORTS['FAIRWATCH_ALERTMANAGER_PORT']}",
}


def _expected(state: Path) -> dict[str, str]:
    """The secured stack's exports: users, the CA and password files of its state dir; no secret."""
    ca, secrets = state / "tls" / "ca.pem", state / "secrets"
    native = f"127.0.0.1:{PORTS['FAIRWATCH_CLICKHOUSE_PORT']}"
    urls = {f"FAIRWATCH_CLICKHOUSE{'' if user == 'writer' else '_' + user.upper()}":
            f"clickhouse://{user}@{native}/default?secure=1&ca_certs={ca}&password_file={secrets / f'clickhouse-{user}'}"
            for user in ("migrator", "writer", "reader", "auditor")}
    return {
        "FAIRWATCH_KAFKA": f"127.0.0.1:{PORTS['FAIRWATCH_KAFKA_PORT']}",
        **urls,
        "FAIRWATCH_CLICKHOUSE_HTTP": f"https://127.0.0.1:{PORTS['FAIRWATCH_CLICKHOUSE_HTTP_PORT']}",
        "FAIRWATCH_CLICKHOUSE_CA_FILE": str(ca),
        "FAIRWATCH_ALERTMANAGER": f"https://127.0.0.1:{PORTS['FAIRWATCH_ALERTMANAGER_PORT']}",
        "FAIRWATCH_ALERTMANAGER_USERNAME": "fairwatch",
        "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": str(secrets / "alertmanager-fairwatch"),
        "FAIRWATCH_ALERTMANAGER_CA_FILE": str(ca),
        # Kafka's link: the admin, then the least-privileged principals (file paths, never a password)
        "FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FAIRWATCH_KAFKA_USERNAME": "admin", "FAIRWATCH_KAFKA_PASSWORD_FILE": str(secrets / "kafka-admin"),
        "FAIRWATCH_KAFKA_CA_FILE": str(ca),
        **{f"FAIRWATCH_KAFKA_{role.upper()}_{what}": value for role in ("worker", "producer", "auditor")
           for what, value in (("USERNAME", role), ("PASSWORD_FILE", str(secrets / f"kafka-{role}")))},
        # the mutual-TLS listener and the producer's client certificate
        "FAIRWATCH_KAFKA_MTLS": f"127.0.0.1:{PORTS['FAIRWATCH_KAFKA_MTLS_PORT']}",
        "FAIRWATCH_KAFKA_PRODUCER_CERT_FILE": str(state / "tls" / "producer.pem"),
        "FAIRWATCH_KAFKA_PRODUCER_KEY_FILE": str(state / "tls" / "producer.key"),
    }


def _run(command: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    # Run the file itself (shebang + executable bit), as a person or CI would.
    return subprocess.run([str(SCRIPT), command], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"  # a zombie has exited, only not reaped yet


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _status_lines(out: str) -> dict[str, str]:
    lines = {}
    for line in out.splitlines():
        name, _, rest = line.partition(" ")
        if name in SERVICES:
            lines[name] = rest.strip()
    assert set(lines) == set(SERVICES), out
    return lines


def test_stack_script_lifecycle(tmp_path):
    busy = [p for p in PORTS.values() if _listening(p)]
    assert not busy, f"ports {busy} are in use: this test needs them free"
    state = tmp_path / "stack"
    env = {k: v for k, v in os.environ.items()
           if k not in ("FAIRWATCH_KAFKA", "FAIRWATCH_CLICKHOUSE", "FAIRWATCH_ALERTMANAGER",
                        "FAIRWATCH_CLICKHOUSE_HTTP", "FAIRWATCH_STACK_INSECURE")}
    env.update({k: str(v) for k, v in PORTS.items()}, FAIRWATCH_STACK_DIR=str(state))
    state.mkdir()
    expected = _expected(state.resolve())
    pids: dict[str, int] = {}
    try:
        r = _run("status", env)
        assert r.returncode == 3, r
        assert all(s.startswith("stopped") for s in _status_lines(r.stdout).values()), r.stdout

        r = _run("env", env)
        assert r.returncode == 0 and parse_exports(r.stdout) == expected, r
        # as the README has it: eval in a shell sets every variable to its exact value (the URLs hold
        # & and ?, which an unquoted export line would hand to the shell)
        shell = subprocess.run(["bash", "-c", f'eval "$({SCRIPT} env)" && env'], env=env, capture_output=True, text=True)
        evaluated = dict(line.split("=", 1) for line in shell.stdout.splitlines() if line.startswith("FAIRWATCH_"))
        assert shell.returncode == 0 and {k: evaluated.get(k) for k in expected} == expected, shell.stderr
        assert not any(_listening(p) for p in PORTS.values())  # `env` starts nothing

        t0 = time.monotonic()
        r = _run("up", env)
        first_up = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip(), r.stderr
        assert all(EXPORT_LINE.match(line) for line in r.stdout.splitlines()), r.stdout
        assert parse_exports(r.stdout) == expected
        exports_first = r.stdout
        assert "WARNING" not in r.stderr
        # the secrets exist now, private, and no output of `up` or the logs shows one
        secrets = sorted((state / "secrets").iterdir())
        assert {"kafka-admin", "kafka-auditor", "kafka-broker", "kafka-producer", "kafka-worker"} <= \
            {p.name for p in secrets}
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets)
        for config in ("server.properties", "admin.properties", "keystore.pem"):
            assert (state / "kafka" / config).stat().st_mode & 0o777 == 0o600, config
        logs = "".join(p.read_text(errors="replace") for p in (state / "logs").iterdir())
        for secret in secrets:
            assert secret.read_text().strip() not in r.stdout + r.stderr + logs, secret.name

        pids = {s: int((state / "run" / f"{s}.pid").read_text()) for s in SERVICES}
        for service, pid in pids.items():
            assert _alive(pid), service
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            assert str(state) in cmdline, (service, cmdline)
            assert (state / "logs" / f"{service}.log").stat().st_size > 0
        assert all(_listening(p) for p in PORTS.values())

        r = _run("status", env)
        assert r.returncode == 0, r
        status = _status_lines(r.stdout)
        for service, pid in pids.items():
            assert status[service].startswith("running"), r.stdout
            assert f"pid {pid} " in status[service], r.stdout

        # A second `up` changes nothing: same processes, same output, quick.
        t0 = time.monotonic()
        r = _run("up", env)
        second_up = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert r.stdout == exports_first
        assert "nothing to do" in r.stderr
        assert {s: int((state / "run" / f"{s}.pid").read_text()) for s in SERVICES} == pids
        assert second_up < 10, f"second up took {second_up:.1f}s (first {first_up:.1f}s)"

        r = _run("down", env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert [s for s, pid in pids.items() if _alive(pid)] == []
        assert not list((state / "run").glob("*.pid"))
        assert not any(_listening(p) for p in PORTS.values())

        r = _run("status", env)
        assert r.returncode == 3, r
        assert all(s.startswith("stopped") for s in _status_lines(r.stdout).values()), r.stdout

        r = _run("down", env)  # nothing running: still fine
        assert r.returncode == 0, r.stderr
    finally:
        if any(_alive(p) for p in pids.values()) or any(_listening(p) for p in PORTS.values()):
            _run("down", env, timeout=120)


def test_insecure_mode_is_explicit_and_warns_at_every_up(tmp_path):
    """FAIRWATCH_STACK_INSECURE=1: the old PLAINTEXT broker without ACLs, nothing to authenticate
    with in the exports, and a warning on stderr at every `up`."""
    from kafka.admin import KafkaAdminClient

    busy = [p for p in PORTS.values() if _listening(p)]
    assert not busy, f"ports {busy} are in use: this test needs them free"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAIRWATCH_KAFKA", "FAIRWATCH_CLICKHOUSE",
                                                                     "FAIRWATCH_ALERTMANAGER"))}
    env.update({k: str(v) for k, v in PORTS.items()}, FAIRWATCH_STACK_DIR=str(tmp_path / "stack"),
               FAIRWATCH_STACK_INSECURE="1")
    assert "FAIRWATCH_STACK_INSECURE" in _run("--help", env).stdout
    try:
        for _ in range(2):
            r = _run("up", env)
            assert r.returncode == 0, r.stderr
            exported = parse_exports(r.stdout)
            # the plaintext addresses, and every secured link setting emptied (none left over in a shell)
            assert {k: v for k, v in exported.items() if v} == INSECURE
            assert {k for k, v in exported.items() if not v} == set(_expected(tmp_path / "stack")) - set(INSECURE)
            warnings = [line for line in r.stderr.splitlines() if "WARNING" in line]
            assert len(warnings) == 1 and "FAIRWATCH_STACK_INSECURE" in warnings[0]
            assert "plaintext" in warnings[0].lower() and "Kafka" in warnings[0]
        admin = KafkaAdminClient(bootstrap_servers=INSECURE["FAIRWATCH_KAFKA"])  # no credentials needed
        try:
            assert isinstance(admin.list_topics(), list)
        finally:
            admin.close()
        assert not (tmp_path / "stack" / "secrets").exists()
    finally:
        _run("down", env, timeout=120)


def test_a_new_ca_reissues_the_certificates_it_did_not_sign(tmp_path, monkeypatch):
    """docs/security.md's rotation: delete the CA and start again; every server certificate the old
    CA signed is made again, so the links verify. Oracle: openssl verify against the new CA."""
    import importlib.machinery
    import importlib.util

    monkeypatch.setenv("FAIRWATCH_STACK_DIR", str(tmp_path / "stack"))
    loader = importlib.machinery.SourceFileLoader("fairwatch_stack_script", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    settings = module.Settings()
    cert, _ = module.ensure_cert(settings, "clickhouse", server=True)
    first = cert.read_bytes()
    assert module.ensure_cert(settings, "clickhouse", server=True)[0].read_bytes() == first  # kept while valid
    for name in ("ca.pem", "ca.key"):
        (module.tls_dir(settings) / name).unlink()
    cert, key = module.ensure_cert(settings, "clickhouse", server=True)
    assert cert.read_bytes() != first and oct(key.stat().st_mode & 0o777) == "0o600"
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(module.tls_dir(settings) / "ca.pem"), str(cert)],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
