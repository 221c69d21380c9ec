"""A witness of the evidence log: it cosigns a log's checkpoint only when it can show that the
checkpoint extends the last one it cosigned, so a log that forks or rolls back cannot get both
histories witnessed.

The witness reads the checkpoint directory the sealer writes outside the store
(``DIR/<origin, percent-encoded>/<size:012d>.checkpoint`` and ``<size:012d>.proof.json``, the
consistency proof from the log's previous checkpoint; fairwatch.audit.evidence_log). For each
origin it starts from the checkpoint it cosigned last (its state: one file per origin in its own
state directory, the cosigned note, replaced atomically), walks the newer checkpoints in size
order, opens each with the log's verifier key and checks each step's consistency proof with
``merkle.check_tree`` (the proof must start at the previous checkpoint's size). Only the newest
checkpoint is cosigned: ``<size:012d>.<witness key name, percent-encoded>.cosigned`` beside it
holds the note with the log's signature and the witness's (``signed_note.cosign``), created once.

Refused, with nothing cosigned for that origin: a checkpoint that does not verify, a step whose
proof is missing, starts elsewhere or does not hold, a checkpoint of the cosigned size with
another root (a fork) and a newest checkpoint smaller than the cosigned one (a rollback). With no
state yet, the oldest checkpoint of the directory is the starting point (trust on first use).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence
from urllib.parse import quote, unquote

from fairwatch.audit.evidence_log import EvidenceError
from fairwatch.contracts.keys import SigningKey, VerifierKey
from fairwatch.contracts.signed_note import Checkpoint, NoteError, cosign, open_note, parse_checkpoint
from fairwatch.core import merkle

KEY_ENV = "FAIRWATCH_WITNESS_KEY"  # the witness's signer key (or *_FILE)
STATE_ENV = "FAIRWATCH_WITNESS_STATE"
_CHECKPOINT_FILE = re.compile(r"^([0-9]{12})\.checkpoint$")


class _Refused(Exception):
    """Why one origin's checkpoints are not cosigned."""


class _Signed(NamedTuple):
    checkpoint: Checkpoint
    note: str


@dataclass(frozen=True)
class Witnessed:
    """What the witness did for one origin: the size it had cosigned before, the size it
    cosigns now (the same when nothing is new) and where, or why it refused."""

    origin: str
    previous_size: int = 0
    size: int = 0
    cosigned: str | None = None
    refused: str | None = None

    def text(self) -> str:
        if self.refused:
            return f"REFUSED {self.origin}: {self.refused}"
        if self.size == self.previous_size:
            return f"{self.origin}: nothing new, size {self.size} cosigned"
        since = f" (was {self.previous_size})" if self.previous_size else ""
        return f"{self.origin}: cosigned size {self.size}{since} in {self.cosigned}"


@dataclass
class WitnessResult:
    origins: list[Witnessed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(w.refused for w in self.origins)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "origins": [asdict(w) for w in self.origins]}


def cosigned_name(size: int, witness: SigningKey | VerifierKey) -> str:
    """The file name of a witness's cosignature of the checkpoint of ``size``."""
    return f"{size:012d}.{quote(witness.name, safe='')}.cosigned"


def state_path(state_dir: Path, origin: str) -> Path:
    return state_dir / f"{quote(origin, safe='')}.state"


def witness(checkpoint_dir: Path, log_verifiers: Sequence[VerifierKey], witness_key: SigningKey,
            state_dir: Path) -> WitnessResult:
    """Cosign the newest consistent checkpoint of every origin in ``checkpoint_dir``."""
    checkpoint_dir, state_dir = Path(checkpoint_dir), Path(state_dir)
    if not log_verifiers:
        raise EvidenceError("no log verifier key: the witness opens each checkpoint with the log's key")
    if witness_key.key_id in {v.key_id for v in log_verifiers}:
        raise EvidenceError(f"the witness key {witness_key.key_id} is a log key: a witness needs its own key")
    if not checkpoint_dir.is_dir():
        raise EvidenceError(f"{checkpoint_dir} is not a directory of checkpoints")
    state_dir.mkdir(parents=True, exist_ok=True)
    result = WitnessResult()
    with open(state_dir / ".lock", "w") as lock:  # one witness run per state at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        for folder in sorted(p for p in checkpoint_dir.iterdir() if p.is_dir()):
            files = _checkpoint_files(folder)
            if files:
                result.origins.append(_witness_origin(folder, unquote(folder.name), files, log_verifiers,
                                                      witness_key, state_dir))
    return result


def _checkpoint_files(folder: Path) -> list[tuple[int, Path]]:
    found = ((_CHECKPOINT_FILE.match(path.name), path) for path in folder.iterdir())
    return sorted((int(match.group(1)), path) for match, path in found if match)


