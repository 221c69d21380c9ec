"""Signed input: what a site signs for each Kafka message it sends, and how the signature travels.

A site signs every input message (a batch envelope or a single record) with its Ed25519 key
(:mod:`fairwatch.contracts.keys`). The signature covers the message value exactly, through its
SHA-256, together with the deployment the site signs for, the record kind of the topic and the
signing time, as this text (one field a line, domain-separated by the first)::

    fairwatch-input/v1
    <deployment>
    <kind: match_event or verified_outcome>
    <signed_at: YYYY-MM-DDTHH:MM:SSZ>
    <SHA-256 of the value, 64 lowercase hex digits>

It travels in four Kafka record headers, so the value (the envelope format) is unchanged and a
message without them is simply unsigned:

==========================  =========================================================
header                      value (ASCII)
==========================  =========================================================
``fairwatch-key``           the key id, ``<name>+<8 hex digits>`` (Go's note format)
``fairwatch-deployment``    the deployment the message is signed for
``fairwatch-signed-at``     when it was signed, UTC, whole seconds
``fairwatch-signature``     the Ed25519 signature, standard base64 (88 characters)
==========================  =========================================================

One signature per message, never per record: an Ed25519 verification costs about 90 us here, as
much as a worker spends on 15 records. Hashing the value with SHA-256 first (about 0.6 ns a byte,
in C and outside the GIL) rather than letting Ed25519 hash it with SHA-512 halves the cost per
byte. Which keys may sign for which deployment, and when, is the keyring's business
(:mod:`fairwatch.contracts.keyring`).

Examples
--------
>>> from fairwatch.contracts.keys import generate_key
>>> key = generate_key("gate-a-2026")
>>> headers = sign_value(key, "gate-a", "match_event", b'{"event_id": "e1"}', signed_at="2026-11-25T06:00:00Z")
>>> [name for name, _ in headers]
['fairwatch-key', 'fairwatch-deployment', 'fairwatch-signed-at', 'fairwatch-signature']
>>> claim = read_claim(headers)
>>> claim.deployment, claim.signed_at, claim.key_id == key.key_id
('gate-a', '2026-11-25T06:00:00Z', True)
>>> key.verifier.verify(claim.message(b'{"event_id": "e1"}', "match_event"), claim.signature)
True
>>> key.verifier.verify(claim.message(b'{"event_id": "e2"}', "match_event"), claim.signature)
False
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime, timezone
from typing import Iterable, NamedTuple, Sequence

from fairwatch.contracts.keys import SigningKey
from fairwatch.contracts.records import MAX_YEAR, MIN_YEAR, RejectCode, Rejection

CONTEXT = b"fairwatch-input/v1"
KINDS = ("match_event", "verified_outcome")

KEY_HEADER = "fairwatch-key"
DEPLOYMENT_HEADER = "fairwatch-deployment"
SIGNED_AT_HEADER = "fairwatch-signed-at"
SIGNATURE_HEADER = "fairwatch-signature"
SIGNATURE_HEADERS = (KEY_HEADER, DEPLOYMENT_HEADER, SIGNED_AT_HEADER, SIGNATURE_HEADER)
# set by a worker that forwards a signed message to the partition of its records (not signed:
# it only tells the receiving worker to leave the records of other partitions to their own copy)
FORWARDED_HEADER = "fairwatch-forwarded"

_SIGNED_AT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")
_MAX_HEADER = 256  # a key id, a deployment or a time is far shorter; longer is not ours


def format_signed_at(when: datetime) -> str:
    """``when`` as a signature's time: UTC, whole seconds, ``YYYY-MM-DDTHH:MM:SSZ``."""
    if when.tzinfo is None:
        raise ValueError("signed_at must be an aware datetime")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_signed_at(text: str) -> datetime | None:
    """The time of a ``fairwatch-signed-at`` header, or None when it is not exactly that format or
    not within the years ClickHouse's DateTime stores (1971-2105, as records' timestamps)."""
    match = _SIGNED_AT.fullmatch(text)
    if match is None or not MIN_YEAR <= int(match.group(1)) <= MAX_YEAR:
        return None
    try:
        return datetime(*map(int, match.groups()), tzinfo=timezone.utc)
    except ValueError:  # not a calendar date or time
        return None


def signed_message(deployment: str, kind: str, signed_at: str, value: bytes) -> bytes:
    """The bytes an input signature covers (see the module): the value by its SHA-256."""
    return b"%s\n%s\n%s\n%s\n%s\n" % (CONTEXT, deployment.encode(), kind.encode(), signed_at.encode(),
                                      hashlib.sha256(value).hexdigest().encode())


