"""Verifying the evidence log offline, from the operator's public key and checkpoints kept outside.

For each log, every leaf is recomputed from the row it names (as the numbers read it), the roots
of the recomputed tree are compared with every signed checkpoint (from the store and from the
outside directories), and every evidence row must be some leaf. What is found, first bad row
named:

- ``edited``: a row differs from what was logged (also a row superseded by a later insert);
- ``deleted``: a logged row is gone; ``inserted``: a row older than the last seal is in no leaf;
- ``reordered``: the leaves' order no longer gives the signed roots (rows swapped in the log);
- ``truncated``: a signed checkpoint is larger than the log (a rollback);
- ``fork``: two signed checkpoints of one log disagree; ``bad_signature``: a checkpoint that the
  operator's key did not sign (or a cosigned one with a witness signature that does not verify);
- ``unwitnessed``: given witness keys, the log's newest checkpoint carries fewer valid witness
  cosignatures than the quorum (``.cosigned`` files of fairwatch.audit.witness in the outside
  directories). Cosigned notes are checkpoints too, for the fork and truncation checks.

Nothing to verify (no leaf, no checkpoint) is an error, never a pass.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote

from fairwatch.audit.evidence_log import IN_FLIGHT_MARGIN, EvidenceError, origin_of

# dead letters are deleted 90 days after their rejection on servers with TTL (migration 002); a
# dead letter is sealed after its rejection, so one sealed longer ago than that may be gone lawfully
DEAD_LETTER_RETENTION = 90 * 86_400
from fairwatch.contracts.keys import VerifierKey
from fairwatch.contracts.signed_note import Checkpoint, NoteError, open_note, parse_checkpoint
from fairwatch.core import merkle
from fairwatch.store.clickhouse import Store
from fairwatch.store.evidence import (
    DELETED,
    SAME,
    UNLOGGED,
    checkpoints,
    describe,
    leaf_anomalies,
    leaf_rows,
    leaves_against_rows,
    logs_with_rows,
    unlogged_rows_of_log,
)


@dataclass(frozen=True)
class Finding:
    """One thing wrong, on one log; ``row`` names the table and key where there is one."""

    origin: str
    what: str
    detail: str
    leaf_index: int | None = None
    row: str | None = None

    def text(self) -> str:
        at = f" leaf {self.leaf_index}" if self.leaf_index is not None else ""
        return f"{self.what.upper()} {self.origin}{at}: {self.detail}"


@dataclass
class LogState:
    origin: str
    leaves: int = 0
    checkpoints: int = 0
    signed_size: int = 0
    unsealed_rows: int = 0
    witnesses: int = 0  # witnesses that cosigned the newest checkpoint (counted when witnesses are given)
    expired: int = 0  # rows sealed more than their table's retention ago and since deleted by its TTL


@dataclass
class Verification:
    logs: list[LogState] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    rows_checked: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {"ok": self.ok, "rows_checked": self.rows_checked, "seconds": round(self.seconds, 3),
                "logs": [asdict(log) for log in self.logs], "findings": [asdict(f) for f in self.findings]}


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str
    where: str  # "store" or a file path
    signed_at: int | None = None
    cosigners: tuple[str, ...] = ()  # key ids of the given witnesses whose cosignatures verified


def read_outside(directory: Path, suffix: str = ".checkpoint") -> list[tuple[str, str]]:
    """(note, file) for every checkpoint file (or with ``suffix=".cosigned"``, every witness's
    cosigned checkpoint) under an outside directory."""
    if not directory.is_dir():
        raise EvidenceError(f"{directory} is not a directory of checkpoints")
    return [(path.read_text(), str(path)) for path in sorted(directory.glob(f"*/*{suffix}"))]


def _opened(note: str, where: str, verifiers: Sequence[VerifierKey], origin_hint: str,
            findings: list[Finding]) -> Checkpoint | None:
    try:
        opened = open_note(note, verifiers)
        return parse_checkpoint(opened.text)
    except (NoteError, ValueError) as exc:
        findings.append(Finding(origin_hint, "bad_signature", f"checkpoint in {where} does not verify: {exc}"))
        return None


def _cosigned(note: str, where: str, verifiers: Sequence[VerifierKey], witnesses: Sequence[VerifierKey],
              origin_hint: str, findings: list[Finding]) -> tuple[Checkpoint, tuple[str, ...]] | None:
    """A cosigned checkpoint: it must carry the operator's signature; every signature by a key
    given must verify. Returns the checkpoint and the witnesses that cosigned it."""
    try:
        opened = open_note(note, [*verifiers, *witnesses])
        checkpoint = parse_checkpoint(opened.text)
    except (NoteError, ValueError) as exc:
        findings.append(Finding(origin_hint, "bad_signature", f"cosigned checkpoint in {where} does not verify: {exc}"))
        return None
    if not {v.key_id for v in verifiers} & set(opened.verified):
        findings.append(Finding(origin_hint, "bad_signature", f"cosigned checkpoint in {where} is not signed by the "
                                                              "operator's key"))
        return None
    witness_ids = {w.key_id for w in witnesses}
    return checkpoint, tuple(k for k in opened.verified if k in witness_ids)


def verify(store: Store, verifiers: Sequence[VerifierKey], *, base: str, outside: Sequence[Path] = (),
           origins: Sequence[str] | None = None, witnesses: Sequence[VerifierKey] = (),
           quorum: int | None = None, notes: Sequence[tuple[str, str]] = ()) -> Verification:
    """Check every log of ``store`` (or only ``origins``) against its signed checkpoints; given
    ``witnesses``, each log's newest checkpoint must be cosigned by ``quorum`` of them (default:
    all) in the outside directories. ``notes``: more checkpoints to check as those of the store,
    as (note, where it is from), e.g. a report's."""
    started = time.perf_counter()
    if quorum is None:
        quorum = len(witnesses)
    if witnesses and not 1 <= quorum <= len(witnesses):
        raise ValueError(f"a quorum of {quorum} of {len(witnesses)} witness keys cannot be met: give 1 to "
                         f"{len(witnesses)}")
    if quorum and not witnesses:
        raise ValueError(f"a quorum of {quorum} witnesses needs their verifier keys")
    operator_ids = {v.key_id for v in verifiers}
    if clash := operator_ids & {w.key_id for w in witnesses}:
        raise ValueError(f"{', '.join(sorted(clash))} is given as both an operator key and a witness key")
    result = Verification()
    signed: dict[str, list[SignedCheckpoint]] = defaultdict(list)
    for origin, size, root_hex, note, signed_at in checkpoints(store):
        checkpoint = _opened(note, "the store", verifiers, origin, result.findings)
        if checkpoint is None:
            continue
        if (checkpoint.origin, checkpoint.size, checkpoint.root_hash.hex()) != (origin, int(size), root_hex):
            result.findings.append(Finding(origin, "bad_signature", f"the stored checkpoint row of size {size} does "
                                                                   "not say what its signed note says"))
        signed[checkpoint.origin].append(SignedCheckpoint(checkpoint, note, "store", int(signed_at)))
    for directory in outside:
        for note, path in read_outside(directory):
            checkpoint = _opened(note, path, verifiers, unquote(Path(path).parent.name), result.findings)
            if checkpoint is not None:
                signed[checkpoint.origin].append(SignedCheckpoint(checkpoint, note, path))
        for note, path in read_outside(directory, ".cosigned"):
            found = _cosigned(note, path, verifiers, witnesses, unquote(Path(path).parent.name), result.findings)
            if found is not None:
                signed[found[0].origin].append(SignedCheckpoint(found[0], note, path, cosigners=found[1]))
    for note, where in notes:
        checkpoint = _opened(note, where, verifiers, where, result.findings)
        if checkpoint is not None:
            signed[checkpoint.origin].append(SignedCheckpoint(checkpoint, note, where))
    by_log = {origin_of(base, log): log for log in logs_with_rows(store)}
    known = set(by_log) | set(signed) | _origins_with_leaves(store)
    wanted = sorted(known if origins is None else set(origins))
    if not wanted:
        raise EvidenceError("nothing to verify: the store holds no evidence log, no checkpoint and no evidence row")
    for origin in wanted:
        _verify_log(store, origin, by_log.get(origin, _log_name(base, origin)), signed.get(origin, []), result, base)
        if witnesses:
            _check_witnesses(origin, signed.get(origin, []), quorum, result.logs[-1], result.findings)
    if result.rows_checked == 0 and not result.findings:
        raise EvidenceError("nothing to verify: no leaf and no evidence row in the logs asked for")
    result.seconds = time.perf_counter() - started
    return result


