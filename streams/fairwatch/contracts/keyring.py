"""The keyring: which public keys may sign input for which deployment, and when.

A YAML (or JSON) file, ``schemas/keyring.schema.json``, read by the worker and ``fairwatch replay``
(``FAIRWATCH_KEYRING``); ``schemas/examples/keyring/keyring.yaml`` shows every key::

    keyring_version: 1
    require_signatures: false          # deployments not listed below (default false)
    deployments:
      gate-a:
        require_signatures: true       # default true for a listed deployment
        keys:
          - key: gate-a-2026+9f3c01ab+AcT...   # a verifier key, from `fairwatch keys generate`
            not_before: "2026-01-01T00:00:00Z"
            not_after: "2027-01-01T00:00:00Z"
          - key: gate-a-2025+...
            revoked_at: "2026-03-04T12:00:00Z"
            note: laptop stolen (INC-1234)

The rules, judged at the time the site says it signed (``signed_at``; the same answer when a
message is read again, and offline):

- a message with signature headers is verified whatever its deployment requires: a key the
  keyring does not hold is ``unknown_key``; a signature that does not verify ``bad_signature``;
  a key not listed under the deployment it signed for ``key_not_for_deployment``; signed at or
  after ``revoked_at`` ``revoked_key``, at or after ``not_after`` ``expired_key``, before
  ``not_before`` ``key_not_yet_valid``;
- a match event must name the deployment its message is signed for (else
  ``deployment_mismatch``), and an unsigned one is refused (``unsigned``) when its deployment
  requires signatures: listed with ``require_signatures: true``, or not listed and the
  top-level ``require_signatures`` is true;
- verified outcomes name no deployment: when ``outcomes_require_signatures`` (default: whether
  any deployment, or the top level, requires signatures) every outcome must be signed; otherwise
  an unsigned outcome is refused when its event is known to the worker and its deployment
  requires signatures. A signed outcome whose event the worker holds must be signed for that
  event's deployment (``deployment_mismatch``).

Examples
--------
>>> from fairwatch.contracts.keys import generate_key
>>> key = generate_key("gate-a-2026")
>>> ring = parse_keyring(f'''
... keyring_version: 1
... deployments:
...   gate-a:
...     keys: [{{key: "{key.verifier.text()}", not_after: "2027-01-01T00:00:00Z"}}]
... ''')
>>> ring.requires("gate-a"), ring.requires("gate-b"), ring.outcomes_require_signatures
(True, False, True)
>>> from datetime import datetime, timezone
>>> print(ring.judge(key.key_id, "gate-a", datetime(2026, 6, 1, tzinfo=timezone.utc)))
None
>>> print(ring.judge(key.key_id, "gate-a", datetime(2027, 6, 1, tzinfo=timezone.utc)))  # doctest: +ELLIPSIS
expired_key (headers): key gate-a-2026+... of gate-a expired at 2027-01-01T00:00:00Z; signed at 2027-06-01T00:00:00Z
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from fairwatch.contracts.keys import BadKey, VerifierKey, parse_verifier_key
from fairwatch.contracts.records import ContractError, RejectCode, Rejection, fast_name, parse_timestamp

KEYRING_VERSION = 1
_TOP_KEYS = {"keyring_version", "require_signatures", "outcomes_require_signatures", "deployments"}
_DEPLOYMENT_KEYS = {"require_signatures", "keys"}
_GRANT_KEYS = {"key", "not_before", "not_after", "revoked_at", "note"}


class KeyringError(ValueError):
    """A keyring file that cannot be used; the message names the file and the entry."""


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class KeyGrant:
    """One key allowed to sign for one deployment, within a window, unless revoked."""

    verifier: VerifierKey
    deployment: str
    not_before: datetime | None = None
    not_after: datetime | None = None
    revoked_at: datetime | None = None
    note: str = ""

    def judge(self, signed_at: datetime) -> Rejection | None:
        """Why a signature of this key made at ``signed_at`` is refused, or None."""
        key, where = self.verifier.key_id, self.deployment
        if self.revoked_at is not None and signed_at >= self.revoked_at:
            return Rejection(RejectCode.REVOKED_KEY, f"key {key} of {where} was revoked at {_utc(self.revoked_at)}; "
                                                     f"signed at {_utc(signed_at)}", "headers")
        if self.not_after is not None and signed_at >= self.not_after:
            return Rejection(RejectCode.EXPIRED_KEY, f"key {key} of {where} expired at {_utc(self.not_after)}; "
                                                     f"signed at {_utc(signed_at)}", "headers")
        if self.not_before is not None and signed_at < self.not_before:
            return Rejection(RejectCode.KEY_NOT_YET_VALID, f"key {key} of {where} is valid from "
                                                           f"{_utc(self.not_before)}; signed at {_utc(signed_at)}",
                             "headers")
        return None


@dataclass(frozen=True)
class DeploymentKeys:
    """A deployment's keys and whether its input must be signed."""

    require_signatures: bool = True
    grants: tuple[KeyGrant, ...] = ()


