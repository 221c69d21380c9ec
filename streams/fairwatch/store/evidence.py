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
from typing import Callable

from fairwatch.contracts.canonical import (
    AUDIT_RECORD_KIND,
    DEAD_LETTER_KIND,
    MATCH_EVENT_KIND,
    REVIEW_KIND,
    SIGNED_INPUT_KIND,
    VERIFIED_OUTCOME_KIND,
    audit_record_row_bytes,
    dead_letter_row_bytes,
    match_event_row_bytes,
    review_row_bytes,
    signed_input_row_bytes,
    verified_outcome_row_bytes,
)
from fairwatch.store.clickhouse import Store

UNATTRIBUTED = ""  # the log of rows that name no deployment (dead letters); deployment names are never empty
LEAF_COLUMNS = ("origin", "leaf_index", "kind", "row_key", "leaf_hash", "sealed_at")
HASH_COLUMNS = ("origin", "storage_index", "hash")
CHECKPOINT_COLUMNS = ("origin", "tree_size", "root_hash", "note", "signed_at")
def _ns(expr: str) -> str:
    """A netstring in SQL (fairwatch.contracts.canonical): ClickHouse's length() counts bytes."""
    return f"concat(toString(length({expr})), ':', {expr}, ',')"


def _nullable(expr: str) -> str:
    return f"if(isNull({expr}), '~', {_ns(f'assumeNotNull({expr})')})"


def _int(expr: str) -> str:
    return _ns(f"toString({expr})")


def _float(expr: str) -> str:
    # the IEEE-754 bits as a decimal; reinterpretAsString drops trailing zero bytes, UInt64 pads them back
    return _ns(f"toString(reinterpretAsUInt64(reinterpretAsString(toFloat64({expr}))))")


def _pairs(keys: str, values: str) -> str:
    pair = _ns(f"concat({_ns('k')}, {_ns('v')})")
    return _ns(f"arrayStringConcat(arraySort(arrayMap((k, v) -> {pair}, {keys}, {values})))")


def _search_list() -> str:
    """A search's candidate list and bounds, appended only to events that carry a list."""
    entry = f"concat({_ns('i')}, {_float('s')}, {_ns('g')})"
    entries = _ns(f"arrayStringConcat(arrayMap((i, s, g) -> {entry}, candidate_ids, candidate_scores, candidate_groups))")
    return (f"if(candidates_listed = 1, concat({entries}, if(list_length = 0, '~', {_int('list_length')}),"
            f" if(gallery_size < 0, '~', {_int('gallery_size')})), '')")


def _verdict_extras() -> str:
    """What a verdict appends (fairwatch.contracts.canonical.verified_outcome_row_bytes): its
    mate_rank when it has one; with verifiers or action_taken recorded, the mate_rank (0 for none),
    the verifiers as a netstring of their netstrings, and action_taken."""
    listed = _ns(f"arrayStringConcat(arrayMap(v -> {_ns('v')}, verifiers))")
    return (f"if(length(verifiers) > 0 OR action_taken >= 0, concat({_int('mate_rank')}, {listed},"
            f" {_int('action_taken')}), if(mate_rank > 0, {_int('mate_rank')}, ''))")


def _kind(name: str) -> str:
    return _ns(f"'{name}'")


def _canonical(*parts: str) -> str:
    return f"concat({', '.join(parts)})"


@dataclass(frozen=True)
class EvidenceSource:
    """One kind of evidence row: its table, the SQL of its key, log, ingestion time and canonical
    bytes, the Python function that builds the same bytes from ``columns`` (the tests' oracle),
    and how to name a row of it."""

    kind: str
    table: str
    key_sql: str
    log_sql: str
    ingested_sql: str
    canonical_sql: str
    columns: str
    source: str  # FROM ... (with FINAL and any join); {events} stands for the events it joins, if any
    canonical: Callable[..., bytes]
    describe_key: Callable[[str], str]

    def _select(self, what: str, where: str, events: str = "") -> str:
        return (f"SELECT {self.key_sql} AS row_key, {self.log_sql} AS log, {self.ingested_sql} AS ingested, "
                f"{what} FROM {self.source.format(events=events)} WHERE {where}")

    def select(self, where: str = "1", events: str = "") -> str:
        """row_key, log, ingested and the row's leaf hash (hex), computed by the server. ``events``:
        a condition on the match events a joined kind reads (only those of one log, say)."""
        return self._select(f"lower(hex(SHA256(concat('\\0', {self.canonical_sql})))) AS leaf_hash", where,
                            f"WHERE {events}" if events else "")

    def select_canonical(self, where: str = "1") -> str:
        """row_key, log, ingested and the row's canonical bytes."""
        return self._select(f"{self.canonical_sql} AS canonical", where)

    def select_columns(self, where: str = "1") -> str:
        """row_key, log, ingested and the stored columns that ``canonical`` takes."""
        return self._select(self.columns, where)


