"""Store: ClickHouse at the edge (a server through clickhouse-driver, or embedded chDB).

Connections and migrations, the idempotent sink that writes what a batch leaves behind, the
queries that read stored counts back, and the hash-chained audit log.
"""

from fairwatch.store.auditlog import AuditError, append_records, verify
from fairwatch.store.clickhouse import (
    EmbeddedStore,
    ServerStore,
    Store,
    StoreError,
    open_store,
)
from fairwatch.store.group_counts import bucket_counts, read_counts
from fairwatch.store.migrations import load_migrations, migrate
from fairwatch.store.sink import ClickHouseSink, SinkBatch

__all__ = [
    "Store", "ServerStore", "EmbeddedStore", "StoreError", "open_store", "migrate", "load_migrations",
    "ClickHouseSink", "SinkBatch", "read_counts", "bucket_counts", "append_records", "verify", "AuditError",
]
