"""A tamper-evident record: estimate snapshots and alerts appended to hash chains in ClickHouse.

Each record of the ``audit_log`` table belongs to a *chain* (a name, such as ``snapshot`` or
``alert``) and has a sequence number ``seq`` (1, 2, 3, ... without holes). Its ``hash`` is the
SHA-256 of the previous record's hash and the record itself (chain, seq, kind, time, canonical
JSON content), so editing, deleting or inserting a row breaks the chain at that row, and
``verify`` finds the first broken link. With an operator-held key (``FAIRWATCH_AUDIT_KEY``) each
record also carries ``mac`` = HMAC-SHA256(key, hash): without the key nobody can rewrite the
chain from a point onward, or append to it, and keep it valid.

Concurrency: a chain has one writer at a time. ``append_records`` reads the chain's head from
the store under a per-process lock and writes the next records in one INSERT; the worker writes
snapshots only from the owner of partition 0 and alerts from one place, so each chain has one
writer. Two processes appending to the same chain at the same instant would fork it; ``verify``
reports the fork (a duplicated ``seq``) rather than hiding it. Give concurrent writers their own
chains (``chain=`` or ``FAIRWATCH_AUDIT_CHAIN``).

What a hash chain cannot show alone: the newest records being cut off (the chain stays valid up
to the new head). ``verify`` reports each chain's head (seq and hash); publish or keep those
elsewhere to anchor the log, and compare.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Iterable

from fairwatch.store.clickhouse import SCHEMAS_DIR, ServerStore, Store
from fairwatch.store.migrations import MigrationResult, load_migrations, migrate

TABLE = "audit_log"
COLUMNS = ("chain", "seq", "kind", "recorded_at", "content", "prev_hash", "hash", "mac")
GENESIS = "0" * 64
KEY_ENV = "FAIRWATCH_AUDIT_KEY"
CHAIN_ENV = "FAIRWATCH_AUDIT_CHAIN"
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


class AuditError(ValueError):
    """A record or a chain name that cannot be logged; the message says why."""


def _plain(value: Any) -> Any:
    """JSON-ready form of one value; the same value always gives the same text."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise AuditError(f"naive datetime {value!r} in an audit record: pass an aware datetime")
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):  # numpy scalars
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # as in `fairwatch metrics --json`: a number that does not exist is null
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise AuditError(f"cannot log a {type(value).__name__} in an audit record")


