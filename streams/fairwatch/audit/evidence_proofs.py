"""Inclusion bundles: one piece of evidence, proved to be in a signed log, checkable without the store.

``prove`` writes the row's canonical bytes, its leaf index, the latest signed checkpoint of its
log and the inclusion proof (RFC 9162 audit path); ``check`` needs only the bundle and the
operator's public key: it opens the note, recomputes the leaf hash from the bytes and checks the
path up to the signed root.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Sequence

from fairwatch.audit.evidence_log import EvidenceError, origin_of
from fairwatch.contracts.canonical import fields_of
from fairwatch.contracts.keys import VerifierKey
from fairwatch.contracts.signed_note import NoteError, open_note, parse_checkpoint
from fairwatch.core import merkle
from fairwatch.store.clickhouse import Store
from fairwatch.store.evidence import BY_KIND, checkpoints, describe, stored_hash_reader

BUNDLE_FORMAT = "fairwatch-inclusion/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prove(store: Store, kind: str, row_key: str, *, base: str) -> dict[str, Any]:
    """The bundle for the row ``row_key`` of ``kind``, against its log's latest checkpoint."""
    source = BY_KIND.get(kind)
    if source is None:
        raise EvidenceError(f"unknown evidence kind {kind!r}: one of {', '.join(BY_KIND)}")
    rows = store.query_values(f"SELECT * FROM ({source.select_canonical()}) WHERE row_key = %(key)s",
                              {"key": row_key})
    if not rows:
        raise EvidenceError(f"no {describe(kind, row_key)} is stored")
    row = rows[0]
    origin = origin_of(base, row[1])
    found = store.query_values(
        "SELECT leaf_index, any(leaf_hash) FROM evidence_leaves WHERE origin = %(o)s AND kind = %(k)s "
        "AND row_key = %(key)s GROUP BY leaf_index", {"o": origin, "k": kind, "key": row_key})
    if not found:
        raise EvidenceError(f"{describe(kind, row_key)} is not sealed yet: run `fairwatch audit seal` first")
    index, leaf_hex = int(found[0][0]), found[0][1]
    data = row[3].encode()
    if merkle.leaf_hash(data).hex() != leaf_hex:
        raise EvidenceError(f"{describe(kind, row_key)} differs from its leaf {index}: run `fairwatch audit verify`")
    signed = [r for r in checkpoints(store, origin) if int(r[1]) > index]
    if not signed:
        raise EvidenceError(f"leaf {index} of {origin} is in no signed checkpoint yet: run `fairwatch audit seal`")
    _, size, _, note, _ = signed[-1]
    proof = merkle.prove_record(int(size), index, stored_hash_reader(store, origin))
    return {"format": BUNDLE_FORMAT, "kind": kind, "row": describe(kind, row_key), "leaf_index": index,
            "leaf": _b64(data), "checkpoint": note, "proof": [_b64(h) for h in proof]}


@dataclass(frozen=True)
class BundleCheck:
    origin: str
    size: int
    leaf_index: int
    row: str
    signers: tuple[str, ...]
    content: str  # the canonical bytes proved, as text


def check(bundle: dict[str, Any], verifiers: Sequence[VerifierKey]) -> BundleCheck:
    """Check a bundle offline; raises EvidenceError saying what does not hold."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise EvidenceError(f"not a {BUNDLE_FORMAT} bundle")
    try:
        opened = open_note(bundle["checkpoint"], verifiers)
        checkpoint = parse_checkpoint(opened.text)
        data = base64.b64decode(bundle["leaf"], validate=True)
        proof = [base64.b64decode(h, validate=True) for h in bundle["proof"]]
        index = int(bundle["leaf_index"])
    except NoteError as exc:
        raise EvidenceError(f"the bundle's checkpoint does not verify: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise EvidenceError(f"malformed bundle: {exc}") from None
    if not merkle.check_record(proof, checkpoint.size, checkpoint.root_hash, index, merkle.leaf_hash(data)):
        raise EvidenceError(f"the row is not leaf {index} of the signed log {checkpoint.origin} of size "
                            f"{checkpoint.size}: the inclusion proof fails")
    try:  # named from the proved bytes themselves, never from the bundle's unproved "row" field
        fields = fields_of(data)
        row = f"{fields[0]} {fields[1]}"
    except (ValueError, IndexError, UnicodeDecodeError):
        row = "a row that is not canonical evidence bytes"
    return BundleCheck(checkpoint.origin, checkpoint.size, index, _printable(row), tuple(opened.verified),
                       _printable(data.decode("utf-8", "replace")))


def _printable(text: str) -> str:
    """Control characters escaped: a crafted bundle must not drive the terminal that shows it."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
