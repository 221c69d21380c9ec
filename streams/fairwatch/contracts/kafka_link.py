"""How every fairwatch Kafka client connects: security protocol, SASL, TLS, from FAIRWATCH_KAFKA_* settings.

One place reads and checks the settings, and renders them for each client library (aiokafka,
kafka-python, faust). Pure standard library, so every layer can import it; the faust credential
object itself is built in :mod:`fairwatch.stream.app` from :meth:`KafkaLink.faust_credentials`.

The password never appears in a message, a ``repr`` or an error: errors name the variable.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

PROTOCOL = "FAIRWATCH_KAFKA_SECURITY_PROTOCOL"
MECHANISM = "FAIRWATCH_KAFKA_SASL_MECHANISM"
USERNAME = "FAIRWATCH_KAFKA_USERNAME"
PASSWORD = "FAIRWATCH_KAFKA_PASSWORD"
PASSWORD_FILE = "FAIRWATCH_KAFKA_PASSWORD_FILE"
CA_FILE = "FAIRWATCH_KAFKA_CA_FILE"
CERT_FILE = "FAIRWATCH_KAFKA_CERT_FILE"
KEY_FILE = "FAIRWATCH_KAFKA_KEY_FILE"

# name -> meaning, for the configuration reference (worker_settings.OTHER_ENVIRONMENT lists them)
KAFKA_LINK_ENVIRONMENT: dict[str, str] = {
    PROTOCOL: "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL",
    MECHANISM: "with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    USERNAME: "with SASL_*: the Kafka principal",
    PASSWORD: "with SASL_*: its password (prefer FAIRWATCH_KAFKA_PASSWORD_FILE)",
    PASSWORD_FILE: "with SASL_*: a file holding the password (one line)",
    CA_FILE: "with SSL/SASL_SSL: PEM file of the CA(s) that signed the brokers' certificates (default: the system's)",
    CERT_FILE: "with SSL/SASL_SSL: client certificate (PEM) for mutual TLS; needs FAIRWATCH_KAFKA_KEY_FILE",
    KEY_FILE: "with SSL/SASL_SSL: the client certificate's private key (PEM)",
}
ENV_NAMES = tuple(KAFKA_LINK_ENVIRONMENT)


class KafkaLinkError(ValueError):
    """A Kafka security setting is missing or malformed; the message names the variable, never a secret."""


class FaustCredentials(NamedTuple):
    """What faust's ``broker_credentials`` should be, without importing faust:
    kind "sasl" (faust.SASLCredentials) or "ssl" (faust.SSLCredentials)."""

    kind: str
    ssl_context: ssl.SSLContext | None
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"FaustCredentials(kind={self.kind!r}, mechanism={self.mechanism!r}, username={self.username!r})"


@dataclass(frozen=True, repr=False)
class KafkaLink:
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    password_file: str | None = None  # where the password came from: passed on to child processes
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        _validate(self)

    def __repr__(self) -> str:
        shown = [f"security_protocol={self.security_protocol!r}"]
        for name in ("sasl_mechanism", "username", "password_file", "ca_file", "cert_file", "key_file"):
            if getattr(self, name):
                shown.append(f"{name}={getattr(self, name)!r}")
        if self.password is not None:
            shown.append("password='***'")
        return f"KafkaLink({', '.join(shown)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaLink:
        """The settings of ``env`` (default: ``os.environ``); empty values count as unset."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = (env.get(name) or "").strip()
            return value or None

        protocol = (get(PROTOCOL) or "PLAINTEXT").upper()
        mechanism = get(MECHANISM)
        password, password_file = env.get(PASSWORD) or None, get(PASSWORD_FILE)
        if password is not None and password_file is not None:
            raise KafkaLinkError(f"set {PASSWORD} or {PASSWORD_FILE}, not both")
        if password_file is not None:
            password = _read_password(password_file)
        return cls(security_protocol=protocol, sasl_mechanism=mechanism.upper() if mechanism else None,
                   username=get(USERNAME), password=password, password_file=password_file,
                   ca_file=get(CA_FILE), cert_file=get(CERT_FILE), key_file=get(KEY_FILE))

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (server certificate and host name checked), None without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _protocol_and_sasl_kwargs(self) -> dict[str, Any]:
        """What aiokafka and kafka-python name alike; their TLS options differ."""
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl:
            out.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                       sasl_plain_password=self.password)
        return out

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient."""
        out = self._protocol_and_sasl_kwargs()
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        return out

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient."""
        out = self._protocol_and_sasl_kwargs()
        if self.tls:
            if self.ca_file:
                out["ssl_cafile"] = self.ca_file
            if self.cert_file:
                out.update(ssl_certfile=self.cert_file, ssl_keyfile=self.key_file)
        return out

    def faust_credentials(self) -> FaustCredentials | None:
        """faust's ``broker_credentials`` as a neutral description; None for PLAINTEXT."""
        if self.sasl:
            return FaustCredentials("sasl", self.ssl_context(), self.sasl_mechanism, self.username, self.password)
        if self.tls:
            return FaustCredentials("ssl", self.ssl_context())
        return None

    def env(self) -> dict[str, str]:
        """The FAIRWATCH_KAFKA_* settings that give a child process this link (the password as its
        file when it came from one). Unset ones are "" so that they replace an inherited value."""
        values = {
            PROTOCOL: self.security_protocol, MECHANISM: self.sasl_mechanism, USERNAME: self.username,
            PASSWORD_FILE: self.password_file, PASSWORD: None if self.password_file else self.password,
            CA_FILE: self.ca_file, CERT_FILE: self.cert_file, KEY_FILE: self.key_file,
        }
        return {name: value or "" for name, value in values.items()}