def _names(*names: str) -> Callable[[str], str]:
    def describe(row_key: str) -> str:
        return ", ".join(f"{n}={v}" for n, v in zip(names, row_key.split(" ")))
    return describe


# ALL, not ANY: on current servers ANY INNER JOIN keeps one left row per key, which would drop all
# but one revision of an outcome. The right side has one row per event_id.
# An outcome or review belongs to its event's log; it becomes sealable when both are stored, so
# its ingestion time is the later of the two (an outcome stored before its event is not missed).
_EVENT_OF = ("(SELECT event_id, any(deployment) AS event_deployment, toUInt32(max(ingested_at)) AS event_ingested "
             "FROM match_events {events} GROUP BY event_id) AS event")
_JOINED_INGESTED = "greatest(toUInt32(ingested_at), event_ingested)"

SOURCES: tuple[EvidenceSource, ...] = (
    EvidenceSource(
        "match_event", "match_events", "event_id", "deployment", "toUInt32(ingested_at)",
        _canonical(_kind(MATCH_EVENT_KIND), _ns("event_id"), _int("toUInt64(occurred_at) * 1000000 + occurred_at_us"),
                   _ns("deployment"), _ns("algorithm"), _ns("toString(mode)"), _float("score"), _float("threshold"),
                   _ns("toString(decision)"), _pairs("subject_keys", "subject_values"),
                   _pairs("reference_keys", "reference_values"), _ns("context"), _ns("cluster_id"), _search_list(),
                   f"if(use_id != '', {_ns('use_id')}, '')"),
        "event_id, toUInt64(occurred_at) * 1000000 + occurred_at_us, deployment, algorithm, toString(mode), score, "
        "threshold, toString(decision), subject_keys, subject_values, reference_keys, reference_values, context, "
        "cluster_id, candidates_listed, candidate_ids, candidate_scores, candidate_groups, list_length, gallery_size,"
        " use_id",
        "match_events FINAL", match_event_row_bytes, _names("event_id"),
    ),
    EvidenceSource(
        "verified_outcome", "verified_outcomes", "concat(event_id, ' ', toString(revision))", "event_deployment",
        _JOINED_INGESTED,
        _canonical(_kind(VERIFIED_OUTCOME_KIND), _ns("event_id"), _int("toUInt32(verified_at)"), _ns("toString(truth)"),
                   _ns("reviewer"), _int("revision"), _float("inclusion_prob"), _verdict_extras()),
        "event_id, toUInt32(verified_at), toString(truth), reviewer, revision, inclusion_prob, mate_rank, verifiers,"
        " action_taken",
        f"verified_outcomes FINAL ALL INNER JOIN {_EVENT_OF} USING event_id",
        verified_outcome_row_bytes, _names("event_id", "revision"),
    ),
    EvidenceSource(
        "independent_review", "independent_reviews",
        "concat(event_id, ' ', reviewer, ' ', toString(toUInt32(verified_at)))", "event_deployment", _JOINED_INGESTED,
        _canonical(_kind(REVIEW_KIND), _ns("event_id"), _int("toUInt32(verified_at)"), _ns("toString(truth)"),
                   _ns("reviewer")),
        "event_id, toUInt32(verified_at), toString(truth), reviewer",
        f"independent_reviews FINAL ALL INNER JOIN {_EVENT_OF} USING event_id",
        review_row_bytes, _names("event_id", "reviewer", "verified_at"),
    ),
    EvidenceSource(
        "dead_letter", "dead_letters",
        "concat(source_topic, ' ', toString(kafka_partition), ' ', toString(kafka_offset), ' ', toString(record_index))",
        "''", "toUInt32(rejected_at)",
        _canonical(_kind(DEAD_LETTER_KIND), _ns("source_topic"), _int("kafka_partition"), _int("kafka_offset"),
                   _int("record_index"), _nullable("key_b64"), _ns("value_b64"), _ns("reason_code"),
                   _nullable("field"), _ns("reason")),
        "source_topic, kafka_partition, kafka_offset, record_index, key_b64, value_b64, reason_code, field, reason",
        "dead_letters FINAL", dead_letter_row_bytes,
        _names("source_topic", "kafka_partition", "kafka_offset", "record_index"),
    ),
    EvidenceSource(
        "audit_record", "audit_log", "concat(chain, ' ', toString(seq))",
        "visitParamExtractString(content, 'deployment')", "toUInt32(recorded_at)",
        _canonical(_kind(AUDIT_RECORD_KIND), _ns("chain"), _int("seq"), _ns("kind"), _int("toUInt32(recorded_at)"),
                   _ns("content")),
        "chain, seq, kind, toUInt32(recorded_at), content", "audit_log", audit_record_row_bytes, _names("chain", "seq"),
    ),
    EvidenceSource(
        "signed_input", "signed_input",
        "concat(source_topic, ' ', toString(kafka_partition), ' ', toString(kafka_offset))", "deployment",
        "toUInt32(ingested_at)",
        _canonical(_kind(SIGNED_INPUT_KIND), _ns("deployment"), _ns("source_topic"), _int("kafka_partition"),
                   _int("kafka_offset"), _ns("toString(kind)"), _ns("key_id"), _int("toUInt32(signed_at)"),
                   _int("kafka_timestamp"), _ns("signature_b64"), _ns("value_b64"), _int("records")),
        "deployment, source_topic, kafka_partition, kafka_offset, toString(kind), key_id, toUInt32(signed_at), "
        "kafka_timestamp, signature_b64, value_b64, records",
        "signed_input FINAL", signed_input_row_bytes, _names("source_topic", "kafka_partition", "kafka_offset"),
    ),
)
BY_KIND = {source.kind: source for source in SOURCES}