@dataclass(frozen=True)
class Keyring:
    """Parsed keyring (see the module). ``digest`` is the SHA-256 of the file it came from."""

    deployments: Mapping[str, DeploymentKeys] = field(default_factory=dict)
    require_signatures: bool = False  # deployments not listed
    outcomes_require_signatures: bool = False
    source: str = "<keyring>"
    digest: str = ""

    def __post_init__(self) -> None:
        by_key: dict[str, dict[str, KeyGrant]] = {}
        for deployment, keys in self.deployments.items():
            for grant in keys.grants:
                by_key.setdefault(grant.verifier.key_id, {})[deployment] = grant
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_required", {d for d, k in self.deployments.items() if k.require_signatures})

    @property
    def any_required(self) -> bool:
        """Whether some deployment's input must be signed."""
        return self.require_signatures or bool(self._required)

    def requires(self, deployment: str) -> bool:
        """Whether ``deployment``'s input must be signed."""
        keys = self.deployments.get(deployment)
        return self.require_signatures if keys is None else keys.require_signatures

    def key(self, key_id: str) -> VerifierKey | None:
        """The public key named ``key_id`` (``name+hash``), whatever deployment it signs for."""
        grants = self._by_key.get(key_id)
        return next(iter(grants.values())).verifier if grants else None

    def grants(self, key_id: str) -> dict[str, KeyGrant]:
        """deployment -> grant of the key ``key_id``."""
        return dict(self._by_key.get(key_id, {}))

    def judge(self, key_id: str, deployment: str, signed_at: datetime) -> Rejection | None:
        """Why the keyring refuses a signature by ``key_id`` for ``deployment`` made at
        ``signed_at`` (not checking the signature itself), or None."""
        grants = self._by_key.get(key_id)
        if not grants:
            return Rejection(RejectCode.UNKNOWN_KEY, f"key {key_id[:80]!r} is not in the keyring", "headers")
        grant = grants.get(deployment)
        if grant is None:
            return Rejection(RejectCode.KEY_NOT_FOR_DEPLOYMENT,
                             f"key {key_id} may sign for {', '.join(sorted(grants))}, not for {deployment[:80]!r}",
                             "headers")
        return grant.judge(signed_at)


