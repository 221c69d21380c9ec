"""Cluster DDL from the single-node migrations: one source, two shapes.

The numbered files of ``schemas/clickhouse`` are written for one server. On a cluster (a store URL
with ``cluster=NAME``, :mod:`fairwatch.store.clickhouse`) each statement becomes its cluster form,
run ``ON CLUSTER`` so every node gets it:

* ``CREATE TABLE t (...) ENGINE = XMergeTree(args) ...`` becomes a replicated local table
  ``t_local`` (``ReplicatedXMergeTree('/clickhouse/tables/{shard}/<database>/t_local', '{replica}',
  args)``, the ``{shard}`` and ``{replica}`` macros of each server's config) and a ``Distributed``
  table ``t`` over it on every node (the cluster ``<name>_nodes``: each node a shard of its own,
  :func:`nodes_cluster`), so every query and insert keeps using ``t``;
* ``ALTER TABLE t ...`` runs on ``t_local`` of one replica per shard (the cluster ``<name>_shards``,
  :func:`shards_cluster`; replication carries it to the others); clauses that change columns (``ADD COLUMN``,
  ``MODIFY COLUMN``) run on ``t`` too, which must show the same columns;
* ClickHouse 18.16 cannot run ``MODIFY ORDER BY`` ``ON CLUSTER``: :func:`cluster_plan` folds such
  an ALTER (with the column it adds) into its table's CREATE, which gives a cluster migrated from
  empty the same table as the single node's migrations give one server (a cluster is always built
  from empty: there were no clusters before these migrations).

A table is sharded by a hash of columns of its sorting key (:data:`SHARD_KEYS`, else the whole
key): a ``ReplacingMergeTree`` collapses rows of one key only within one shard, so every version of
a row must land on the same shard, which a hash of key columns guarantees. Tables joined on
``event_id`` are sharded by it alike.
"""

from __future__ import annotations

import re

__all__ = ["LOCAL_SUFFIX", "NODES_SUFFIX", "SHARDS_SUFFIX", "SHARD_KEYS", "nodes_cluster", "shards_cluster", "cluster_plan", "cluster_statements", "shard_key", "sorting_key"]

LOCAL_SUFFIX = "_local"
NODES_SUFFIX = "_nodes"
SHARDS_SUFFIX = "_shards"
# columns of the sorting key a table is sharded by (others: the whole sorting key)
SHARD_KEYS = {
    "match_events": ("event_id",), "verified_outcomes": ("event_id",), "labeled_outcomes": ("event_id",),
    "independent_reviews": ("event_id",),
    "evidence_leaves": ("origin",), "evidence_hashes": ("origin",), "evidence_checkpoints": ("origin",),
    "audit_log": ("chain",),
}