def _witness_origin(folder: Path, origin: str, files: list[tuple[int, Path]], verifiers: Sequence[VerifierKey],
                    key: SigningKey, state_dir: Path) -> Witnessed:
    state = state_path(state_dir, origin)
    previous_size = 0
    try:
        last = _read_state(state, origin, key)
        previous_size = last.checkpoint.size if last else 0
        newest = files[-1][0]
        if newest < previous_size:
            raise _Refused(f"rollback: the newest checkpoint has size {newest}, smaller than size {previous_size} "
                           "that this witness cosigned")
        at = last  # the checkpoint that the next one must extend
        for size, path in files:
            if size < previous_size:
                continue
            signed = _open(path, size, origin, verifiers)
            if last and size == previous_size:
                if signed.checkpoint.root_hash != last.checkpoint.root_hash:
                    raise _Refused(f"fork: the checkpoint of size {size} has another root than the checkpoint of "
                                   f"size {size} that this witness cosigned")
            elif at is not None:
                _check_step(folder, origin, at.checkpoint, signed.checkpoint)
            at = signed
        assert at is not None and at is not last  # files hold a checkpoint of at least the cosigned size
        cosigned = cosign(at.note, [key])
        path = folder / cosigned_name(at.checkpoint.size, key)
        _write_once(path, cosigned.encode())
        if at.checkpoint.size != previous_size:
            _write_state(state, cosigned)
        return Witnessed(origin, previous_size, at.checkpoint.size, str(path))
    except _Refused as exc:
        return Witnessed(origin, previous_size, previous_size, refused=str(exc))


def _open(path: Path, size: int, origin: str, verifiers: Sequence[VerifierKey]) -> _Signed:
    try:
        note = path.read_text()
        checkpoint = parse_checkpoint(open_note(note, verifiers).text)
    except (NoteError, UnicodeError) as exc:
        raise _Refused(f"the checkpoint of size {size} ({path}) does not verify with the log's key: {exc}") from None
    if checkpoint.origin != origin or checkpoint.size != size:
        raise _Refused(f"{path} holds the checkpoint of {checkpoint.origin} at size {checkpoint.size}, "
                       f"not of {origin} at size {size}")
    return _Signed(checkpoint, note)


def _check_step(folder: Path, origin: str, old: Checkpoint, new: Checkpoint) -> None:
    """The proof file of ``new`` must show that it extends ``old``."""
    path = folder / f"{new.size:012d}.proof.json"
    try:
        document = json.loads(path.read_text())
        old_size, new_size = document["old_size"], document["new_size"]
        proof = [base64.b64decode(h, validate=True) for h in document["proof"]]
        if document["origin"] != origin:
            raise ValueError(f"it is the proof of {document['origin']!r}")
    except FileNotFoundError:
        raise _Refused(f"no consistency proof from size {old.size} to size {new.size}: {path} is missing") from None
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise _Refused(f"the consistency proof {path} is malformed: {exc}") from None
    if new_size != new.size or old_size != old.size:
        raise _Refused(f"no consistency proof from size {old.size} to size {new.size}: the proof of size {new.size} "
                       f"goes from size {old_size} to size {new_size}")
    if not merkle.check_tree(proof, new.size, new.root_hash, old.size, old.root_hash):
        raise _Refused(f"inconsistent: the checkpoint of size {new.size} does not extend the checkpoint of size "
                       f"{old.size} (the consistency proof fails)")


def _read_state(path: Path, origin: str, key: SigningKey) -> _Signed | None:
    """The checkpoint this witness cosigned last for ``origin``; its own signature must verify."""
    try:
        note = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Refused(f"cannot read the witness state {path}: {exc.strerror}") from None
    try:
        checkpoint = parse_checkpoint(open_note(note, [key.verifier]).text)
    except (NoteError, UnicodeError) as exc:
        raise _Refused(f"the witness state {path} is not a checkpoint cosigned by {key.key_id} ({exc}): "
                       "is it another witness's state?") from None
    if checkpoint.origin != origin:
        raise _Refused(f"the witness state {path} is of {checkpoint.origin}, not {origin}")
    return _Signed(checkpoint, note)


def _write_state(path: Path, note: str) -> None:
    """Replace the state file atomically: a crash leaves the old state or the new, never half."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w") as out:
        out.write(note)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_once(path: Path, data: bytes) -> None:
    """Create the cosigned file; one that exists must hold the same bytes."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        if path.read_bytes() != data:
            raise _Refused(f"{path} exists with other content: not overwritten") from None
        return
    with os.fdopen(fd, "wb") as out:
        out.write(data)
