"""Where the evidence log's leaves come from, and how the log itself is kept in ClickHouse.

An evidence *source* is a table whose rows the numbers are computed from (match events, verified
outcomes with every revision, independent reviews, dead letters, the audit records of estimate
snapshots and alert transitions). For each it knows the SQL that reads its rows with an
unambiguous ``row_key`` (the key columns joined by spaces: identifiers hold no spaces), the log
the row belongs to (its deployment; dead letters have none and get their own log), and the row's
canonical bytes (fairwatch.contracts.canonical), which exclude ingestion metadata so that a retried
insert of the same row is the same leaf.

Rows are read as the numbers read them: ``FINAL``, the newest version of a key wins. A row
superseded by a later insert therefore shows as edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import msgspec

from fairwatch.contracts.canonical import match_event_row_bytes, review_row_bytes, verified_outcome_row_bytes
from fairwatch.store.clickhouse import Store

UNATTRIBUTED = ""  # the log of rows that name no deployment (dead letters); deployment names are never empty
LEAF_COLUMNS = ("origin", "leaf_index", "kind", "row_key", "leaf_hash", "sealed_at")
HASH_COLUMNS = ("origin", "storage_index", "hash")
CHECKPOINT_COLUMNS = ("origin", "tree_size", "root_hash", "note", "signed_at")
_encode = msgspec.json.encode


def _audit_record_bytes(chain: str, seq: int, kind: str, recorded_at_s: int, content: str) -> bytes:
    return _encode(["audit_record/v1", chain, seq, kind, recorded_at_s, content])


def _dead_letter_bytes(topic, partition, offset, record_index, key_b64, value_b64, code, field, reason) -> bytes:
    return _encode(["dead_letter/v1", topic, partition, offset, record_index, key_b64, value_b64, code, field, reason])


@dataclass(frozen=True)
class EvidenceSource:
    """One kind of evidence row. ``columns`` is the SQL select list after ``row_key, log,
    ingested`` (the three columns every source yields first); ``canonical`` turns the rest of a row
    into its canonical bytes."""

    kind: str
    table: str
    key_sql: str
    log_sql: str
    ingested_sql: str
    columns: str
    source: str  # FROM ... (with FINAL and any join)
    canonical: Callable[..., bytes]
    describe_key: Callable[[str], str]

    def select(self, where: str = "1") -> str:
        return (f"SELECT {self.key_sql} AS row_key, {self.log_sql} AS log, {self.ingested_sql} AS ingested, "
                f"{self.columns} FROM {self.source} WHERE {where}")

    def leaf_bytes(self, row: Sequence) -> bytes:
        """Canonical bytes of a row read with :meth:`select` (its first three columns skipped)."""
        return self.canonical(*row[3:])


def _names(*names: str) -> Callable[[str], str]:
    def describe(row_key: str) -> str:
        return ", ".join(f"{n}={v}" for n, v in zip(names, row_key.split(" ")))
    return describe


# An outcome or review belongs to its event's log; it becomes sealable when both are stored, so
# its ingestion time is the later of the two (an outcome stored before its event is not missed).
_EVENT_OF = ("(SELECT event_id, any(deployment) AS deployment, toUInt32(max(ingested_at)) AS event_ingested "
             "FROM match_events GROUP BY event_id) AS event")
_JOINED_INGESTED = "greatest(toUInt32(ingested_at), event_ingested)"

SOURCES: tuple[EvidenceSource, ...] = (
    EvidenceSource(
        "match_event", "match_events", "event_id", "deployment", "toUInt32(ingested_at)",
        "event_id, toUInt64(occurred_at) * 1000000 + occurred_at_us, deployment, algorithm, toString(mode), score, "
        "threshold, toString(decision), subject_keys, subject_values, reference_keys, reference_values, context, "
        "cluster_id",
        "match_events FINAL", match_event_row_bytes, _names("event_id"),
    ),
    EvidenceSource(
        "verified_outcome", "verified_outcomes", "concat(event_id, ' ', toString(revision))", "deployment", _JOINED_INGESTED,
        "event_id, toUInt32(verified_at), toString(truth), reviewer, revision, inclusion_prob",
        f"verified_outcomes FINAL ANY INNER JOIN {_EVENT_OF} USING event_id",
        verified_outcome_row_bytes, _names("event_id", "revision"),
    ),
    EvidenceSource(
        "independent_review", "independent_reviews",
        "concat(event_id, ' ', reviewer, ' ', toString(toUInt32(verified_at)))", "deployment", _JOINED_INGESTED,
        "event_id, toUInt32(verified_at), toString(truth), reviewer",
        f"independent_reviews FINAL ANY INNER JOIN {_EVENT_OF} USING event_id",
        review_row_bytes, _names("event_id", "reviewer", "verified_at"),
    ),
    EvidenceSource(
        "dead_letter", "dead_letters",
        "concat(source_topic, ' ', toString(kafka_partition), ' ', toString(kafka_offset), ' ', toString(record_index))",
        "''", "toUInt32(rejected_at)",
        "source_topic, kafka_partition, kafka_offset, record_index, key_b64, value_b64, reason_code, field, reason",
        "dead_letters FINAL", _dead_letter_bytes, _names("source_topic", "kafka_partition", "kafka_offset", "record_index"),
    ),
    EvidenceSource(
        "audit_record", "audit_log", "concat(chain, ' ', toString(seq))",
        "visitParamExtractString(content, 'deployment')",
        "toUInt32(recorded_at)", "chain, seq, kind, toUInt32(recorded_at), content", "audit_log",
        _audit_record_bytes, _names("chain", "seq"),
    ),
)
BY_KIND = {source.kind: source for source in SOURCES}


def unlogged_rows(store: Store, source: EvidenceSource, since: int) -> list[list]:
    """Rows of ``source`` ingested at or after ``since`` (epoch seconds) that no leaf logs yet."""
    where = (f"{source.ingested_sql} >= %(since)s AND {source.key_sql} NOT IN "
             f"(SELECT row_key FROM evidence_leaves WHERE kind = %(kind)s)")
    return store.query_values(source.select(where), {"since": since, "kind": source.kind})


def rows_of_log(store: Store, source: EvidenceSource, log: str) -> list[list]:
    """Every row of ``source`` that belongs to ``log``."""
    return store.query_values(f"SELECT * FROM ({source.select()}) WHERE log = %(log)s", {"log": log})


def logs_with_rows(store: Store) -> set[str]:
    """The logs that some evidence row belongs to."""
    logs: set[str] = set()
    for source in SOURCES:
        logs.update(row[0] for row in store.query_values(f"SELECT DISTINCT log FROM ({source.select()})"))
    return logs


def leaves(store: Store, origin: str) -> list[list]:
    """The log's leaf rows as stored, every copy (no FINAL), by index: (index, kind, row_key, hash, sealed_at)."""
    return store.query_values(
        "SELECT leaf_index, kind, row_key, leaf_hash, toUInt32(sealed_at) FROM evidence_leaves "
        "WHERE origin = %(origin)s ORDER BY leaf_index", {"origin": origin})


