"""Store: ClickHouse at the edge (a server through clickhouse-driver, or embedded chDB).

Connections and migrations, the idempotent sink that writes what a batch leaves behind, the
queries that read stored counts back, and the hash-chained audit log.
"""
