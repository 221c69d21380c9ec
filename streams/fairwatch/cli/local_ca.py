"""A local certificate authority and the credentials files of a deployment: ``fairwatch tls init``.

docker-compose runs it once per start (the ``certs`` service) to make, in one directory per
*bundle* (a compose volume each, mounted only into the service that needs it):

- ``ca.pem``: the local CA's certificate, in every bundle;
- for a server or client bundle: ``cert.pem`` (CN = the bundle's name; a server certificate also
  names the bundle as DNS SAN, plus every ``--san``), ``key.pem`` (PKCS#8, 0600) and
  ``keystore.pem`` (key and certificate in one file: Kafka's PEM keystore), ECDSA P-256;
- secret files copied from environment variables (``--secret``), 0600;
- an Alertmanager / Prometheus web config (``web.yml``: TLS with the bundle's certificate, basic
  auth with bcrypt hashes) and, for the container's health check, a second user with a random
  password and an HTTP client config (``healthcheck.yml``) for ``amtool``; the paths they name are
  where the service sees the bundle (``--mount``).

The CA's key stays in its own directory (``--ca-dir``), which no service mounts. Every file of a
bundle and the bundle's directory (0700) belong to the bundle's ``--owner``.

Idempotent: what exists and is still right is kept (byte for byte). A certificate is issued
again when it is missing, not signed by the current CA, expires within ``--renew-days``, or names
other SANs, CN or key usages than asked for; a new CA (the old one missing or expiring) re-issues
every certificate. Rotation is therefore: delete a file (or the CA) and start again.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import secrets
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KINDS = ("server", "client", "ca-only")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
RESERVED = ("ca.pem", "cert.pem", "key.pem", "keystore.pem", "web.yml", "healthcheck.yml", "healthcheck-password")
HEALTHCHECK_USER = "healthcheck"
BCRYPT_COST = 10


class TLSInitError(ValueError):
    """A setting ``fairwatch tls init`` cannot honour; the message names it, never a secret."""


@dataclass(frozen=True)
class Bundle:
    name: str
    kind: str  # server | client | ca-only
    owner: tuple[int, int] | None = None


@dataclass(frozen=True)
class Plan:
    directory: Path
    ca_directory: Path
    bundles: tuple[Bundle, ...]
    sans: tuple[str, ...] = ("localhost", "127.0.0.1")
    secrets: tuple[tuple[str, str, str], ...] = ()  # (bundle, file name, environment variable)
    web_configs: tuple[tuple[str, str, str], ...] = ()  # (bundle, user, environment variable of the password)
    mounts: tuple[tuple[str, str], ...] = ()  # (bundle, where its service sees it): paths inside written files
    days: int = 825
    ca_days: int = 3650
    renew_days: int = 30


@dataclass
class Change:
    """One line of the report: what was done to a file (``kept``, ``issued``, ``written``, ...) and why."""

    path: str
    action: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.path}: {self.action}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class _Report:
    changes: list[Change] = field(default_factory=list)

    def add(self, path: str, action: str, detail: str = "") -> None:
        self.changes.append(Change(path, action, detail))


# ----------------------------------------------------------------------------- parsing the options


def check_name(name: str, what: str = "bundle") -> str:
    if not _NAME.match(name or ""):
        raise TLSInitError(f"bad {what} name {name!r}: lower-case letters, digits, '-' and '_' only")
    return name


def parse_owner(spec: str) -> tuple[str, tuple[int, int]]:
    """``NAME=UID:GID`` -> (NAME, (UID, GID))."""
    name, sep, ids = spec.partition("=")
    uid, colon, gid = ids.partition(":")
    if not sep or not colon or not uid.isdigit() or not gid.isdigit():
        raise TLSInitError(f"--owner {spec!r}: expected NAME=UID:GID with numeric ids, e.g. kafka=1000:1000")
    return check_name(name), (int(uid), int(gid))


def parse_secret(spec: str) -> tuple[str, str, str]:
    """``BUNDLE/FILE=VARIABLE`` -> (BUNDLE, FILE, VARIABLE)."""
    where, sep, variable = spec.partition("=")
    bundle, slash, name = where.partition("/")
    if not sep or not slash or not _FILE.match(name) or not _VARIABLE.match(variable):
        raise TLSInitError(f"--secret {spec!r}: expected BUNDLE/FILE=VARIABLE, e.g. worker/clickhouse-password="
                           "CLICKHOUSE_WRITER_PASSWORD (the value is read from the environment, never given here)")
    if name in RESERVED:
        raise TLSInitError(f"--secret {spec!r}: {name} is a file tls init writes itself")
    return check_name(bundle), name, variable


def parse_web_config(spec: str) -> tuple[str, str, str]:
    """``BUNDLE=USER:VARIABLE`` -> (BUNDLE, USER, VARIABLE)."""
    bundle, sep, rest = spec.partition("=")
    user, colon, variable = rest.partition(":")
    if not sep or not colon or not re.match(r"^[A-Za-z0-9_.-]+$", user) or not _VARIABLE.match(variable):
        raise TLSInitError(f"--web-config {spec!r}: expected BUNDLE=USER:VARIABLE, e.g. alertmanager=fairwatch:"
                           "ALERTMANAGER_PASSWORD (the password is read from the environment)")
    if user == HEALTHCHECK_USER:
        raise TLSInitError(f"--web-config {spec!r}: the user {HEALTHCHECK_USER!r} is the health check's own")
    return check_name(bundle), user, variable


def parse_mount(spec: str) -> tuple[str, str]:
    """``BUNDLE=/absolute/path`` -> (BUNDLE, path)."""
    bundle, sep, path = spec.partition("=")
    if not sep or not path.startswith("/") or any(c in path for c in "\n\r\0\"'"):
        raise TLSInitError(f"--mount {spec!r}: expected BUNDLE=/absolute/path, where the bundle's service sees it")
    return check_name(bundle), path.rstrip("/") or "/"


def make_plan(directory: Path, ca_directory: Path | None, servers: list[str], clients: list[str],
              ca_only: list[str], sans: list[str], owners: list[str], secret_specs: list[str],
              web_specs: list[str], mount_specs: list[str] = (), days: int = 825, ca_days: int = 3650,
              renew_days: int = 30) -> Plan:
    """A :class:`Plan` from the command line's options, every name checked."""
    owner_of: dict[str, tuple[int, int]] = {}
    for spec in owners:
        name, ids = parse_owner(spec)
        if name in owner_of:
            raise TLSInitError(f"--owner {name} is given twice")
        owner_of[name] = ids
    bundles: list[Bundle] = []
    for kind, names in (("server", servers), ("client", clients), ("ca-only", ca_only)):
        for name in names:
            check_name(name)
            if name in {b.name for b in bundles}:
                raise TLSInitError(f"bundle {name} is named twice")
            bundles.append(Bundle(name, kind, owner_of.get(name)))
    if not bundles:
        raise TLSInitError("nothing to do: name at least one --server, --client or --ca-only bundle")
    known = {b.name: b for b in bundles}
    for name in owner_of:
        if name not in known:
            raise TLSInitError(f"--owner {name}: no --server, --client or --ca-only bundle of that name")
    parsed_secrets = tuple(parse_secret(s) for s in secret_specs)
    for bundle, name, _ in parsed_secrets:
        if bundle not in known:
            raise TLSInitError(f"--secret {bundle}/{name}: no bundle {bundle}")
    if len({(b, n) for b, n, _ in parsed_secrets}) != len(parsed_secrets):
        raise TLSInitError("a --secret file is named twice")
    parsed_web = tuple(parse_web_config(s) for s in web_specs)
    for bundle, _, _ in parsed_web:
        if bundle not in known or known[bundle].kind != "server":
            raise TLSInitError(f"--web-config {bundle}: needs a --server bundle of that name (its certificate serves TLS)")
    if len({b for b, _, _ in parsed_web}) != len(parsed_web):
        raise TLSInitError("--web-config: at most one per bundle")
    mounts = dict(parse_mount(m) for m in mount_specs)
    for bundle in mounts:
        if bundle not in known:
            raise TLSInitError(f"--mount {bundle}: no bundle {bundle}")
    for san in sans:
        _san(san)  # refuse a bad one now, not half-way
    if not 1 <= renew_days < days <= ca_days:
        raise TLSInitError(f"need 1 <= --renew-days ({renew_days}) < --days ({days}) <= --ca-days ({ca_days})")
    ca_directory = ca_directory or directory / ".ca"
    if ca_directory.resolve() in {(directory / b.name).resolve() for b in bundles}:
        raise TLSInitError(f"--ca-dir {ca_directory} is a bundle's directory: the CA key must stay apart")
    return Plan(Path(directory), Path(ca_directory), tuple(bundles), tuple(dict.fromkeys(sans)), parsed_secrets,
                parsed_web, tuple(mounts.items()), days, ca_days, renew_days)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not re.match(r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$", name):
        raise TLSInitError(f"--san {name!r}: not a host name or an IP address")
    return x509.DNSName(name)


# ----------------------------------------------------------------------------- files


def _owner_ok(st: os.stat_result, owner: tuple[int, int] | None) -> bool:
    return owner is None or (st.st_uid, st.st_gid) == owner


def _ensure_dir(path: Path, owner: tuple[int, int] | None) -> None:
    if path.is_symlink():
        raise TLSInitError(f"{path} is a symbolic link: tls init writes only into real directories")
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if owner is not None and (st.st_uid, st.st_gid) != owner:
        os.chown(path, *owner)
    if st.st_mode & 0o777 != 0o700:
        path.chmod(0o700)


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> bool:
    """Make ``path`` hold ``data`` with ``mode`` and ``owner``; True when its content changed.
    A new content goes to a temporary file first (mode and owner set before it is renamed over)."""
    if path.is_symlink():
        raise TLSInitError(f"{path} is a symbolic link: remove it (tls init never writes through one)")
    if path.exists():
        st = path.stat()
        if path.read_bytes() == data:
            if owner is not None and (st.st_uid, st.st_gid) != owner:
                os.chown(path, *owner)
            if st.st_mode & 0o777 != mode:
                path.chmod(mode)
            return False
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            if owner is not None:
                os.fchown(out.fileno(), *owner)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load(cert_path: Path, key_path: Path):
    """The certificate and key at these paths, or None when either is missing or unreadable as PEM."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return cert, key


def _same_key(cert: x509.Certificate, key) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


# ----------------------------------------------------------------------------- certificates


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue_ca(days: int, now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"fairwatch local CA {now:%Y-%m-%d} {secrets.token_hex(4)}")  # a new CA never shares a name
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _usages(kind: str) -> list:
    # a server's certificate is also its client certificate (Kafka's broker connects to itself)
    return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if kind == "server" \
        else [ExtendedKeyUsageOID.CLIENT_AUTH]


def wanted_sans(bundle: Bundle, sans: tuple[str, ...]) -> list[x509.GeneralName]:
    if bundle.kind != "server":
        return []
    return list(dict.fromkeys([_san(bundle.name), *(_san(s) for s in sans)]))


def _issue_leaf(bundle: Bundle, sans: tuple[str, ...], ca: x509.Certificate, ca_key, days: int,
                now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(bundle.name)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(min(now + timedelta(days=days), ca.not_valid_after_utc))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(_usages(bundle.kind)), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    names = wanted_sans(bundle, sans)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _ca_problem(loaded, renew_days: int, now: datetime) -> str | None:
    if loaded is None:
        return "no CA yet"
    cert, key = loaded
    if not _same_key(cert, key):
        return "ca.key does not belong to ca.pem"
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "ca.pem is not a CA certificate"
    except x509.ExtensionNotFound:
        return "ca.pem is not a CA certificate"
    if cert.not_valid_after_utc < now + timedelta(days=renew_days):
        return f"the CA expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def leaf_problem(loaded, bundle: Bundle, sans: tuple[str, ...], ca: x509.Certificate, renew_days: int,
                 now: datetime) -> str | None:
    """Why the certificate and key of ``bundle`` must be issued again, or None when they may stay."""
    if loaded is None:
        return "none yet"
    cert, key = loaded
    if not _same_key(cert, key):
        return "key.pem does not belong to cert.pem"
    try:
        if cert.issuer != ca.subject:
            raise InvalidSignature
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return "not signed by the current CA"
    if cert.not_valid_after_utc < now + timedelta(days=renew_days):
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    if cert.subject != _name(bundle.name):
        return "another subject"
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = []
    if usages != _usages(bundle.kind):
        return "other key usages"
    try:
        names = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    if names != wanted_sans(bundle, sans):
        return "other subject alternative names"
    return None


# ----------------------------------------------------------------------------- bcrypt (Alertmanager)


def _crypt(word: str, salt: str) -> str:
    """crypt(3) of the C library: the stdlib module up to Python 3.12, libcrypt itself after."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt as crypt_module  # removed in Python 3.13
        except ImportError:
            crypt_module = None
    if crypt_module is not None:
        result = crypt_module.crypt(word, salt)
    else:
        try:
            library = ctypes.CDLL("libcrypt.so.1")
        except OSError:
            raise TLSInitError("no crypt(3) library (libcrypt.so.1) to make the bcrypt hash Alertmanager needs") from None
        library.crypt.restype = ctypes.c_char_p
        library.crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
        raw = library.crypt(word.encode(), salt.encode())
        result = raw.decode() if raw else None
    if not result or not result.startswith("$2"):
        raise TLSInitError("this system's crypt(3) cannot make bcrypt hashes (Alertmanager needs them)")
    return result


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    salt = f"$2b${cost:02d}$" + "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(22))
    return _crypt(password, salt)


def bcrypt_matches(password: str, hashed: str) -> bool:
    if not isinstance(hashed, str) or not hashed.startswith("$2"):
        return False
    try:
        return secrets.compare_digest(_crypt(password, hashed), hashed)
    except TLSInitError:
        return False


def _password_from(env, variable: str, what: str) -> str:
    value = env.get(variable, "")
    if not value:
        raise TLSInitError(f"{what}: the environment variable {variable} is not set or empty")
    if any(c in value for c in "\n\r\0"):
        raise TLSInitError(f"{what}: the environment variable {variable} holds a line break or NUL")
    return value


# ----------------------------------------------------------------------------- the run


def init(plan: Plan, env=None, now: datetime | None = None) -> list[Change]:
    """Make or keep everything ``plan`` asks for; the changes, in order, for the report."""
    env = os.environ if env is None else env
    now = now or datetime.now(timezone.utc)
    report = _Report()
    # everything secret is read first: a missing variable stops the run before anything is written
    secret_values = {(b, n): _password_from(env, v, f"--secret {b}/{n}") for b, n, v in plan.secrets}
    web_passwords = {b: (u, _password_from(env, v, f"--web-config {b}")) for b, u, v in plan.web_configs}

    _ensure_dir(plan.ca_directory, None)
    ca_pem, ca_key_path = plan.ca_directory / "ca.pem", plan.ca_directory / "ca.key"
    loaded_ca = _load(ca_pem, ca_key_path)
    problem = _ca_problem(loaded_ca, plan.renew_days, now)
    if problem is None:
        ca, ca_key = loaded_ca
        report.add(str(ca_pem), "kept", f"valid until {ca.not_valid_after_utc:%Y-%m-%d}")
    else:
        ca, ca_key = _issue_ca(plan.ca_days, now)
        _write(ca_key_path, _key_pem(ca_key), 0o600, None)
        _write(ca_pem, _pem(ca), 0o644, None)
        report.add(str(ca_pem), "issued", problem)

    if plan.directory.is_symlink():
        raise TLSInitError(f"--dir {plan.directory} is a symbolic link: name the directory itself")
    plan.directory.mkdir(parents=True, exist_ok=True)
    for bundle in plan.bundles:
        where = plan.directory / bundle.name
        _ensure_dir(where, bundle.owner)
        if _write(where / "ca.pem", _pem(ca), 0o644, bundle.owner):
            report.add(f"{bundle.name}/ca.pem", "written")
        if bundle.kind != "ca-only":
            loaded = _load(where / "cert.pem", where / "key.pem")
            why = leaf_problem(loaded, bundle, plan.sans, ca, plan.renew_days, now)
            if why is None:
                cert, key = loaded
                report.add(f"{bundle.name}/cert.pem", "kept", f"valid until {cert.not_valid_after_utc:%Y-%m-%d}")
            else:
                cert, key = _issue_leaf(bundle, plan.sans, ca, ca_key, plan.days, now)
                report.add(f"{bundle.name}/cert.pem", "issued", why)
            # key first: a reader never sees a certificate without its key
            _write(where / "key.pem", _key_pem(key), 0o600, bundle.owner)
            _write(where / "cert.pem", _pem(cert), 0o644, bundle.owner)
            _write(where / "keystore.pem", _key_pem(key) + _pem(cert), 0o600, bundle.owner)
        for (name_bundle, name), value in secret_values.items():
            if name_bundle == bundle.name:
                changed = _write(where / name, value.encode(), 0o600, bundle.owner)
                report.add(f"{bundle.name}/{name}", "written" if changed else "unchanged")
        if bundle.name in web_passwords:
            user, password = web_passwords[bundle.name]
            seen_at = dict(plan.mounts).get(bundle.name) or str(where.resolve())
            _web_config(where, seen_at, bundle.owner, user, password, report, bundle.name)
    return report.changes


def _web_config(where: Path, seen_at: str, owner, user: str, password: str, report: _Report, bundle: str) -> None:
    """``web.yml`` for Alertmanager's --web.config.file, and the health check's user: its password
    and amtool's ``healthcheck.yml``. Paths are absolute, as the service sees the bundle
    (``seen_at``): amtool 0.25 resolves a relative path against the parent of its config's folder."""
    check_password_path = where / "healthcheck-password"
    try:
        check_password = check_password_path.read_text().strip()
    except FileNotFoundError:
        check_password = ""
    if len(check_password) < 32:
        check_password = secrets.token_urlsafe(32)
    _write(check_password_path, check_password.encode(), 0o600, owner)
    old: dict = {}
    with contextlib.suppress(FileNotFoundError, yaml.YAMLError, AttributeError):
        old = (yaml.safe_load((where / "web.yml").read_text()) or {}).get("basic_auth_users") or {}
    users = {}
    for name, secret in ((user, password), (HEALTHCHECK_USER, check_password)):
        kept = old.get(name)
        users[name] = kept if bcrypt_matches(secret, kept) else bcrypt_hash(secret)
    document = {
        "tls_server_config": {"cert_file": f"{seen_at}/cert.pem", "key_file": f"{seen_at}/key.pem",
                              "min_version": "TLS12"},
        "basic_auth_users": users,
    }
    text = (f"# written by `fairwatch tls init`: Alertmanager's --web.config.file={seen_at}/web.yml\n"
            + yaml.safe_dump(document, sort_keys=False))
    changed = _write(where / "web.yml", text.encode(), 0o600, owner)
    report.add(f"{bundle}/web.yml", "written" if changed else "unchanged", f"users {user}, {HEALTHCHECK_USER}")
    client = {"basic_auth": {"username": HEALTHCHECK_USER, "password_file": f"{seen_at}/healthcheck-password"},
              "tls_config": {"ca_file": f"{seen_at}/ca.pem"}}
    text = ("# written by `fairwatch tls init`: amtool's --http.config.file for the container's health check\n"
            + yaml.safe_dump(client, sort_keys=False))
    _write(where / "healthcheck.yml", text.encode(), 0o600, owner)
