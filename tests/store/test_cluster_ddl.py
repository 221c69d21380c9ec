"""The cluster form of the migrations (fairwatch.store.cluster_ddl), without a cluster: the plan that
folds 18.16's unsupported ALTERs into their CREATEs must give the tables the migrations give one
server (oracle: both applied to chDB, compared by the engine's own system tables), and every table
must be sharded by columns of its sorting key."""

from __future__ import annotations

import pytest
from fairwatch.store.clickhouse import open_store
from fairwatch.store.cluster_ddl import (
    LOCAL_SUFFIX,
    cluster_plan,
    cluster_statements,
    nodes_cluster,
    shard_key,
    shards_cluster,
    sorting_key,
)
from fairwatch.store.migrations import load_migrations, migrate


def _schema(store) -> dict[str, tuple]:
    tables = store.query("SELECT name, sorting_key FROM system.tables WHERE database = currentDatabase()"
                         " AND name != 'schema_migrations'")
    return {name: (key, store.query("SELECT name, type FROM system.columns WHERE database = currentDatabase()"
                                    " AND table = %(t)s ORDER BY position", {"t": name}))
            for name, key in tables}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    """The tables of the migrations and of the cluster plan, each applied to its own chDB."""
    out = tmp_path_factory.mktemp("plan")
    migrated = open_store(f"chdb://{out / 'migrated'}")
    migrate(migrated)
    single = _schema(migrated)
    migrated.close()
    planned = open_store(f"chdb://{out / 'planned'}")
    for statements in cluster_plan([m.statements for m in load_migrations()]):
        for statement in statements:
            planned.execute(statement)
    plan = _schema(planned)
    planned.close()
    return single, plan


def test_the_plan_gives_the_tables_the_migrations_give(schemas):
    single, plan = schemas
    assert plan == single
    assert "record_index" in [c for c, _ in single["dead_letters"][1]]  # the folded ALTER is in the CREATE


def test_every_table_is_sharded_by_columns_of_its_sorting_key(schemas):
    single, _ = schemas
    for table, (key, _) in single.items():
        columns = tuple(c.strip() for c in key.split(","))
        assert set(shard_key(table, columns)) <= set(columns), table
    with pytest.raises(ValueError, match="not in its sorting key"):
        shard_key("match_events", ("deployment", "algorithm"))


def test_every_statement_has_a_cluster_form_on_qualified_names():
    for statements in cluster_plan([m.statements for m in load_migrations()]):
        for statement in statements:
            out = cluster_statements(statement, "c", "db")
            if statement.startswith("CREATE"):
                local, distributed = out
                table = statement.split()[5]
                assert local.startswith(f"CREATE TABLE IF NOT EXISTS db.{table}{LOCAL_SUFFIX} ON CLUSTER c (")
                assert "ENGINE = Replicated" in local and f"'/clickhouse/tables/{{shard}}/db/{table}{LOCAL_SUFFIX}'" in local
                assert sorting_key(local) == sorting_key(statement)
                assert distributed.startswith(f"CREATE TABLE IF NOT EXISTS db.{table} ON CLUSTER {nodes_cluster('c')}")
                assert f"Distributed(c, db, {table}{LOCAL_SUFFIX}, cityHash64(" in distributed
            else:
                assert out[0].startswith("ALTER TABLE db.") and f" ON CLUSTER {shards_cluster('c')} " in out[0]


def test_an_alter_changes_the_distributed_table_only_where_columns_change():
    add = cluster_statements("ALTER TABLE t ADD COLUMN x Int32 DEFAULT toInt32(1), MODIFY TTL d + 1", "c", "db")
    assert add == ["ALTER TABLE db.t_local ON CLUSTER c_shards ADD COLUMN x Int32 DEFAULT toInt32(1), MODIFY TTL d + 1",
                   "ALTER TABLE db.t ON CLUSTER c_nodes ADD COLUMN x Int32 DEFAULT toInt32(1)"]
    assert cluster_statements("ALTER TABLE t MODIFY TTL d + 1", "c", "db") == [
        "ALTER TABLE db.t_local ON CLUSTER c_shards MODIFY TTL d + 1"]
    with pytest.raises(ValueError, match="no cluster form"):
        cluster_statements("DROP TABLE t", "c", "db")


class _Settings:
    """A server's answers to the cluster store's checks: every cluster there, these profile settings."""

    def __init__(self, settings: dict[str, str]):
        self.settings = settings

    def execute(self, sql, params=None):
        if "system.clusters" in sql:
            return [(1,)]
        return [(name, value) for name, value in self.settings.items() if name in params["names"]]


def test_a_cluster_store_refuses_a_profile_that_would_read_a_replica_behind_its_shard():
    from fairwatch.store.clickhouse import CLUSTER_SETTINGS, ServerStore, StoreError

    def check(**settings):
        store = ServerStore.__new__(ServerStore)
        store.url, store.cluster = "clickhouse://writer@h:9440/db?cluster=c", "c"
        store._client = _Settings({**CLUSTER_SETTINGS, **settings})
        store._check_cluster()

    check(max_replica_delay_for_distributed_queries="1")
    check(max_replica_delay_for_distributed_queries="5")
    for refused in ("300", "0"):  # ClickHouse's default; no check at all
        with pytest.raises(StoreError, match=rf"max_replica_delay_for_distributed_queries from 1 to 5 \(is '{refused}'\)"):
            check(max_replica_delay_for_distributed_queries=refused)
    with pytest.raises(StoreError, match=r"load_balancing=in_order \(is 'random'\)"):
        check(max_replica_delay_for_distributed_queries="1", load_balancing="random")
