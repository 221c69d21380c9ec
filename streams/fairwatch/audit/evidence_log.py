"""Sealing the evidence log: new evidence rows become Merkle leaves, and each log's new state is
signed as a checkpoint, kept in the store and outside it.

One sealer runs per store (``fairwatch audit seal``, a loop beside the workers, or at the end of
``fairwatch replay``): a log has one writer, so it cannot fork by accident. A seal reads every
row that no leaf logs yet, orders them by log, kind and key, appends them, and signs
``origin / size / root`` with the operator's key as a C2SP checkpoint. Before it signs, it checks
that the stored tree still gives the newest root its key signed: a changed tree is refused, never
signed over. The worker's hot path does no hashing.

Outside the store, each checkpoint note and the consistency proof from the newest checkpoint
already there are written once (whole or not at all; never overwritten) to a directory:
``DIR/<origin, percent-encoded>/<size>.checkpoint`` and ``<size>.proof.json``. Witnesses and
auditors read them there; a store rolled back or forked no longer matches them.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from fairwatch.contracts.keys import SigningKey
from fairwatch.contracts.signed_note import Checkpoint, NoteError, open_note, parse_checkpoint, sign_note
from fairwatch.core import merkle
from fairwatch.store.clickhouse import Store
from fairwatch.store.evidence import (
    CHECKPOINT_COLUMNS,
    HASH_COLUMNS,
    LEAF_COLUMNS,
    SOURCES,
    UNATTRIBUTED,
    checkpoints,
    log_size,
    stored_hash_reader,
    unlogged_rows,
)

ORIGIN_ENV = "FAIRWATCH_EVIDENCE_ORIGIN"
KEY_ENV = "FAIRWATCH_EVIDENCE_KEY"  # the operator's signer key (or *_FILE)
OUTSIDE_ENV = "FAIRWATCH_EVIDENCE_DIR"  # where checkpoints are also written
DEFAULT_ORIGIN = "fairwatch"
# verify: a row not in the log though stored this long before the log's last seal is "inserted"
# (an insert stuck longer, or a clock this far off, is reported so until the next seal takes it)
IN_FLIGHT_MARGIN = 600


class EvidenceError(ValueError):
    """The log cannot be sealed or read as asked; the message says why."""


def origin_of(base: str, log: str) -> str:
    """The checkpoint origin of a log: one per deployment, one for unattributed rows."""
    return f"{base}/dead-letters" if log == UNATTRIBUTED else f"{base}/deployment/{log}"


def origin_dir(outside: Path, origin: str) -> Path:
    return outside / quote(origin, safe="")


@dataclass
class SealResult:
    """What one seal appended: leaves per origin and the checkpoints it signed."""

    appended: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def leaves(self) -> int:
        return sum(self.appended.values())


def _write_once(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``, whole or not at all (a temporary file, synced, then linked into
    place); an existing file must hold the same bytes (else: a fork)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temporary, path)
    except FileExistsError:
        if path.read_bytes() != data:
            raise EvidenceError(f"{path} exists with other content: the log has forked, or two sealers run") from None
    finally:
        temporary.unlink()
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def outside_sizes(outside: Path, origin: str) -> list[int]:
    """The sizes of the checkpoints of ``origin`` written outside, ascending."""
    folder = origin_dir(outside, origin)
    if not folder.is_dir():
        return []
    return sorted(int(path.name.split(".")[0]) for path in folder.glob("[0-9]*.checkpoint"))


def write_outside(outside: Path, checkpoint: Checkpoint, note: str, previous_size: int, proof: list[bytes]) -> None:
    """The checkpoint note and the consistency proof from the previous checkpoint, outside the store."""
    folder = origin_dir(outside, checkpoint.origin)
    payload = {"origin": checkpoint.origin, "old_size": previous_size, "new_size": checkpoint.size,
               "proof": [base64.b64encode(h).decode() for h in proof]}
    _write_once(folder / f"{checkpoint.size:012d}.proof.json", (json.dumps(payload, indent=1) + "\n").encode())
    _write_once(folder / f"{checkpoint.size:012d}.checkpoint", note.encode())


def _complete_hashes(store: Store, origin: str, size: int, read) -> None:
    """Store the tree hashes a seal that stopped after writing leaves left out (idempotent: the
    same leaves give the same hashes)."""
    rows = store.query_values("SELECT count(DISTINCT storage_index) FROM evidence_hashes WHERE origin = %(o)s",
                              {"o": origin})
    have = int(rows[0][0]) if rows else 0
    if have >= merkle.stored_hash_count(size):
        return
    done = 0
    while done < size and merkle.stored_hash_count(done + 1) <= have:
        done += 1
    leaf_rows = store.query_values(
        "SELECT leaf_index, any(leaf_hash) FROM evidence_leaves WHERE origin = %(o)s AND leaf_index >= %(done)s "
        "GROUP BY leaf_index ORDER BY leaf_index", {"o": origin, "done": done})
    missing = merkle.append_leaves(done, [bytes.fromhex(h) for _, h in leaf_rows], read)
    store.insert_plain("evidence_hashes", HASH_COLUMNS, [(origin, index, digest.hex()) for index, digest in missing])


def _check_signed_prefix(store: Store, signer: SigningKey, origin: str, size: int, read) -> None:
    """Refuse to sign on top of a stored tree that no longer gives the newest root this key signed:
    the tree hashes were changed, and signing would put the operator's key on a fork."""
    signed = [row for row in checkpoints(store, origin) if 0 < int(row[1]) <= size]
    for _, checkpoint_size, _, note, _ in reversed(signed):
        try:
            checkpoint = parse_checkpoint(open_note(note, [signer.verifier]).text)
        except (NoteError, ValueError):
            continue  # not this key's: a forged or older row proves nothing here
        if checkpoint.origin == origin and merkle.tree_hash(checkpoint.size, read) != checkpoint.root_hash:
            raise EvidenceError(f"{origin}: the stored tree no longer gives the root signed at size "
                                f"{checkpoint.size}; refusing to sign on top of it (run fairwatch audit verify)")
        return