def unlogged_rows(store: Store, source: EvidenceSource) -> list[list]:
    """Rows of ``source`` that no leaf logs yet. Not filtered by ingestion time: that is written by
    clients, and a row stamped long before it became visible must still be sealed."""
    where = f"{source.key_sql} NOT IN (SELECT row_key FROM evidence_leaves WHERE kind = %(kind)s)"
    return store.query_values(source.select(where), {"kind": source.kind})


def _rows_of_log_sql() -> str:
    """(kind, row_key, ingested, leaf_hash) of every evidence row of the log %(log)s, one per key:
    copies FINAL did not merge (other partitions) count once when equal, and as 'conflict' (so
    never equal to a logged hash) when not."""
    union = " UNION ALL ".join(  # a joined kind reads only this log's events: a third of them, say
        f"SELECT '{source.kind}' AS kind, row_key, ingested, leaf_hash FROM "
        f"({source.select(events='deployment = %(log)s')}) WHERE log = %(log)s" for source in SOURCES)
    return (f"SELECT cityHash64(kind, row_key) AS join_key, any(kind) AS row_kind, any(row_key) AS key_of_row, "
            f"max(ingested) AS row_ingested, if(uniqExact(leaf_hash) = 1, any(leaf_hash), 'conflict') AS row_hash "
            f"FROM ({union}) GROUP BY join_key")


# Each leaf of %(origin)s (one copy per index) beside the hash its row has now ('' when the row is
# gone), and each row of the log that no leaf holds (leaf_index 0, logged ''): one pass of a FULL JOIN.
_LEAVES_AGAINST_ROWS = (
    "SELECT leaf_index, if(logged = '', stored_kind, kind) AS kind, if(logged = '', stored_key, row_key) AS row_key, "
    "logged, actual, ingested, sealed FROM "
    "(SELECT cityHash64(kind, row_key) AS join_key, leaf_index, kind, row_key, leaf_hash AS logged, "
    " toUInt32(sealed_at) AS sealed FROM evidence_leaves WHERE origin = %(origin)s "
    " ORDER BY leaf_index LIMIT 1 BY leaf_index) AS logged_leaf "
    "ALL FULL OUTER JOIN (SELECT join_key, row_kind AS stored_kind, key_of_row AS stored_key, row_hash AS actual, "
    "row_ingested AS ingested FROM ({rows})) AS stored_row USING join_key"
)
SAME, EDITED, DELETED, UNLOGGED = 0, 1, 2, 3