def _check_witnesses(origin: str, signed: list[SignedCheckpoint], quorum: int, state: LogState,
                     findings: list[Finding]) -> None:
    """The newest signed checkpoint must carry ``quorum`` witness cosignatures (a witness counts
    once, over every cosigned copy of that checkpoint)."""
    if not signed:
        return  # no checkpoint at all is already a finding (unsigned) when the log has leaves
    newest = max(signed, key=lambda s: s.checkpoint.size).checkpoint
    cosigners = {key for s in signed if s.checkpoint == newest for key in s.cosigners}
    state.witnesses = len(cosigners)
    if len(cosigners) < quorum:
        findings.append(Finding(origin, "unwitnessed", f"the newest checkpoint, size {newest.size}, has "
                                                       f"{len(cosigners)} of the {quorum} witness cosignatures "
                                                       "required"))


def _origins_with_leaves(store: Store) -> set[str]:
    return {row[0] for row in store.query_values("SELECT DISTINCT origin FROM evidence_leaves")}


def _log_name(base: str, origin: str) -> str | None:
    prefix = f"{base}/deployment/"
    if origin.startswith(prefix):
        return origin[len(prefix):]
    return "" if origin == origin_of(base, "") else None


def retained_seconds(store: Store) -> dict[str, int]:
    """Evidence kind -> how long its table keeps a row, where a TTL says (fairwatch retention): a row
    sealed longer ago than that may be gone lawfully; one deleted sooner was deleted before its
    retention date. The dead letters' 90 days (migration 002) hold wherever no TTL is read."""
    from fairwatch.store.evidence import SOURCES
    from fairwatch.store.retention import retention_status

    days = {r.table: r.ttl_days for r in retention_status(store) if r.ttl_days is not None}
    kept = {"dead_letter": DEAD_LETTER_RETENTION}
    for source in SOURCES:
        # a verdict's evidence row is read with its event's deployment: gone with its event too
        tables = {source.table} | ({"match_events"} if source.log_sql == "event_deployment" else set())
        limits = [days[t] for t in tables if t in days]
        if limits:
            kept[source.kind] = min(limits) * 86_400
    return kept