def _when(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # YAML reads an unquoted timestamp as one
        if value.tzinfo is None:
            raise KeyringError(f"{where}: {value} has no UTC offset; add 'Z'")
        return value.astimezone(timezone.utc)
    try:
        return parse_timestamp(value, where).astimezone(timezone.utc)
    except ContractError as exc:
        raise KeyringError(f"{where}: {exc.rejection.message}") from None


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise KeyringError(f"{where} must be true or false, got {value!r}")
    return value


def _unknown(keys: Mapping, allowed: set[str], where: str) -> None:
    extra = sorted(set(map(str, keys)) - allowed)
    if extra:
        raise KeyringError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _grant(entry: Any, deployment: str, where: str) -> KeyGrant:
    if not isinstance(entry, dict):
        raise KeyringError(f"{where} must be a mapping with at least 'key'")
    _unknown(entry, _GRANT_KEYS, where)
    if not isinstance(entry.get("key"), str):
        raise KeyringError(f"{where}.key must be a verifier key text (name+hash+base64)")
    try:
        verifier = parse_verifier_key(entry["key"])
    except BadKey as exc:
        raise KeyringError(f"{where}.key: {exc}") from None
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise KeyringError(f"{where}.note must be text")
    grant = KeyGrant(verifier, deployment, _when(entry.get("not_before"), f"{where}.not_before"),
                     _when(entry.get("not_after"), f"{where}.not_after"),
                     _when(entry.get("revoked_at"), f"{where}.revoked_at"), note)
    if grant.not_before and grant.not_after and grant.not_before >= grant.not_after:
        raise KeyringError(f"{where}: not_before must come before not_after")
    return grant


def keyring_from(document: Any, source: str = "<keyring>", digest: str = "") -> Keyring:
    """A :class:`Keyring` from a parsed document; :class:`KeyringError` names the entry at fault."""
    if not isinstance(document, dict):
        raise KeyringError(f"{source}: a keyring is a mapping with keyring_version and deployments")
    _unknown(document, _TOP_KEYS, source)
    if document.get("keyring_version") != KEYRING_VERSION or isinstance(document.get("keyring_version"), bool):
        raise KeyringError(f"{source}: keyring_version must be {KEYRING_VERSION}, got {document.get('keyring_version')!r}")
    default = _bool(document.get("require_signatures", False), f"{source}: require_signatures")
    listed = document.get("deployments", {})
    if not isinstance(listed, dict):
        raise KeyringError(f"{source}: deployments must map deployment names to their keys")
    deployments: dict[str, DeploymentKeys] = {}
    public: dict[str, bytes] = {}
    for name, spec in listed.items():
        where = f"{source}: deployments.{name}"
        if not fast_name(name):
            raise KeyringError(f"{where}: not a deployment name (1-128 printable characters; no quotes, backslash, "
                               "backtick or leading = + - @)")
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise KeyringError(f"{where} must be a mapping (require_signatures, keys)")
        _unknown(spec, _DEPLOYMENT_KEYS, where)
        entries = spec.get("keys", [])
        if not isinstance(entries, list):
            raise KeyringError(f"{where}.keys must be a list")
        grants = tuple(_grant(entry, name, f"{where}.keys[{i}]") for i, entry in enumerate(entries))
        ids = [g.verifier.key_id for g in grants]
        if len(set(ids)) != len(ids):
            raise KeyringError(f"{where}.keys lists key {next(i for i in ids if ids.count(i) > 1)} twice")
        for grant in grants:
            if public.setdefault(grant.verifier.key_id, grant.verifier.public_key) != grant.verifier.public_key:
                raise KeyringError(f"{where}: two different keys are named {grant.verifier.key_id}")
        deployments[name] = DeploymentKeys(_bool(spec.get("require_signatures", True), f"{where}.require_signatures"),
                                           grants)
    any_required = default or any(d.require_signatures for d in deployments.values())
    outcomes = _bool(document.get("outcomes_require_signatures", any_required), f"{source}: outcomes_require_signatures")
    return Keyring(deployments, default, outcomes, source, digest)


def parse_keyring(text: str | bytes, source: str = "<keyring>") -> Keyring:
    """A keyring from YAML (or JSON) text."""
    import yaml

    raw = text.encode() if isinstance(text, str) else text
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise KeyringError(f"{source}: not valid YAML or JSON{at}: {getattr(exc, 'problem', exc)}") from None
    return keyring_from(document, source, hashlib.sha256(raw).hexdigest())


def load_keyring(path: str | os.PathLike[str]) -> Keyring:
    """The keyring of a file (YAML or JSON)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyringError(f"cannot read the keyring {path}: {exc.strerror}") from None
    return parse_keyring(raw, str(path))