def seal(store: Store, signer: SigningKey, *, base: str = DEFAULT_ORIGIN, outside: Path | None = None,
         now: datetime | None = None) -> SealResult:
    """Append every unlogged evidence row to its log and sign each grown log's checkpoint."""
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    stamp = int(now.timestamp())
    new: dict[str, list[tuple[int, str, str, bytes]]] = defaultdict(list)
    for order, source in enumerate(SOURCES):  # every row no leaf holds, whatever its ingestion time says
        for row in unlogged_rows(store, source):
            new[origin_of(base, row[1])].append((order, row[0], source.kind, bytes.fromhex(row[3])))
    result = SealResult()
    for origin in sorted(new):
        entries = sorted(new[origin])
        size = log_size(store, origin)
        read = stored_hash_reader(store, origin)
        _complete_hashes(store, origin, size, read)
        _check_signed_prefix(store, signer, origin, size, read)
        stored = merkle.append_leaves(size, [entry[3] for entry in entries], read)
        store.insert_plain(
            "evidence_leaves", LEAF_COLUMNS,
            [(origin, size + i, kind, key, digest.hex(), stamp) for i, (_, key, kind, digest) in enumerate(entries)],
        )
        store.insert_plain("evidence_hashes", HASH_COLUMNS, [(origin, index, digest.hex()) for index, digest in stored])
        new_size = size + len(entries)
        root = merkle.tree_hash(new_size, read)
        checkpoint = Checkpoint(origin, new_size, root)
        note = sign_note(checkpoint.text(), [signer])
        store.insert_plain("evidence_checkpoints", CHECKPOINT_COLUMNS, [(origin, new_size, root.hex(), note, stamp)])
        if outside is not None:  # the proof starts at the newest checkpoint already outside (a lost write is spanned)
            previous = max((n for n in outside_sizes(outside, origin) if n < new_size), default=0)
            proof = merkle.prove_tree(new_size, previous, read) if previous else []
            write_outside(outside, checkpoint, note, previous, proof)
        result.appended[origin] = len(entries)
        result.checkpoints[origin] = checkpoint
    result.seconds = time.perf_counter() - started
    return result
