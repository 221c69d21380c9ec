"""How long each table keeps its rows: a retention policy with a floor, as ClickHouse TTLs.

The EU AI Act asks deployers of high-risk systems to keep the logs the system generates for at
least six months (Regulation (EU) 2024/1689, Art. 26(6)); the records a report rests on must also
outlive the report. Each table fairwatch writes has a time column and a class (:data:`TABLES`):

* ``log``: what the sites sent and when (match events, verdicts, independent reviews, signed
  input), the alerts and the audit log: floor :data:`LOG_FLOOR_DAYS` (183, six months);
* ``derived``: what is recomputed from the logs (labelled outcomes, counts, snapshots, detector
  state, health): the same floor, so that a report can be recomputed for as long as its logs exist;
* ``evidence``: the evidence log (leaves, hashes, checkpoints): never given a TTL here; it proves
  the rows above and is small;
* ``dead_letters``: refused messages keep bytes nobody meant to send: 90 days (migration 002).

:func:`apply_retention` sets a table's TTL (``ALTER TABLE ... MODIFY TTL``), refusing a period below
its floor; ClickHouse has TTLs from 19.6, so an older server (the local stack's 18.16) refuses with
that reason, and there rows are kept until deleted by hand. :func:`retention_status` reads what each
table keeps: its TTL (from the server's own DDL), its rows and the oldest, against its floor.
Without a TTL nothing is deleted, which keeps every floor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from fairwatch.store.clickhouse import Store, StoreError, parse_version

__all__ = ["TABLES", "LOG_FLOOR_DAYS", "TTL_SINCE", "RetentionError", "TableRetention", "apply_retention",
           "retention_status"]

LOG_FLOOR_DAYS = 183  # six months
TTL_SINCE = (19, 6)
# table -> (its time column as a DateTime, class)
TABLES: dict[str, tuple[str, str]] = {
    "match_events": ("occurred_at", "log"),
    "verified_outcomes": ("verified_at", "log"),
    "independent_reviews": ("verified_at", "log"),
    "signed_input": ("ingested_at", "log"),
    "acquisitions": ("occurred_at", "log"),
    "uses": ("started_at", "log"),
    "alerts": ("opened_at", "log"),
    "audit_log": ("recorded_at", "log"),
    "labeled_outcomes": ("bucket", "derived"),
    "group_counts": ("bucket", "derived"),
    "estimate_snapshots": ("snapshot_at", "derived"),
    "differential_snapshots": ("snapshot_at", "derived"),
    "dead_letters": ("rejected_at", "dead_letters"),
}
FLOORS = {"log": LOG_FLOOR_DAYS, "derived": LOG_FLOOR_DAYS, "dead_letters": 0}
_TTL_DAYS = re.compile(r"\bTTL\s+.*?(?:toIntervalDay\((\d+)\)|INTERVAL\s+(\d+)\s+DAY)", re.I | re.S)


class RetentionError(StoreError):
    """A retention the policy or the server refuses; the message says which and why."""


@dataclass(frozen=True)
class TableRetention:
    table: str
    kind: str
    floor_days: int
    ttl_days: int | None  # None: no TTL, rows kept until deleted by hand
    rows: int
    oldest: datetime | None

    @property
    def status(self) -> str:
        """``kept`` (no TTL: nothing deleted), ``ok`` (a TTL at or above the floor) or ``below_floor``."""
        if self.ttl_days is None:
            return "kept"
        return "ok" if self.ttl_days >= self.floor_days else "below_floor"

    def to_dict(self) -> dict:
        return {"table": self.table, "class": self.kind, "floor_days": self.floor_days, "ttl_days": self.ttl_days,
                "rows": self.rows, "oldest": None if self.oldest is None else self.oldest.isoformat(),
                "status": self.status}


def _columns(store: Store, table: str) -> set[str]:
    return {row[0] for row in store.query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = %(t)s", {"t": table})}


def _ddl(store: Store, table: str) -> str | None:
    rows = store.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase()"
                       " AND name = %(t)s", {"t": table})
    return rows[0][0] if rows else None


def ttl_supported(store: Store) -> bool:
    return parse_version(store.query("SELECT version()")[0][0]) >= TTL_SINCE


def apply_retention(store: Store, days: int, tables: list[str] | None = None) -> list[str]:
    """Give ``tables`` (default: every table of :data:`TABLES` but the dead letters, which keep
    their 90 days) a TTL of ``days`` on their time column; return what was done."""
    chosen = tables or [t for t, (_, kind) in TABLES.items() if kind != "dead_letters"]
    unknown = sorted(set(chosen) - set(TABLES))
    if unknown:
        raise RetentionError(f"no retention for {', '.join(unknown)}: the tables with one are {', '.join(TABLES)}")
    for table in chosen:
        floor = FLOORS[TABLES[table][1]]
        if days < floor:
            raise RetentionError(f"{table} keeps {TABLES[table][1]} rows: at least {floor} days, got {days}")
    if not ttl_supported(store):
        version = store.query("SELECT version()")[0][0]
        raise RetentionError(f"this ClickHouse ({version}) has no TTL (from {TTL_SINCE[0]}.{TTL_SINCE[1]}): its rows"
                             " are kept until deleted by hand, which keeps every floor")
    done = []
    for table in chosen:
        column = TABLES[table][0]
        if column not in _columns(store, table):
            raise RetentionError(f"{table} has no column {column}: migrate the store first")
        store.execute(f"ALTER TABLE {table} MODIFY TTL toDateTime({column}) + toIntervalDay({int(days)})")
        done.append(f"{table}: rows older than {days} days by {column} are deleted")
    return done


def retention_status(store: Store) -> list[TableRetention]:
    """What each table keeps, in :data:`TABLES` order (tables the store lacks are left out)."""
    out = []
    for table, (column, kind) in TABLES.items():
        ddl = _ddl(store, table)
        if ddl is None:
            continue
        found = _TTL_DAYS.search(ddl)
        ttl = int(found.group(1) or found.group(2)) if found else None
        rows, oldest = store.query(f"SELECT count(), min(toDateTime({column})) FROM {table}")[0]
        out.append(TableRetention(table, kind, FLOORS[kind], ttl, int(rows), oldest if rows else None))
    return out