def _verify_log(store: Store, origin: str, log: str | None, signed: list[SignedCheckpoint],
                result: Verification, base: str) -> None:
    now = int(time.time())
    retained = retained_seconds(store)
    state = LogState(origin, checkpoints=len({s.checkpoint.size for s in signed}))
    result.logs.append(state)
    findings = result.findings
    anomalies = leaf_anomalies(store, origin)
    size = state.leaves = anomalies["size"]
    for index in anomalies["forks"]:
        findings.append(Finding(origin, "fork", "two different rows are logged at this index", index))
    for kind, key, indexes in anomalies["twice"]:
        named = describe(kind, key)
        findings.append(Finding(origin, "reordered", f"{named} is logged at leaves {indexes}", indexes[1], named))
    for index in anomalies["missing"]:
        findings.append(Finding(origin, "deleted", "this leaf is missing from the log table", index))
    recomputed: list[bytes] = []
    if log is None and size:
        findings.append(Finding(origin, "unknown_origin", f"this log is not under the origin {base!r}: verify with "
                                                          "the --origin it was sealed with"))
    elif size or log is not None:
        hashes, status, index_at = leaves_against_rows(store, origin, log if log is not None else "")
        unlogged = status.count(UNLOGGED)
        logged = len(status) - unlogged
        recomputed, status = hashes[:logged], status[:logged]
        result.rows_checked += logged - status.count(DELETED)
        bad = [(i, index_at(i)) for i, s in enumerate(status) if s] if status.count(SAME) != logged else []
        details = {int(r[0]): r for r in leaf_rows(store, origin, [i for _, i in bad[:200]], log or "")} if bad else {}
        named_bad = 0
        for position, index in bad[:200]:
            kind, key, sealed = details[index][1], details[index][2], int(details[index][6])
            if status[position] == DELETED and kind in retained and sealed < now - retained[kind]:
                state.expired += 1  # deleted by its table's TTL: sealed before its retention began
                continue
            named_bad += 1
            if named_bad > 20:
                continue
            named = describe(kind, key)
            if status[position] == DELETED:
                why = (f", though its table keeps rows {retained[kind] // 86_400} days" if kind in retained
                       else " (its table has no retention: nothing is deleted lawfully)")
                findings.append(Finding(origin, "deleted", f"{named} is logged but no longer stored{why}", index, named))
            else:
                findings.append(Finding(origin, "edited", f"{named} differs from the row logged here", index, named))
        more = max(0, named_bad - 20) + max(0, len(bad) - 200)
        if more:
            findings.append(Finding(origin, "edited", f"{more} more leaves differ from their rows"))
        state.unsealed_rows = unlogged
        if unlogged and log is not None:  # oldest first: rows older than the last seal were skipped by it
            for kind, key, ingested in unlogged_rows_of_log(store, origin, log):
                if not (anomalies["sealed"] and int(ingested) + IN_FLIGHT_MARGIN < anomalies["sealed"]):
                    break
                named = describe(kind, key)
                findings.append(Finding(origin, "inserted", f"{named} is stored (since {ingested}) but in no "
                                                            "leaf, though later rows were sealed", None, named))
                state.unsealed_rows -= 1
    if anomalies["missing"]:
        recomputed = []  # roots over a hole say nothing more than the hole
    _check_checkpoints(store, origin, size, recomputed, signed, state, findings)


