"""Migrations: the numbered SQL files of schemas/clickhouse applied in order, once, checksummed, and only where the server's version accepts them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fairwatch.store.cluster_ddl import cluster_plan, cluster_statements
from fairwatch.store.clickhouse import (
    SCHEMAS_DIR,
    Store,
    StoreError,
    holds_schema_migrations,
    parse_version,
    redacted_url,
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    min_server_version: tuple[int, ...]
    checksum: str


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read ``NNN_name.sql`` files; a ``-- min_server_version: X.Y`` line gates a file."""
    directory = directory or SCHEMAS_DIR / "clickhouse"
    migrations = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        text = path.read_text()
        gate = re.search(r"^--\s*min_server_version:\s*([\d.]+)", text, re.M)
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        statements = tuple(s.strip() for s in re.split(r";\s*$", body, flags=re.M) if s.strip())
        migrations.append(
            Migration(
                version=int(path.name[:3]),
                name=path.stem,
                statements=statements,
                min_server_version=parse_version(gate.group(1)) if gate else (0,),
                checksum=hashlib.sha256(text.encode()).hexdigest(),
            )
        )
    if not migrations:
        raise StoreError(f"no migrations found in {directory}")
    return migrations


@dataclass(frozen=True, slots=True)
class MigrationResult:
    version: int
    name: str
    status: str  # applied | already_applied | skipped_old_server


DDL_PROHIBITED = "DDL queries are prohibited"  # ClickHouse's words for a user with allow_ddl=0 (code 392)


def _ddl(store: Store, statement: str, name: str) -> None:
    try:
        store.execute(statement)
    except Exception as exc:
        if DDL_PROHIBITED in str(exc):
            raise StoreError(f"{redacted_url(store.url)} is not migrated ({name} is pending) and this user may not "
                             "run DDL: run `fairwatch migrate` as the migrator user first", statement) from exc
        raise StoreError(f"migration {name} failed on {redacted_url(store.url)}: {exc}", statement) from exc


def _apply(store: Store, statement: str, name: str) -> None:
    """One migration statement, in its cluster form on a cluster store (:mod:`fairwatch.store.cluster_ddl`)."""
    cluster = getattr(store, "cluster", None)
    if not cluster:
        _ddl(store, statement, name)
        return
    for clustered in cluster_statements(statement, cluster, store.database):
        _ddl(store, clustered, name)


def migrate(store: Store, directory: Path | None = None) -> list[MigrationResult]:
    """Apply what is missing, in order; idempotent, and safe to run at every start.

    A migration gated on a newer server than this one is skipped now and applied after an
    upgrade. A file changed after it was applied is an error: history must not be rewritten.
    An up-to-date store runs no DDL, so a user without DDL rights (the writer) may call it; when
    something is pending, that user gets an error saying who must migrate.
    """
    if not holds_schema_migrations(store):
        _apply(store, "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String,"
                      " applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree() ORDER BY version", "schema_migrations")
    applied = {v: c for v, c in store.query("SELECT version, checksum FROM schema_migrations FINAL")}
    server = store.server_version()
    results = []
    migrations = load_migrations(directory)
    statements = {m.version: m.statements for m in migrations}
    if getattr(store, "cluster", None):  # sorting keys changed in their CREATE (fairwatch.store.cluster_ddl)
        statements = dict(zip(statements, cluster_plan([m.statements for m in migrations])))
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise StoreError(
                    f"migration {migration.name} was changed after it was applied to {redacted_url(store.url)}; "
                    "add a new migration file instead"
                )
            results.append(MigrationResult(migration.version, migration.name, "already_applied"))
            continue
        if server < migration.min_server_version:
            results.append(MigrationResult(migration.version, migration.name, "skipped_old_server"))
            continue
        for statement in statements[migration.version]:
            _apply(store, statement, migration.name)
        store.insert(
            "schema_migrations",
            ["version", "name", "checksum", "applied_at"],
            [(migration.version, migration.name, migration.checksum, datetime.now(timezone.utc))],
        )
        results.append(MigrationResult(migration.version, migration.name, "applied"))
    return results