def log_size(store: Store, origin: str) -> int:
    rows = store.query_values("SELECT count(DISTINCT leaf_index) FROM evidence_leaves WHERE origin = %(origin)s",
                              {"origin": origin})
    return int(rows[0][0]) if rows else 0


def stored_hash_reader(store: Store, origin: str) -> Callable[[list[int]], list[bytes]]:
    """The read callback of fairwatch.core.merkle over ``evidence_hashes``."""
    def read(indexes: list[int]) -> list[bytes]:
        if not indexes:
            return []
        wanted = ", ".join(str(int(i)) for i in indexes)
        rows = store.query_values(
            f"SELECT storage_index, any(hash) FROM evidence_hashes WHERE origin = %(origin)s "
            f"AND storage_index IN ({wanted}) GROUP BY storage_index", {"origin": origin})
        found = {int(i): bytes.fromhex(h) for i, h in rows}
        missing = [i for i in indexes if i not in found]
        if missing:
            raise LookupError(f"log {origin}: stored hash {missing[0]} is missing from evidence_hashes")
        return [found[i] for i in indexes]
    return read


def checkpoints(store: Store, origin: str | None = None) -> list[list]:
    """Stored checkpoints (origin, size, root hex, note, signed_at), every copy, oldest first."""
    where, params = ("WHERE origin = %(origin)s", {"origin": origin}) if origin is not None else ("", {})
    return store.query_values(
        f"SELECT origin, tree_size, root_hash, note, toUInt32(signed_at) FROM evidence_checkpoints {where} "
        "ORDER BY origin, tree_size", params)


def describe(kind: str, row_key: str) -> str:
    """A row named as an auditor would look for it: table and key columns."""
    source = BY_KIND.get(kind)
    if source is None:
        return f"{kind} {row_key}"
    return f"{source.table} ({source.describe_key(row_key)})"