_CREATE = re.compile(r"^\s*CREATE TABLE IF NOT EXISTS\s+(?P<table>\w+)\s*\((?P<columns>.*)\)\s*"
                     r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)\s*(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$", re.S)
_ALTER = re.compile(r"^\s*ALTER TABLE\s+(?P<table>\w+)\s+(?P<clauses>.*)$", re.S)
_ORDER_BY = re.compile(r"ORDER BY\s+(\((?P<tuple>[^)]*)\)|(?P<one>\w+))")
_COLUMN_CLAUSE = re.compile(r"^\s*(ADD|MODIFY|DROP)\s+COLUMN\b", re.I)


def sorting_key(statement: str) -> tuple[str, ...]:
    """The columns of a CREATE's (or an ALTER's ``MODIFY ORDER BY``) sorting key."""
    found = _ORDER_BY.search(statement)
    if not found:
        raise ValueError(f"no ORDER BY in {statement[:80]!r}")
    text = found.group("tuple") if found.group("tuple") is not None else found.group("one")
    return tuple(c.strip() for c in text.split(",") if c.strip())


def shard_key(table: str, key: tuple[str, ...]) -> tuple[str, ...]:
    """The columns ``table`` is sharded by: a subset of its sorting key ``key``."""
    columns = SHARD_KEYS.get(table, key)
    missing = [c for c in columns if c not in key]
    if missing:
        raise ValueError(f"{table}: shard key {missing} not in its sorting key {key}: rows of one key could"
                         " land on two shards and never collapse")
    return columns


def _split_clauses(clauses: str) -> list[str]:
    """An ALTER's clauses, split at the commas outside parentheses."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(clauses):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(clauses[start:i].strip())
            start = i + 1
    out.append(clauses[start:].strip())
    return [c for c in out if c]


def nodes_cluster(cluster: str) -> str:
    """The cluster of every node of ``cluster`` as a shard of its own: 18.16 runs an ALTER ``ON
    CLUSTER`` with replicated shards only on replicated tables, and a Distributed table is not."""
    return f"{cluster}{NODES_SUFFIX}"


def shards_cluster(cluster: str) -> str:
    """The cluster of one replica of each shard of ``cluster``: an ALTER of a replicated table runs on
    it, and the table's replication carries it to the other replicas. (18.16's ``ON CLUSTER`` over
    replicated shards races: two replicas of a shard may both run it, the second fails, and the
    query waits out distributed_ddl_task_timeout.)"""
    return f"{cluster}{SHARDS_SUFFIX}"


def cluster_plan(migrations: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Each migration's single-node statements, with every ALTER that modifies a sorting key folded
    into its table's CREATE (its added columns appended to the columns, its key made the table's);
    what else the ALTER does stays where it was."""
    plan = [list(statements) for statements in migrations]
    created: dict[str, tuple[int, int]] = {}
    for m, statements in enumerate(plan):
        for k, statement in enumerate(statements):
            if (found := _CREATE.match(statement)) is not None:
                created[found["table"]] = (m, k)
                continue
            altered = _ALTER.match(statement)
            if altered is None or "MODIFY ORDER BY" not in statement.upper():
                continue
            table = altered["table"]
            if table not in created:
                raise ValueError(f"{table}: a sorting key modified before its CREATE")
            cm, ck = created[table]
            clauses = _split_clauses(altered["clauses"])
            folded = [c for c in clauses if re.match(r"(ADD COLUMN|MODIFY ORDER BY)\b", c, re.I)]
            create = _CREATE.match(plan[cm][ck])
            added = [c[len("ADD COLUMN"):].strip() for c in folded if c.upper().startswith("ADD COLUMN")]
            key = next(c for c in folded if c.upper().startswith("MODIFY ORDER BY"))[len("MODIFY ORDER BY"):].strip()
            columns = create["columns"].rstrip() + "".join(f",\n    {a}" for a in added) + "\n"
            rest = _ORDER_BY.sub(lambda _: f"ORDER BY {key}", create["rest"], count=1)
            plan[cm][ck] = (f"CREATE TABLE IF NOT EXISTS {table}\n({columns})\nENGINE = {create['engine']}"
                            f"({create['args'] or ''}){rest}")
            kept = [c for c in clauses if c not in folded]
            statements[k] = f"ALTER TABLE {table} {', '.join(kept)}" if kept else ""
    return [tuple(s for s in statements if s) for statements in plan]


def cluster_statements(statement: str, cluster: str, database: str) -> list[str]:
    """The statements that give a cluster ``cluster`` what ``statement`` gives one server (module
    docstring); any other statement is refused, so no DDL reaches one node only."""
    on = f"ON CLUSTER {cluster}"
    every = f"ON CLUSTER {nodes_cluster(cluster)}"  # a Distributed table is on every node, not replicated
    created = _CREATE.match(statement)
    if created:
        table, engine, args, rest = created["table"], created["engine"], created["args"], created["rest"]
        local = table + LOCAL_SUFFIX
        path = f"'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'"
        replicated = f"Replicated{engine}({path}{', ' + args.strip() if args and args.strip() else ''})"
        columns = shard_key(table, sorting_key(rest))
        # names qualified: each node runs the statement in its default database otherwise
        return [
            f"CREATE TABLE IF NOT EXISTS {database}.{local} {on} ({created['columns']}) ENGINE = {replicated}{rest}",
            f"CREATE TABLE IF NOT EXISTS {database}.{table} {every} AS {database}.{local}"
            f" ENGINE = Distributed({cluster}, {database}, {local}, cityHash64({', '.join(columns)}))",
        ]
    altered = _ALTER.match(statement)
    if altered:
        table, clauses = altered["table"], _split_clauses(altered["clauses"])
        out = [f"ALTER TABLE {database}.{table}{LOCAL_SUFFIX} ON CLUSTER {shards_cluster(cluster)} {', '.join(clauses)}"]
        columns = [c for c in clauses if _COLUMN_CLAUSE.match(c)]
        if columns:
            out.append(f"ALTER TABLE {database}.{table} {every} {', '.join(columns)}")
        return out
    raise ValueError(f"no cluster form for {statement[:80]!r}: only CREATE TABLE IF NOT EXISTS ... MergeTree and"
                     " ALTER TABLE are migrated on a cluster")