def _read_password(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KafkaLinkError(f"{PASSWORD_FILE}: cannot read {path} ({exc.strerror})") from None
    password = text.strip()
    if not password:
        raise KafkaLinkError(f"{PASSWORD_FILE}: {path} is empty")
    return password


def _validate(link: KafkaLink) -> None:
    protocol = link.security_protocol
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaLinkError(f"{PROTOCOL} must be one of {', '.join(SECURITY_PROTOCOLS)}, got {protocol!r}")
    if link.sasl:
        if link.sasl_mechanism is None:
            raise KafkaLinkError(f"{MECHANISM} is required with {PROTOCOL}={protocol} "
                                 f"(one of {', '.join(SASL_MECHANISMS)})")
        if link.sasl_mechanism not in SASL_MECHANISMS:
            raise KafkaLinkError(f"{MECHANISM} must be one of {', '.join(SASL_MECHANISMS)}, got {link.sasl_mechanism!r}")
        if not link.username:
            raise KafkaLinkError(f"{USERNAME} is required with {PROTOCOL}={protocol}")
        if not link.password:
            raise KafkaLinkError(f"{PASSWORD_FILE} (or {PASSWORD}) is required with {PROTOCOL}={protocol}")
    else:
        # set but unused would connect without the authentication the operator meant to configure
        for name, value in ((MECHANISM, link.sasl_mechanism), (USERNAME, link.username),
                            (PASSWORD_FILE, link.password_file), (PASSWORD, link.password)):
            if value:
                raise KafkaLinkError(f"{name} is set but {PROTOCOL}={protocol} does not use SASL "
                                     f"(SASL_SSL or SASL_PLAINTEXT does)")
    if link.tls:
        if bool(link.cert_file) != bool(link.key_file):
            raise KafkaLinkError(f"mutual TLS needs both {CERT_FILE} and {KEY_FILE}")
        for name, path in ((CA_FILE, link.ca_file), (CERT_FILE, link.cert_file), (KEY_FILE, link.key_file)):
            if path and not os.path.isfile(path):
                raise KafkaLinkError(f"{name}: no such file {path}")
    else:
        for name, value in ((CA_FILE, link.ca_file), (CERT_FILE, link.cert_file), (KEY_FILE, link.key_file)):
            if value:
                raise KafkaLinkError(f"{name} is set but {PROTOCOL}={protocol} does not use TLS (SSL or SASL_SSL does)")


def kafka_link(env: Mapping[str, str] | None = None) -> KafkaLink:
    """:meth:`KafkaLink.from_env` (default ``os.environ``)."""
    return KafkaLink.from_env(env)


def role_env(env: Mapping[str, str], role: str) -> dict[str, str]:
    """The FAIRWATCH_KAFKA_* link settings of ``env`` for principal ``role``: its username and password
    file from FAIRWATCH_KAFKA_<ROLE>_USERNAME / _PASSWORD_FILE (as scripts/stack exports them) when
    given, else ``env``'s own. Every link name is present ("" = unset), so the result replaces
    inherited settings in a child process's environment."""
    out = {name: env.get(name, "") for name in ENV_NAMES}
    username = env.get(f"FAIRWATCH_KAFKA_{role.upper()}_USERNAME")
    if username:
        out.update({USERNAME: username, PASSWORD: "", PASSWORD_FILE: env.get(f"FAIRWATCH_KAFKA_{role.upper()}_PASSWORD_FILE", "")})
    return out
