"""fairwatch.contracts.kafka_link: one error per bad setting, the password never shown, and the
keyword arguments each client library gets, against hand-written expectations."""

from __future__ import annotations

import ssl
import subprocess
import sys

import pytest
from fairwatch.contracts.kafka_link import KafkaLink, KafkaLinkError, role_env

PASSWORD = "s3cret-Pw-never-shown"


@pytest.fixture
def files(tmp_path):
    """A CA, a client certificate and key (openssl), and a password file."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "client.key", "client.csr", "client.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=client")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2")
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    return {"ca": str(ca), "cert": str(cert), "key": str(key), "password": str(password), "dir": tmp_path}


def sasl_ssl(files, **extra):
    return {"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "FAIRWATCH_KAFKA_USERNAME": "worker", "FAIRWATCH_KAFKA_PASSWORD_FILE": files["password"],
            "FAIRWATCH_KAFKA_CA_FILE": files["ca"], **extra}


def test_no_settings_is_plaintext_for_every_library():
    link = KafkaLink.from_env({})
    assert link == KafkaLink()
    assert link.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert link.kafka_python_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert link.faust_credentials() is None
    assert link.ssl_context() is None


def test_sasl_ssl_with_a_password_file_for_each_library(files):
    link = KafkaLink.from_env(sasl_ssl(files))
    assert link.password == PASSWORD  # the file's line, without its newline
    assert link.kafka_python_kwargs() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "worker",
        "sasl_plain_password": PASSWORD, "ssl_cafile": files["ca"]}
    aio = link.aiokafka_kwargs()
    context = aio.pop("ssl_context")
    assert aio == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                   "sasl_plain_username": "worker", "sasl_plain_password": PASSWORD}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    faust = link.faust_credentials()
    assert (faust.kind, faust.mechanism, faust.username, faust.password) == ("sasl", "SCRAM-SHA-512", "worker", PASSWORD)
    assert isinstance(faust.ssl_context, ssl.SSLContext)


def test_mutual_tls_for_each_library(files):
    link = KafkaLink.from_env({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "ssl", "FAIRWATCH_KAFKA_CA_FILE": files["ca"],
                               "FAIRWATCH_KAFKA_CERT_FILE": files["cert"], "FAIRWATCH_KAFKA_KEY_FILE": files["key"]})
    assert link.kafka_python_kwargs() == {"security_protocol": "SSL", "ssl_cafile": files["ca"],
                                          "ssl_certfile": files["cert"], "ssl_keyfile": files["key"]}
    aio = link.aiokafka_kwargs()
    assert set(aio) == {"security_protocol", "ssl_context"} and aio["security_protocol"] == "SSL"
    faust = link.faust_credentials()
    assert faust.kind == "ssl" and faust.username is None and isinstance(faust.ssl_context, ssl.SSLContext)


def test_sasl_plaintext_with_a_password_in_the_environment():
    link = KafkaLink.from_env({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                               "FAIRWATCH_KAFKA_SASL_MECHANISM": "plain", "FAIRWATCH_KAFKA_USERNAME": "u",
                               "FAIRWATCH_KAFKA_PASSWORD": PASSWORD})
    expected = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": "u",
                "sasl_plain_password": PASSWORD}
    assert link.kafka_python_kwargs() == expected
    assert link.aiokafka_kwargs() == expected
    assert link.faust_credentials().ssl_context is None
    assert link.env()["FAIRWATCH_KAFKA_PASSWORD"] == PASSWORD  # no file to name: the child needs the value


BAD = [
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "TLS"},
     "FAIRWATCH_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_USERNAME": "u", "FAIRWATCH_KAFKA_PASSWORD": PASSWORD},
     ("FAIRWATCH_KAFKA_SASL_MECHANISM is required with FAIRWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL "
      "(one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "GSSAPI",
      "FAIRWATCH_KAFKA_USERNAME": "u", "FAIRWATCH_KAFKA_PASSWORD": PASSWORD},
     "FAIRWATCH_KAFKA_SASL_MECHANISM must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got 'GSSAPI'"),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "FAIRWATCH_KAFKA_PASSWORD": PASSWORD},
     "FAIRWATCH_KAFKA_USERNAME is required with FAIRWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "FAIRWATCH_KAFKA_USERNAME": "u"},
     "FAIRWATCH_KAFKA_PASSWORD_FILE (or FAIRWATCH_KAFKA_PASSWORD) is required with FAIRWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({"FAIRWATCH_KAFKA_PASSWORD": PASSWORD, "FAIRWATCH_KAFKA_PASSWORD_FILE": "{password}"},
     "set FAIRWATCH_KAFKA_PASSWORD or FAIRWATCH_KAFKA_PASSWORD_FILE, not both"),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "FAIRWATCH_KAFKA_USERNAME": "u", "FAIRWATCH_KAFKA_PASSWORD_FILE": "{dir}/missing"},
     "FAIRWATCH_KAFKA_PASSWORD_FILE: cannot read {dir}/missing (No such file or directory)"),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "FAIRWATCH_KAFKA_USERNAME": "u", "FAIRWATCH_KAFKA_PASSWORD_FILE": "{dir}/empty"},
     "FAIRWATCH_KAFKA_PASSWORD_FILE: {dir}/empty is empty"),
    ({"FAIRWATCH_KAFKA_USERNAME": "u", "FAIRWATCH_KAFKA_PASSWORD": PASSWORD},
     ("FAIRWATCH_KAFKA_USERNAME is set but FAIRWATCH_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL "
      "(SASL_SSL or SASL_PLAINTEXT does)")),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "FAIRWATCH_KAFKA_PASSWORD": PASSWORD},
     ("FAIRWATCH_KAFKA_PASSWORD is set but FAIRWATCH_KAFKA_SECURITY_PROTOCOL=SSL does not use SASL "
      "(SASL_SSL or SASL_PLAINTEXT does)")),
    ({"FAIRWATCH_KAFKA_CA_FILE": "{ca}"},
     ("FAIRWATCH_KAFKA_CA_FILE is set but FAIRWATCH_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS "
      "(SSL or SASL_SSL does)")),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "FAIRWATCH_KAFKA_CA_FILE": "{dir}/nope.pem"},
     "FAIRWATCH_KAFKA_CA_FILE: no such file {dir}/nope.pem"),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "FAIRWATCH_KAFKA_CERT_FILE": "{cert}"},
     "mutual TLS needs both FAIRWATCH_KAFKA_CERT_FILE and FAIRWATCH_KAFKA_KEY_FILE"),
    ({"FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "FAIRWATCH_KAFKA_CERT_FILE": "{dir}/c.pem",
      "FAIRWATCH_KAFKA_KEY_FILE": "{key}"},
     "FAIRWATCH_KAFKA_CERT_FILE: no such file {dir}/c.pem"),
]


@pytest.mark.parametrize(("env", "message"), BAD, ids=[m.split(" ")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_each_bad_setting_has_its_message_without_the_password(files, env, message):
    (files["dir"] / "empty").write_text("\n")
    env = {k: v.format(**files) for k, v in env.items()}
    with pytest.raises(KafkaLinkError) as caught:
        KafkaLink.from_env(env)
    assert str(caught.value) == message.format(**files)
    assert isinstance(caught.value, ValueError)
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)


def test_the_password_is_in_no_repr_or_str(files):
    link = KafkaLink.from_env(sasl_ssl(files))
    direct = KafkaLink.from_env({**sasl_ssl(files), "FAIRWATCH_KAFKA_PASSWORD_FILE": "",
                                 "FAIRWATCH_KAFKA_PASSWORD": PASSWORD})
    for shown in (repr(link), str(link), repr(direct), str(direct), repr(link.faust_credentials()),
                  f"{link}", f"{link!r}", repr([link])):
        assert PASSWORD not in shown
    assert repr(link) == (f"KafkaLink(security_protocol='SASL_SSL', sasl_mechanism='SCRAM-SHA-512', username='worker', "
                          f"password_file={files['password']!r}, ca_file={files['ca']!r}, password='***')")
    # a child process gets the file, not the value
    assert link.env() == {
        "FAIRWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FAIRWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FAIRWATCH_KAFKA_USERNAME": "worker", "FAIRWATCH_KAFKA_PASSWORD": "",
        "FAIRWATCH_KAFKA_PASSWORD_FILE": files["password"], "FAIRWATCH_KAFKA_CA_FILE": files["ca"],
        "FAIRWATCH_KAFKA_CERT_FILE": "", "FAIRWATCH_KAFKA_KEY_FILE": ""}
    assert KafkaLink.from_env(link.env()) == link


def test_a_role_replaces_username_and_password_of_the_admin(files):
    stack = {**sasl_ssl(files), "FAIRWATCH_KAFKA_USERNAME": "admin", "FAIRWATCH_KAFKA_PASSWORD": "",
             "FAIRWATCH_KAFKA_PRODUCER_USERNAME": "producer", "FAIRWATCH_KAFKA_PRODUCER_PASSWORD_FILE": files["password"]}
    producer = KafkaLink.from_env(role_env(stack, "producer"))
    assert (producer.username, producer.password_file, producer.ca_file) == ("producer", files["password"], files["ca"])
    assert KafkaLink.from_env(role_env(stack, "worker")).username == "admin"  # no worker exports: the admin's


def test_contracts_stay_free_of_kafka_libraries():
    code = ("import sys, fairwatch.contracts.kafka_link; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kafka', 'aiokafka', 'faust')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