def canonical_json(record: dict[str, Any]) -> str:
    """The canonical text of a record: sorted keys, no spaces, ASCII, datetimes in UTC.

    >>> canonical_json({"b": 1.5, "a": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "c": float("nan")})
    '{"a":"2026-01-02T03:04:05Z","b":1.5,"c":null}'
    """
    if not isinstance(record, dict):
        raise AuditError(f"an audit record is a dict, got {type(record).__name__}")
    return json.dumps(_plain(record), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def record_hash(prev_hash: str, chain: str, seq: int, kind: str, recorded_at: datetime, content: str) -> str:
    """SHA-256 (hex) over the previous hash and every column of the record.

    The fields are joined with the unit separator, which the names (checked) and the ASCII JSON
    content cannot contain, so two different records never give the same input.

    >>> h1 = record_hash(GENESIS, "alert", 1, "alert", datetime(2026, 1, 1, tzinfo=timezone.utc), '{"a":1}')
    >>> h2 = record_hash(GENESIS, "alert", 1, "alert", datetime(2026, 1, 1, tzinfo=timezone.utc), '{"a":2}')
    >>> len(h1), h1 == h2
    (64, False)
    """
    text = "\x1f".join((prev_hash, chain, str(seq), kind, _stamp(recorded_at), content))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def record_mac(key: bytes | None, digest: str) -> str:
    """HMAC-SHA256 of a record hash with the operator's key; empty without a key."""
    return hmac.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest() if key else ""


def key_from_env() -> bytes | None:
    """The HMAC key from ``FAIRWATCH_AUDIT_KEY`` (its UTF-8 bytes), or None when unset."""
    value = os.environ.get(KEY_ENV)
    return value.encode() if value else None


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AuditError(f"{what} {name!r}: use 1-128 letters, digits or _ . : -")
    return name


def _lock(store: Store, chain: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((store.url, chain), threading.Lock())


def chain_head(store: Store, chain: str) -> tuple[int, str]:
    """(seq, hash) of the newest record of a chain; (0, GENESIS) for an empty chain."""
    rows = store.query(
        f"SELECT seq, hash FROM {TABLE} WHERE chain = %(chain)s ORDER BY seq DESC LIMIT 1", {"chain": chain}
    )
    return (int(rows[0][0]), rows[0][1]) if rows else (0, GENESIS)


def append_records(
    store: Store,
    kind: str,
    records: Iterable[dict[str, Any]],
    *,
    chain: str | None = None,
    key: bytes | None = None,
    now: datetime | None = None,
) -> None:
    """Append records of one kind (``"snapshot"``, ``"alert"``, ...) to the audit log.

    Parameters
    ----------
    store
        The store holding the ``audit_log`` table (migration 004).
    kind
        What the records are; part of each hash.
    records
        JSON-like dicts (datetimes, enums and numpy scalars are accepted); each becomes one row.
    chain
        The chain to extend; default ``FAIRWATCH_AUDIT_CHAIN`` or else ``kind``. One writer
        per chain at a time.
    key
        HMAC key; default ``FAIRWATCH_AUDIT_KEY`` (no MAC when neither is set).
    now
        The records' ``recorded_at`` (default: the current time, to the second).

    Examples
    --------
    >>> import tempfile
    >>> from fairwatch.store.clickhouse import open_store
    >>> from fairwatch.store.migrations import migrate
    >>> store = open_store(f"chdb://{tempfile.mkdtemp()}")
    >>> _ = migrate(store)
    >>> t = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
    >>> append_records(store, "alert", [{"group": "F&Black", "fmr": 0.03}, {"group": "M&White", "fmr": 0.004}], now=t)
    >>> window = (t, t.replace(hour=7))
    >>> result = verify(store, *window, key=b"")
    >>> result.ok, result.checked, result.chains["alert"][0]
    (True, 2, 2)

    A row slipped in beside record 2 (same sequence number, a hash that fits record 1):

    >>> first_hash = store.query("SELECT hash FROM audit_log WHERE seq = 1")[0][0]
    >>> forged = '{"fmr":0.0,"group":"F&Black"}'
    >>> digest = record_hash(first_hash, "alert", 2, "alert", t, forged)
    >>> _ = store.insert(TABLE, COLUMNS, [("alert", 2, "alert", t, forged, first_hash, digest, "")])
    >>> print(verify(store, *window, key=b"").first_break)
    chain 'alert' seq 2 recorded 2026-11-25 06:00:00: two records with this sequence number (inserted row or forked chain)
    >>> store.close()
    """
    kind = _check_name(kind, "audit kind")
    chain = _check_name(chain or os.environ.get(CHAIN_ENV) or kind, "audit chain")
    contents = [canonical_json(r) for r in records]
    if not contents:
        return
    key = (key if key is not None else key_from_env()) or None  # b"": explicitly no key
    recorded_at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    with _lock(store, chain):
        seq, prev = chain_head(store, chain)
        rows = []
        for content in contents:
            seq += 1
            digest = record_hash(prev, chain, seq, kind, recorded_at, content)
            rows.append((chain, seq, kind, recorded_at, content, prev, digest, record_mac(key, digest)))
            prev = digest
        store.insert(TABLE, COLUMNS, rows)


# ---------------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class Break:
    """The first broken link of a chain: the row where the record stops being what was written."""

    chain: str
    seq: int
    reason: str
    recorded_at: datetime | None = None
    kind: str | None = None

    def __str__(self) -> str:
        when = f" recorded {_stamp(self.recorded_at)}" if self.recorded_at else ""
        return f"chain {self.chain!r} seq {self.seq}{when}: {self.reason}"


@dataclass(slots=True)
class VerifyResult:
    """What ``verify`` checked and the first broken link of each chain (``ok`` when none)."""

    checked: int = 0
    chains: dict[str, tuple[int, str]] = field(default_factory=dict)  # chain -> (last seq, last hash) checked
    breaks: list[Break] = field(default_factory=list)
    macs_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def first_break(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records_checked": self.checked,
            "macs_checked": self.macs_checked,
            "chains": {c: {"last_seq": s, "last_hash": h} for c, (s, h) in sorted(self.chains.items())},
            "breaks": [
                {"chain": b.chain, "seq": b.seq, "kind": b.kind, "reason": b.reason,
                 "recorded_at": _stamp(b.recorded_at) if b.recorded_at else None}
                for b in self.breaks
            ],
        }


def _check_chain(chain: str, rows: list[tuple], key: bytes | None, start_seq: int) -> tuple[int, Break | None]:
    """Walk one chain's rows (ordered by seq) and return (records checked, first break or None).

    ``rows[0]`` may be the anchor (seq = start_seq - 1, recorded before the window): its own hash
    is checked, its link to the one before it is outside the window.
    """
    prev_seq, prev_hash = None, None
    checked = 0
    for name, seq, kind, recorded_at, content, stored_prev, digest, mac in rows:
        seq = int(seq)
        checked += 1
        where = dict(recorded_at=recorded_at, kind=kind)
        if prev_seq is None:
            if seq > start_seq:
                return checked, Break(chain, start_seq, f"record {start_seq} is missing (deleted?)")
            if seq == 1 and stored_prev != GENESIS:
                return checked, Break(chain, seq, "the first record does not start from the genesis hash", **where)
        elif seq == prev_seq:
            return checked, Break(chain, seq, "two records with this sequence number (inserted row or forked chain)",
                                  **where)
        elif seq != prev_seq + 1:
            return checked, Break(chain, prev_seq + 1, f"record {prev_seq + 1} is missing (deleted?)")
        elif stored_prev != prev_hash:
            return checked, Break(chain, seq, "its previous-hash does not match the record before it", **where)
        if record_hash(stored_prev, name, seq, kind, recorded_at, content) != digest:
            return checked, Break(chain, seq, "its content does not match its hash (edited?)", **where)
        if key is not None and not hmac.compare_digest(record_mac(key, digest), mac):
            return checked, Break(chain, seq, "its MAC is wrong for the audit key (rewritten without the key?)",
                                  **where)
        prev_seq, prev_hash = seq, digest
    return checked, None


def verify(
    store: Store, from_: datetime, to: datetime, *, key: bytes | None = None, chain: str | None = None
) -> VerifyResult:
    """Recompute every chain over the records recorded in ``[from_, to)`` and find broken links.

    Each chain is read from the last record before ``from_`` (the anchor) up to its last record
    before ``to``, by sequence number, so a row deleted from the window or inserted with a time
    outside it is still seen. MACs are checked when ``key`` (default ``FAIRWATCH_AUDIT_KEY``)
    is given.
    """
    if from_.tzinfo is None or to.tzinfo is None:
        raise AuditError("verify needs aware datetimes (UTC)")
    if from_ >= to:
        raise AuditError(f"--from {_stamp(from_)} is not before --to {_stamp(to)}")
    key = (key if key is not None else key_from_env()) or None  # b"": explicitly no key
    result = VerifyResult(macs_checked=key is not None)
    params: dict[str, Any] = {"start": from_, "end": to}
    chains = [chain] if chain else [
        r[0] for r in store.query(
            f"SELECT DISTINCT chain FROM {TABLE} WHERE recorded_at >= %(start)s AND recorded_at < %(end)s"
            " ORDER BY chain", params)
    ]
    for name in chains:
        p = dict(params, chain=name)
        (before, last), = store.query(
            f"SELECT maxIf(seq, recorded_at < %(start)s), maxIf(seq, recorded_at < %(end)s) FROM {TABLE}"
            " WHERE chain = %(chain)s", p)
        before, last = int(before), int(last)  # 0 when there is none
        if last <= before:
            continue
        rows = store.query(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE chain = %(chain)s AND seq >= %(lo)s AND seq <= %(hi)s"
            " ORDER BY seq, hash", dict(p, lo=max(before, 1), hi=last))
        checked, broken = _check_chain(name, rows, key, before + 1 if before == 0 else before)
        result.checked += checked
        if broken:
            result.breaks.append(broken)
        elif rows:
            result.chains[name] = (int(rows[-1][1]), rows[-1][6])
    return result


# ------------------------------------------------------------------------------ least privilege

ACCESS_DIR = SCHEMAS_DIR / "clickhouse" / "access"


def migrate_access(store: Store) -> list[MigrationResult]:
    """Apply the access-control migrations (the ``fairwatch_auditor`` role) where they can run.

    They live apart from the table migrations because chDB has no access control at all (it
    refuses ``CREATE ROLE``), and servers before 20.4 have no SQL RBAC (the version gate).
    """
    if not isinstance(store, ServerStore):
        return [MigrationResult(m.version, m.name, "skipped_no_access_control") for m in load_migrations(ACCESS_DIR)]
    return migrate(store, ACCESS_DIR)
