"""Workers on the cluster (issue 30 item 2): three Kafka brokers (replication factor 3,
min.insync.replicas 2) and ClickHouse as two shards x two replicas (`scripts/stack up --cluster`).

Three workers share 12 input partitions; while traffic flows one is killed with kill -9, another
joins, one broker stops and one ClickHouse replica stops. Oracle: the workload's own brute-force
recount (fairwatch.testing.workload.oracle_counts) against the counts read back through the
Distributed tables; every malformed message in the dead-letter topic once; nothing valid lost or
counted twice. Run alone: `pytest -m cluster`."""

from __future__ import annotations

import base64
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest
from fairwatch.store.clickhouse import open_store
from fairwatch.testing.live import LiveSetup, assert_counts_equal, stored_counts
from fairwatch.testing.stack import cluster_as_stack, configured_cluster_dir, ensure_cluster, run_stack
from fairwatch.testing.workload import make_workload, oracle_counts

pytestmark = [pytest.mark.services, pytest.mark.cluster, pytest.mark.xdist_group("cluster")]  # one fault test stops cluster nodes


def _cluster_pid(name: str) -> int:
    return int((configured_cluster_dir() / "run" / f"{name}.pid").read_text())


def _stop(name: str) -> None:
    pid = _cluster_pid(name)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} (pid {pid}) did not stop")


def _wait_owned(workers, timeout: float = 120.0) -> list[set]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = [w.health() for w in workers]
        if all(h and h["input_partitions"] for h in health):
            return [set(map(tuple, h["input_partitions"])) for h in health]
        time.sleep(0.5)
    raise AssertionError(f"partitions not assigned to every worker within {timeout}s: {health}")


@pytest.mark.timeout(900)
def test_three_workers_a_kill_a_join_a_broker_and_a_replica_down_keep_counts_exact(tmp_path):
    if os.environ.get("FAIRWATCH_CLUSTER_CLICKHOUSE_MIGRATOR"):
        pytest.skip("stops services of the local cluster; FAIRWATCH_CLUSTER_* points at an external one")
    stack = cluster_as_stack(ensure_cluster())
    workload = make_workload(20_000, seed=30)
    setup = LiveSetup(stack, tmp_path, partitions=12, replication=3, table_store="rocksdb://")
    thirds = len(workload.messages) // 3
    workers = [setup.start_worker(name) for name in ("a", "b", "c")]
    stopped: list[str] = []
    try:
        owned = _wait_owned(workers)
        assert all(owned) and sum(len(o) for o in owned) == len({p for o in owned for p in o})  # no partition twice
        setup.produce(workload.messages[:thirds])
        time.sleep(2)
        workers[0].kill9()  # its partitions move to the others, its uncommitted work is redone
        workers.append(setup.start_worker("d"))
        for name in ("kafka-3", "clickhouse-s2r2"):  # a broker and a replica stop while traffic flows
            _stop(name)
            stopped.append(name)
        setup.produce(workload.messages[thirds:2 * thirds])
        time.sleep(2)
        setup.produce(workload.messages[2 * thirds:])
        # the broker and the replica come back while the workers drain (the replica catches up)
        with ThreadPoolExecutor(1) as pool:
            recovered = pool.submit(run_stack, "up", cluster=True)
            setup.wait_drained(workers[1:], timeout=600)
            assert recovered.result().returncode == 0, recovered.result().stderr
        stopped.clear()
        with closing(open_store(setup.store_url, create=False)) as store:
            assert_counts_equal(stored_counts(store), oracle_counts(workload))
        letters = setup.dead_letters()  # redeliveries collapsed by (topic, partition, offset, record)
        assert {value for _, _, value in workload.malformed} <= {base64.b64decode(r["value_b64"]) for r in letters.values()}
        assert len(letters) == len(workload.malformed), "only the malformed messages belong in dead-letter"
    finally:
        for w in workers:
            w.stop()
        if stopped:  # the test failed before they came back: the cluster whole again for what follows
            assert run_stack("up", cluster=True).returncode == 0
