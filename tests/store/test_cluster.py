"""The cluster (issue 30 items 1 and 3): ClickHouse 18.16 as two shards x two replicas coordinated
by ZooKeeper (`scripts/stack up --cluster`), migrated from the same files as one server.

Oracles: each node's own tables, read on that node (not through the cluster): the statements that
made them before and after a second migration, and the rows each replica holds; and a single
server given the same lines, whose report JSON the cluster's must equal."""

from __future__ import annotations

import json
import math
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import pytest
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.clickhouse import open_store
from fairwatch.store.cluster_ddl import LOCAL_SUFFIX
from fairwatch.store.migrations import load_migrations, migrate
from fairwatch.testing.cli_runs import invoke
from fairwatch.testing.stack import ensure_cluster, server_url

from tests.audit.test_monitoring_report import SCENARIO, WINDOW

pytestmark = [pytest.mark.services, pytest.mark.cluster, pytest.mark.xdist_group("cluster")]  # one fault test stops cluster nodes


@pytest.fixture(scope="module")
def cluster():
    return ensure_cluster()


def _node_urls(cluster: dict[str, str], database: str) -> list[str]:
    """Each node's own URL (the migrator's, without cluster=): its tables as they are on that node."""
    base = urlparse(cluster["FAIRWATCH_CLUSTER_CLICKHOUSE_MIGRATOR"])
    query = urlencode([(k, v) for k, v in parse_qsl(base.query) if k != "cluster"])
    return [urlunparse(base._replace(netloc=f"{base.username}@{node}", path=f"/{database}", query=query))
            for node in cluster["FAIRWATCH_CLUSTER_CLICKHOUSE_NODES"].split(",")]


def _tables(url: str) -> dict[str, tuple[str, str]]:
    store = open_store(url, create=False)
    try:
        return {name: (engine, store.query(f"SHOW CREATE TABLE {store.database}.{name}")[0][0])
                for name, engine in store.query("SELECT name, engine FROM system.tables WHERE database = %(d)s",
                                                {"d": store.database})}
    finally:
        store.close()


@pytest.fixture(scope="module")
def migrated(cluster):
    database = f"fw_cluster_{uuid.uuid4().hex[:8]}"
    store = open_store(server_url(cluster["FAIRWATCH_CLUSTER_CLICKHOUSE_MIGRATOR"], database))
    first = migrate(store)
    yield store, first
    store.execute(f"DROP DATABASE IF EXISTS {database} ON CLUSTER {store.cluster}")
    store.close()


def test_migrations_applied_twice_change_nothing_on_any_node(cluster, migrated):
    store, first = migrated
    before = [_tables(url) for url in _node_urls(cluster, store.database)]
    second = migrate(store)
    assert [r.status for r in first if r.status != "skipped_old_server"] == ["applied"] * len(
        [r for r in first if r.status != "skipped_old_server"])
    assert {(r.version, r.status) for r in second} == {
        (r.version, "already_applied" if r.status == "applied" else r.status) for r in first}
    after = [_tables(url) for url in _node_urls(cluster, store.database)]
    assert after == before  # every table of every node, statement for statement
    # every node has every table: a replicated local one and the Distributed one over it
    created = {line.split()[5] for m in load_migrations() for s in m.statements
               for line in [s] if s.startswith("CREATE TABLE IF NOT EXISTS")} | {"schema_migrations"}
    for tables in before:
        assert {name for name in tables if not name.endswith(LOCAL_SUFFIX)} == created
        for name in created:
            assert tables[name][0] == "Distributed"
            assert tables[name + LOCAL_SUFFIX][0].startswith("Replicated")


