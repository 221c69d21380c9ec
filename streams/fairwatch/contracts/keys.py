"""Ed25519 keys in the text format of Go's ``golang.org/x/mod/sumdb/note`` (and of C2SP signed notes).

One key format serves every signer in fairwatch: a site signing its input batches, the operator
signing checkpoints of the evidence log, a witness cosigning them. Outside tools read it as is.

- verifier key (public, fine to print): ``<name>+<key hash, 8 hex>+<base64(0x01 || public key)>``
- signer key (secret, a file or an environment variable, never printed):
  ``PRIVATE+KEY+<name>+<key hash, 8 hex>+<base64(0x01 || private seed)>``

The key hash is the first four bytes, big-endian, of SHA-256(name || "\\n" || 0x01 || public key);
a signature names its key by (name, hash).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ALG_ED25519 = 1
_PRIVATE_PREFIX = "PRIVATE+KEY+"
# as golang.org/x/mod/sumdb/note: a name is non-empty and holds no '+' and no whitespace
_NAME = re.compile(r"^[^+\s]+$")


class BadKey(ValueError):
    """A key text, file or name that cannot be used; the message says why and never holds the key."""


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise BadKey(f"bad key name {name!r}: it must be non-empty, without '+' or whitespace")
    return name


def key_hash(name: str, public_key: bytes) -> int:
    """The 32-bit id of a key: SHA-256(name || '\\n' || 0x01 || public key), first four bytes."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return struct.unpack(">I", digest[:4])[0]


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class VerifierKey:
    """A public key with its name and hash; ``verify`` checks an Ed25519 signature."""

    name: str
    hash: int
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    @property
    def key_id(self) -> str:
        """``name+hash``: how input and notes name the key."""
        return f"{self.name}+{self.hash:08x}"

    def text(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.hash:08x}+{encoded}"


@dataclass(frozen=True)
class SigningKey:
    """A private key with its name and hash. Its repr never shows the key."""

    name: str
    hash: int
    _private: Ed25519PrivateKey = field(repr=False, compare=False)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    @property
    def verifier(self) -> VerifierKey:
        return VerifierKey(self.name, self.hash, _raw_public(self._private.public_key()))

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.hash:08x}"

    def text(self) -> str:
        """The secret text form; write it to a 0600 file, never to a terminal or a log."""
        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.hash:08x}+{encoded}"


def generate_key(name: str) -> SigningKey:
    """A new Ed25519 key named ``name``."""
    _check_name(name)
    private = Ed25519PrivateKey.generate()
    return SigningKey(name, key_hash(name, _raw_public(private.public_key())), private)


def _split(text: str, what: str) -> tuple[str, int, bytes]:
    parts = text.strip().split("+", 2)  # standard base64 may itself hold "+"
    if len(parts) != 3:
        raise BadKey(f"not a {what} key: expected name+hash+base64")
    name, hash_hex, encoded = parts
    _check_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
        raise BadKey(f"not a {what} key: the hash of key {name!r} is not 8 lowercase hex digits")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise BadKey(f"not a {what} key: the key {name!r} is not valid base64") from None
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise BadKey(f"not a {what} key: key {name!r} is not an Ed25519 key (algorithm 1, 32 bytes)")
    return name, int(hash_hex, 16), raw[1:]


def parse_verifier_key(text: str) -> VerifierKey:
    """A verifier key from its text; the hash must match the name and key."""
    if text.strip().startswith(_PRIVATE_PREFIX):
        raise BadKey("this is a private signer key; give the public verifier key")
    name, declared, public = _split(text, "verifier")
    if key_hash(name, public) != declared:
        raise BadKey(f"verifier key {name!r}: its hash does not match its name and key")
    return VerifierKey(name, declared, public)


def parse_signing_key(text: str) -> SigningKey:
    """A signer key from its secret text; never echoes the text in an error."""
    text = text.strip()
    if not text.startswith(_PRIVATE_PREFIX):
        raise BadKey("not a signer key: it must start with PRIVATE+KEY+")
    name, declared, seed = _split(text[len(_PRIVATE_PREFIX):], "signer")
    private = Ed25519PrivateKey.from_private_bytes(seed)
    if key_hash(name, _raw_public(private.public_key())) != declared:
        raise BadKey(f"signer key {name!r}: its hash does not match its name and key")
    return SigningKey(name, declared, private)


def read_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """A signer key from a file that only its owner can read (mode 0600 or stricter)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise BadKey(f"cannot read the key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadKey(f"the key file {path} can be read by others (mode {stat.S_IMODE(mode):04o}): chmod 600 it")
    return parse_signing_key(text)


def signing_key_from(environ: dict[str, str], variable: str) -> SigningKey | None:
    """The signer key named by ``VARIABLE`` (the key text) or ``VARIABLE_FILE`` (a 0600 file); None
    when neither is set, an error when both are."""
    text, path = environ.get(variable, ""), environ.get(f"{variable}_FILE", "")
    if text and path:
        raise BadKey(f"both {variable} and {variable}_FILE are set: keep one")
    if path:
        return read_signing_key(path)
    return parse_signing_key(text) if text else None


def write_signing_key(key: SigningKey, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the secret key text to ``path`` with mode 0600, created exclusively unless ``force``."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise BadKey(f"{path} exists: choose another file or pass --force") from None
    except OSError as exc:
        raise BadKey(f"cannot write the key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(key.text() + "\n")
    return path