def sign_value(key: SigningKey, deployment: str, kind: str, value: bytes,
               signed_at: str | datetime | None = None) -> list[tuple[str, bytes]]:
    """The Kafka headers that sign ``value`` for ``deployment`` (``kind``: ``match_event`` or
    ``verified_outcome``); ``signed_at`` defaults to now."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if "\n" in deployment or not deployment:
        raise ValueError(f"not a deployment name: {deployment!r}")
    if signed_at is None:
        signed_at = datetime.now(timezone.utc)
    text = signed_at if isinstance(signed_at, str) else format_signed_at(signed_at)
    if parse_signed_at(text) is None:
        raise ValueError(f"signed_at {text!r} is not YYYY-MM-DDTHH:MM:SSZ within 1971-2105")
    signature = key.sign(signed_message(deployment, kind, text, value))
    return [(KEY_HEADER, key.key_id.encode()), (DEPLOYMENT_HEADER, deployment.encode()),
            (SIGNED_AT_HEADER, text.encode()), (SIGNATURE_HEADER, base64.b64encode(signature))]


class SignatureClaim(NamedTuple):
    """What a message's signature headers say, parsed but not yet verified."""

    key_id: str
    deployment: str
    signed_at: str  # as sent (YYYY-MM-DDTHH:MM:SSZ)
    signed_time: datetime
    signature: bytes  # the 64 raw bytes
    forwarded: bool  # a worker's copy sent on to the partition of its records

    @property
    def signature_b64(self) -> str:
        return base64.b64encode(self.signature).decode()

    def message(self, value: bytes, kind: str) -> bytes:
        """The bytes the signature must cover for ``value`` on a topic of ``kind``."""
        return signed_message(self.deployment, kind, self.signed_at, value)


def _bad(message: str) -> Rejection:
    return Rejection(RejectCode.BAD_SIGNATURE, message, "headers")


def read_claim(headers: Iterable[tuple[str, bytes]] | None) -> SignatureClaim | Rejection | None:
    """The signature claim of a message's headers: None when it carries none of the signature
    headers (unsigned), a ``bad_signature`` rejection when they are incomplete, repeated or
    malformed."""
    found: dict[str, bytes] = {}
    forwarded = False
    for name, value in headers or ():
        if name in SIGNATURE_HEADERS:
            if name in found:
                return _bad(f"header {name} appears twice")
            found[name] = value if isinstance(value, bytes) else bytes(value or b"")
        elif name == FORWARDED_HEADER:
            forwarded = True
    if not found:
        return None
    missing = [name for name in SIGNATURE_HEADERS if name not in found]
    if missing:
        return _bad(f"signature headers incomplete: {', '.join(missing)} missing")
    if any(len(value) > _MAX_HEADER for name, value in found.items() if name != SIGNATURE_HEADER):
        return _bad(f"a signature header is longer than {_MAX_HEADER} bytes")
    try:
        key_id, deployment, signed_at = (found[n].decode("ascii") for n in SIGNATURE_HEADERS[:3])
    except UnicodeDecodeError:
        return _bad("a signature header is not ASCII")
    if "\n" in deployment or not deployment:
        return _bad(f"the deployment header {deployment[:64]!r} is not a deployment name")
    signed_time = parse_signed_at(signed_at)
    if signed_time is None:
        return _bad(f"signed_at {signed_at[:64]!r} is not YYYY-MM-DDTHH:MM:SSZ within 1971-2105")
    try:
        signature = base64.b64decode(found[SIGNATURE_HEADER], validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64:
        return _bad("the signature is not 64 bytes of standard base64")
    return SignatureClaim(key_id, deployment, signed_at, signed_time, signature, forwarded)


# ---- verification in bulk, possibly in another process (fairwatch.stream.input_verification) -----

_public_keys: dict[bytes, object] = {}


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Whether each (raw Ed25519 public key, signed message, signature) verifies. A plain function
    of bytes, so that a worker can run it in a helper process while it decodes the same batch."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    out = []
    for public, message, signature in items:
        key = _public_keys.get(public)
        if key is None:
            if len(_public_keys) > 4096:
                _public_keys.clear()
            key = _public_keys[public] = Ed25519PublicKey.from_public_bytes(public)
        try:
            key.verify(signature, message)
            out.append(True)
        except InvalidSignature:
            out.append(False)
    return out