@pytest.fixture(scope="module")
def replayed(cluster, stack, migrated, tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster")
    paths = write_jsonl(simulate(parse_scenario({**SCENARIO, "events": 4000}), seed=5), out / "sim")
    store, _ = migrated
    single = server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_single_{uuid.uuid4().hex[:8]}")
    reports = {}
    for name, url in (("cluster", store.url), ("single", single)):
        assert invoke("migrate", "--store", url, "--json").exit_code == 0
        done = invoke("replay", paths["events"], paths["outcomes"], "--acquisitions", paths["acquisitions"],
                      "--uses", paths["uses"], "--store", url, "--json")
        assert done.exit_code == 0, done.output
        for kind in ("audit", "monitoring"):
            report = invoke("report", "--kind", kind, *WINDOW, "--store", url, "--format", "json")
            assert report.exit_code == 0, report.output
            reports[name, kind] = json.loads(report.stdout)
    yield reports, paths, store, {"cluster": store.url, "single": single}
    dropped = open_store(single, create=False)
    dropped.execute(f"DROP DATABASE IF EXISTS {dropped.database}")
    dropped.close()


def _differences(a, b, path="") -> list[tuple[str, float]]:
    """Where two reports differ: [(path, relative difference)] for numbers, inf for anything else."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [(f"{path} keys", math.inf)]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [(f"{path} length", math.inf)]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and a != b:
        return [(path, abs(a - b) / max(abs(a), abs(b)))]
    return [] if a == b and type(a) is type(b) else [(path, math.inf)]


def _comparable(document: dict, url: str) -> dict:
    """The report without when it was made, and its store's URL (in the commands that reproduce it) as STORE."""
    return json.loads(json.dumps({k: v for k, v in document.items() if k != "generated_at"}).replace(url, "STORE"))


def test_single_node_and_cluster_give_identical_reports(replayed):
    """Identical, bit for bit (the sums of floating-point weights are exact, fairwatch.store.sums, so
    two shards adding in another order than one server give the same numbers), down to the digests
    of the exported numbers."""
    reports, urls = replayed[0], replayed[3]
    for kind in ("audit", "monitoring"):
        cluster_doc = _comparable(reports["cluster", kind], urls["cluster"])
        single_doc = _comparable(reports["single", kind], urls["single"])
        assert _differences(cluster_doc, single_doc) == [], kind
        assert cluster_doc == single_doc, kind
    reproduce = reports["cluster", "audit"]["reproducibility"]
    assert reports["cluster", "audit"]["groups"] and reproduce["exported_sha256"] == \
        reports["single", "audit"]["reproducibility"]["exported_sha256"]


def test_rows_are_sharded_once_and_replicated(cluster, replayed):
    _, paths, store, _ = replayed
    events = paths["events"].read_bytes().count(b"\n")
    held = []
    for url in _node_urls(cluster, store.database):
        node = open_store(url, create=False)
        try:
            node.execute(f"SYSTEM SYNC REPLICA {node.database}.match_events{LOCAL_SUFFIX}")
            held.append(node.query(f"SELECT count() FROM match_events{LOCAL_SUFFIX} FINAL")[0][0])
        finally:
            node.close()
    shard1, shard2 = held[:2], held[2:]
    assert shard1[0] == shard1[1] and shard2[0] == shard2[1]  # the replicas of a shard agree
    assert shard1[0] > 0 and shard2[0] > 0 and shard1[0] + shard2[0] == events  # each row on one shard


def test_an_alert_and_its_resolution_collapse_to_one_incident_on_the_cluster(replayed):
    """The alerts table through its Distributed table: a newer version replaces the firing row
    (on the shard both land on), reads by state and window as on one server. (In the replayed
    database, whose reports were made before: ``replayed`` is built first.)"""
    from tests.detect.test_delivery import check_alerts_round_trip

    store = replayed[2]
    check_alerts_round_trip(store)


def test_a_first_replica_behind_its_shard_is_passed_over_by_reads(cluster, replayed):
    """A shard's first replica back from a stop, before it has fetched what its shard took meanwhile
    (the second replica's inserts): held there by stopping its fetches, it is more than the profile's
    max_replica_delay_for_distributed_queries (1 s) behind, so reads through the Distributed table go
    to the second replica (with the default, 300 s, they would read the first and miss the rows)."""
    from fairwatch.detect.incidents import ALERT_COLUMNS

    from tests.detect.test_delivery import make_alert

    store = replayed[2]
    # shard 1's replicas, and a node of shard 2
    first, second, other = (open_store(url, create=False) for url in _node_urls(cluster, store.database)[:3])
    local = f"{first.database}.alerts{LOCAL_SUFFIX}"
    try:
        assert first.query("SELECT value FROM system.settings WHERE name = 'max_replica_delay_for_distributed_queries'") \
            == [("1",)]
        total, held_by_first = store.query("SELECT count() FROM alerts")[0][0], first.query(
            f"SELECT count() FROM {local}")[0][0]
        first.execute(f"SYSTEM STOP FETCHES {local}")
        rows = [make_alert(f"lagging-{i}").to_row(1) for i in range(5)]
        second.insert(f"alerts{LOCAL_SUFFIX}", ALERT_COLUMNS, rows)  # what the shard took while the first was away
        time.sleep(2.5)
        assert first.query(f"SELECT count() FROM {local}")[0][0] == held_by_first  # still behind
        for reader in (other, first):  # through the Distributed table, from another node and from the first itself
            assert reader.query("SELECT count() FROM alerts")[0][0] == total + len(rows)
    finally:
        first.execute(f"SYSTEM START FETCHES {local}")
        first.execute(f"SYSTEM SYNC REPLICA {local}")
        for node in (first, second, other):
            node.close()
