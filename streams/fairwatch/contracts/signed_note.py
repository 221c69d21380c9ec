"""C2SP signed notes (https://c2sp.org/signed-note) and tlog checkpoints (https://c2sp.org/tlog-checkpoint).

The format of Go's ``golang.org/x/mod/sumdb/note``, so outside tools check what fairwatch signs::

    <text, ending in a newline>
    <blank line>
    — <key name> <base64(4-byte big-endian key hash || 64-byte Ed25519 signature of the text)>
    ...

A checkpoint is a note whose text is the log's origin, its size in decimal, its root in base64,
then optional extension lines.

Witness cosignatures are plain Ed25519 note signatures (type 0x01) of the checkpoint text by the
witness's key, so Go's note package verifies them as any other. C2SP's timestamped
``cosignature/v1`` (type 0x04, its own key hash) is not used: x/mod's note package cannot verify
it, the key format of :mod:`fairwatch.contracts.keys` has type 0x01 only, and a fairwatch
witness's statement ("consistent with the last checkpoint I cosigned") needs no time.

Opening is as Go's ``note.Open`` except stricter where C2SP allows: every signature line by a
known key must verify (Go checks only a key's first line), and two verifiers with one name and
key hash are refused even when no line names them.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

from fairwatch.contracts.keys import BadKey, SigningKey, VerifierKey, parse_verifier_key

MAX_SIGNATURES = 100  # as Go's note.Open: a bound on the work a note can ask for
_DASH = "— "  # U+2014 EM DASH, then a space
_NAME = re.compile(r"[^+\s]+")  # as keys.py and Go's isValidName: non-empty, no '+', no space
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # C2SP: no ASCII control character but newline
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")  # below 2**63: tlog's tree sizes are int64
_MAX_SIZE = 1 << 63


class NoteError(ValueError):
    """A note or checkpoint that is malformed, badly signed or not signed as required."""


class OpenedNote(NamedTuple):
    text: str
    verified: list[str]  # key ids (name+hash) of the known keys whose signatures verified
    unverified: list[tuple[str, int]]  # (name, key hash) of signatures by unknown keys


class _Signature(NamedTuple):
    name: str
    hash: int
    signature: bytes
    line: str


def _utf8(note: str | bytes) -> str:
    """``note`` as text that is valid UTF-8 (a str may hold lone surrogates) without control
    characters other than newline."""
    try:
        note = note.decode("utf-8") if isinstance(note, bytes) else note.encode("utf-8").decode("utf-8")
    except UnicodeError:
        raise NoteError("malformed note: not valid UTF-8") from None
    if _CONTROL.search(note):
        raise NoteError("malformed note: a control character other than newline")
    return note


def _line(key: SigningKey, text: str) -> str:
    signature = base64.b64encode(struct.pack(">I", key.hash) + key.sign(text.encode())).decode()
    return f"{_DASH}{key.name} {signature}\n"


def _unique(signers: Sequence[SigningKey]) -> dict[tuple[str, int], SigningKey]:
    if not signers:
        raise NoteError("a note needs at least one signer")
    return {(key.name, key.hash): key for key in signers}


def sign_note(text: str, signers: Sequence[SigningKey]) -> str:
    """The note of ``text`` (ending in a newline) signed by each of ``signers``, in their order."""
    if not _utf8(text).endswith("\n"):
        raise NoteError("a note's text must end in a newline")
    return text + "\n" + "".join(_line(key, text) for key in _unique(signers).values())


def _parse(note: str | bytes) -> tuple[str, list[_Signature]]:
    """The text and signature lines of a note, checked for syntax only."""
    note = _utf8(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line between the text and the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("malformed note: no signature line, or the last one does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    signatures = []
    for number, line in enumerate(lines, 1):
        name, _, encoded = line.removeprefix(_DASH).partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raw = b""
        if not line.startswith(_DASH) or not _NAME.fullmatch(name) or len(raw) < 5:
            raise NoteError(f"malformed note: signature line {number} is not '— <key name> <base64 signature>'")
        signatures.append(_Signature(name, struct.unpack(">I", raw[:4])[0], raw[4:], line))
    return text, signatures


def cosign(note: str | bytes, signers: Sequence[SigningKey]) -> str:
    """``note`` with the signatures of ``signers`` added after the ones it has (a signer's earlier
    signature is replaced, a repeated line dropped). Checks the note's syntax, not its signatures:
    a witness opens the note with the log's key first."""
    text, signatures = _parse(note)
    new = _unique(signers)
    kept = dict.fromkeys(s.line + "\n" for s in signatures if (s.name, s.hash) not in new)
    if len(kept) + len(new) > MAX_SIGNATURES:
        raise NoteError(f"a note holds at most {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(kept) + "".join(_line(key, text) for key in new.values())


def open_note(
    note: str | bytes,
    verifiers: Iterable[VerifierKey | str],
    *,
    require: Iterable[VerifierKey | str] = (),
    quorum: int = 0,
) -> OpenedNote:
    """The text of ``note`` and who signed it, checked against ``verifiers`` (keys or their text).

    Refused (:class:`NoteError`) when the note is malformed, a known key's signature does not
    verify, no known key signed, a key of ``require`` (keys or key ids) did not sign, or fewer than
    ``quorum`` known keys outside ``require`` signed: ``require=[log], quorum=2`` asks for the
    log's signature and two witnesses' cosignatures.
    """
    known: dict[tuple[str, int], VerifierKey] = {}
    try:
        for verifier in verifiers:
            key = parse_verifier_key(verifier) if isinstance(verifier, str) else verifier
            if known.setdefault((key.name, key.hash), key) != key:
                raise NoteError(f"ambiguous key {key.key_id}: two verifier keys have this name and hash")
    except BadKey as exc:
        raise NoteError(f"bad verifier key: {exc}") from None
    text, signatures = _parse(note)
    verified: list[str] = []
    unverified: list[tuple[str, int]] = []
    for signature in signatures:
        key = known.get((signature.name, signature.hash))
        if key is None:
            if (signature.name, signature.hash) not in unverified:
                unverified.append((signature.name, signature.hash))
        elif not key.verify(text.encode(), signature.signature):
            raise NoteError(f"invalid signature for key {key.key_id}")
        elif key.key_id not in verified:
            verified.append(key.key_id)
    if not verified:
        raise NoteError("the note has no signature by a known key")
    required = {r if isinstance(r, str) else r.key_id for r in require}
    if missing := sorted(required.difference(verified)):
        raise NoteError(f"the note is not signed by the required key(s) {', '.join(missing)}")
    if (others := len(set(verified) - required)) < quorum:
        raise NoteError(f"the note has {others} of the {quorum} cosignatures required")
    return OpenedNote(text, verified, unverified)


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: the log's origin, size and root; optional, opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self):
        for line in (self.origin, *self.extensions):
            if not line or "\n" in line or _CONTROL.search(line):
                raise NoteError(f"bad checkpoint line {line!r}: lines are non-empty, without control characters")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size < _MAX_SIZE:
            raise NoteError(f"bad checkpoint size {self.size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise NoteError("a checkpoint's root hash is 32 bytes")

    def text(self) -> str:
        lines = (self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions)
        return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in a note's text (as :func:`open_note` returns it), strictly: the origin,
    the size in decimal without leading zeros, the canonical base64 of a 32-byte root."""
    if not text.endswith("\n"):
        raise NoteError("malformed checkpoint: it must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("malformed checkpoint: it needs an origin, a size and a root hash line")
    origin, size, encoded, *extensions = lines
    if not _SIZE.fullmatch(size):
        raise NoteError(f"malformed checkpoint: the size {size!r} is not a decimal number without leading zeros")
    try:
        root = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        root = b""
    if len(root) != 32 or base64.b64encode(root).decode() != encoded:
        raise NoteError("malformed checkpoint: the root hash is not the base64 of 32 bytes")
    return Checkpoint(origin, int(size), root, tuple(extensions))