def _check_checkpoints(store: Store, origin: str, size: int, recomputed: list[bytes],
                       signed: list[SignedCheckpoint], state: LogState, findings: list[Finding]) -> None:
    by_size: dict[int, set[bytes]] = defaultdict(set)
    for s in signed:
        by_size[s.checkpoint.size].add(s.checkpoint.root_hash)
    for checkpoint_size, roots in sorted(by_size.items()):
        if len(roots) > 1:
            findings.append(Finding(origin, "fork", f"{len(roots)} checkpoints of size {checkpoint_size} are signed "
                                                    "with different roots"))
    if not signed:
        if size:
            findings.append(Finding(origin, "unsigned", f"{size} leaves and no signed checkpoint"))
        return
    largest = max(by_size)
    state.signed_size = largest
    if largest > size:
        findings.append(Finding(origin, "truncated", f"a signed checkpoint says the log held {largest} leaves; the "
                                                     f"store holds {size}"))
    sizes = sorted(s for s in by_size if s <= len(recomputed))
    roots = merkle.roots_at(recomputed, sizes) if sizes else []
    previous = 0
    for checkpoint_size, root in zip(sizes, roots):
        if root not in by_size[checkpoint_size]:
            first = _first_moved(store, origin, recomputed, previous, checkpoint_size)
            where = f"leaf {first}" if first is not None else f"a leaf in [{previous}, {checkpoint_size})"
            findings.append(Finding(origin, "reordered", f"the leaves up to {checkpoint_size} do not give the signed "
                                                         f"root; the first that differs is {where}", first))
            return
        previous = checkpoint_size


def _first_moved(store: Store, origin: str, recomputed: list[bytes], start: int, end: int) -> int | None:
    """The first leaf in [start, end) whose recomputed hash is not the tree's stored leaf hash."""
    wanted = [merkle.stored_hash_index(0, i) for i in range(start, end)]
    rows = store.query_values(
        "SELECT storage_index, any(hash) FROM evidence_hashes WHERE origin = %(o)s AND storage_index >= %(lo)s "
        "AND storage_index <= %(hi)s GROUP BY storage_index", {"o": origin, "lo": min(wanted), "hi": max(wanted)})
    stored = {int(i): h for i, h in rows}
    for leaf, index in zip(range(start, end), wanted):
        if stored.get(index) != recomputed[leaf].hex():
            return leaf
    return None