def leaves_against_rows(store: Store, origin: str, log: str) -> tuple[list[bytes], bytes, Callable[[int], int]]:
    """For every leaf of the log by index: the leaf hash recomputed from its row (the logged one
    when the row is gone or differs) and a status byte (SAME, EDITED, DELETED); then one UNLOGGED
    status per row that no leaf holds; and a function from a position to its leaf index. The
    comparison runs in the server; 41 bytes a row come back."""
    joined = _LEAVES_AGAINST_ROWS.format(rows=_rows_of_log_sql())
    sql = (f"SELECT if(actual = '' OR actual = 'conflict', logged, actual) AS h, if(logged = '', {UNLOGGED}, "
           f"if(actual = '', {DELETED}, if(actual = logged, {SAME}, {EDITED}))) AS status, leaf_index "
           f"FROM ({joined}) ORDER BY logged = '', leaf_index")
    params = {"origin": origin, "log": log}
    binary = getattr(store, "query_row_binary", None)
    if binary is None:  # a server: hex over the native protocol
        rows = store.query_values(sql, params)
        return ([bytes.fromhex(h) for h, _, _ in rows], bytes(int(status) for _, status, _ in rows),
                lambda position: int(rows[position][2]))
    data = binary(f"SELECT toFixedString(unhex(h), 32), toUInt8(status), toUInt64(leaf_index) FROM ({sql})", params)
    return ([data[i:i + 32] for i in range(0, len(data), 41)], data[32::41],
            lambda position: int.from_bytes(data[position * 41 + 33:position * 41 + 41], "little"))


def leaf_rows(store: Store, origin: str, indexes: list[int], log: str) -> list[list]:
    """(leaf_index, kind, row_key, logged, actual, ingested, sealed) of the given leaves: the details of a few."""
    joined = _LEAVES_AGAINST_ROWS.format(rows=_rows_of_log_sql())
    wanted = ", ".join(str(int(i)) for i in indexes) or "NULL"
    return store.query_values(f"SELECT * FROM ({joined}) WHERE logged != '' AND leaf_index IN ({wanted}) "
                              "ORDER BY leaf_index", {"origin": origin, "log": log})


def unlogged_rows_of_log(store: Store, origin: str, log: str, limit: int = 100) -> list[list]:
    """(kind, row_key, ingested) of the log's rows that no leaf of ``origin`` holds, oldest first."""
    joined = _LEAVES_AGAINST_ROWS.format(rows=_rows_of_log_sql())
    return store.query_values(f"SELECT kind, row_key, ingested FROM ({joined}) WHERE logged = '' "
                              f"ORDER BY ingested, kind, row_key LIMIT {int(limit)}", {"origin": origin, "log": log})


def leaf_anomalies(store: Store, origin: str) -> dict[str, list]:
    """What is wrong in the leaf table itself: its size and last seal, indexes holding two different
    rows, rows logged at two indexes, and the first missing index. One pass when nothing is."""
    params = {"origin": origin}
    # copies: rows of the table (a retried seal stores identical copies; only different ones are a fork);
    # a 64-bit hash stands for (kind, row_key): a collision could only hide a duplicate from this
    # count, and a duplicate also changes the roots, which are checked whatever this says
    size, indexes, copies, rows, sealed = store.query_values(
        "SELECT max(leaf_index) + 1, uniqExact(leaf_index), count(), uniqExact(cityHash64(kind, row_key)), "
        "toUInt32(max(sealed_at)) FROM evidence_leaves WHERE origin = %(origin)s HAVING count() > 0",
        params)[0] if _has_leaves(store, origin) else (0, 0, 0, 0, 0)
    forks, twice, missing = [], [], []
    if copies != indexes:
        forks = store.query_values(
            "SELECT leaf_index FROM evidence_leaves WHERE origin = %(origin)s GROUP BY leaf_index "
            "HAVING uniqExact(kind, row_key, leaf_hash) > 1 ORDER BY leaf_index LIMIT 100", params)
    if rows != indexes:
        twice = store.query_values(
            "SELECT kind, row_key, groupArray(leaf_index) FROM (SELECT DISTINCT kind, row_key, leaf_index "
            "FROM evidence_leaves WHERE origin = %(origin)s) GROUP BY kind, row_key HAVING count() > 1 LIMIT 100",
            params)
    if int(indexes) != int(size):  # a tampered log: find its first hole
        present = {int(r[0]) for r in store.query_values(
            "SELECT DISTINCT leaf_index FROM evidence_leaves WHERE origin = %(origin)s", params)}
        missing = [next(i for i in range(int(size)) if i not in present)]
    return {"size": int(size), "sealed": int(sealed), "forks": [int(r[0]) for r in forks],
            "twice": [(k, key, sorted(int(i) for i in indexes)) for k, key, indexes in twice],
            "missing": missing}


def _has_leaves(store: Store, origin: str) -> bool:
    return bool(store.query_values("SELECT count() FROM evidence_leaves WHERE origin = %(origin)s",
                                   {"origin": origin})[0][0])


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
