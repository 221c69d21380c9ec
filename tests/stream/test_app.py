"""The live pipeline over real Kafka into real ClickHouse (18.16) and chDB: exact counts, always.

Each test runs `fairwatch worker` processes against its own topics, consumer group and database,
produces a shuffled workload with kafka-python, and compares the stored per-group bucket counts
with a brute-force oracle (tests/workload.py).
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fairwatch.store.clickhouse import open_store
from fairwatch.testing.live import REPO, LiveSetup, assert_counts_equal, stored_counts
from fairwatch.testing.workload import make_workload, mixed_batches, oracle_counts

pytestmark = [pytest.mark.services, pytest.mark.timeout(1500), pytest.mark.xdist_group("live-workers")]  # wait_drained fails first, with the log


def check_dead_letters(setup: LiveSetup, workload) -> None:
    letters = setup.dead_letters()
    values = {base64.b64decode(r["value_b64"]) for r in letters.values()}
    assert {value for _, _, value in workload.malformed} <= values
    assert len(letters) == len(workload.malformed), "only the malformed messages belong in dead-letter"
    assert all(r["reason_code"] and r["reason"] for r in letters.values())


def wait_until_labeled(store, rows: int, timeout: float = 120.0) -> None:
    """Until the worker has stored more than ``rows`` labeled outcomes (it is busy, not done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.query("EXISTS TABLE labeled_outcomes")[0][0] and \
                store.query("SELECT count() FROM labeled_outcomes")[0][0] > rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker stored no more than {rows} labeled outcomes in {timeout:.0f}s")


def _status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _listening(port: int) -> set[str]:
    """The addresses (as /proc/net/tcp{,6} write them) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_shuffled_stream_with_duplicates_and_malformed_gives_exact_counts(stack, tmp_path):
    workload = make_workload(30_000, seed=1)  # the volume test of the suite: every fault kind, many times over
    setup = LiveSetup(stack, tmp_path)
    setup.produce(workload.messages)
    started = time.time()
    worker = setup.start_worker()
    try:
        setup.wait_drained([worker], timeout=600)
        drained = time.time()
        store = open_store(setup.store_url)
        assert_counts_equal(stored_counts(store), oracle_counts(workload))
        check_dead_letters(setup, workload)
        assert worker.alive(), "the worker must keep running through bad input"
        text = worker.metrics_text()
        assert 'fairwatch_rejected_messages_total{reason="invalid_json"}' in text
        assert "fairwatch_pending_joins" in text and "fairwatch_sink_seconds_count" in text
        # FAIRWATCH_WEB_HOST=127.0.0.1 (the default): /metrics and faust's own pages on loopback only
        assert _listening(worker.web_port) == {"0100007F"}  # 127.0.0.1 in /proc/net/tcp, not 00000000
        # without FAIRWATCH_DEBUG: /metrics and /healthz, not the join state or the debug pages
        for path in ("/table/join-log/", "/router/cluster/", "/debug/tasks", "/debug/offsets", "/graph/"):
            assert _status(f"http://127.0.0.1:{worker.web_port}{path}") == 404, path
        committed_at = float(re.search(r"^fairwatch_offsets_committed_timestamp_seconds (\S+)$", text, re.M)[1])
        assert started < committed_at <= drained  # the commit that drained the group
    finally:
        worker.stop()


def test_kill_9_halfway_then_restart_keeps_counts_exact(stack, tmp_path):
    workload = make_workload(30_000, seed=2)
    setup = LiveSetup(stack, tmp_path, table_store="rocksdb://")
    half = len(workload.messages) // 2
    setup.produce(workload.messages[:half])
    worker = setup.start_worker()
    store = open_store(setup.store_url)
    wait_until_labeled(store, 2000)  # kill it while it is working
    worker.kill9()
    setup.produce(workload.messages[half:])
    restarted = setup.start_worker("w1")  # same data dir: the on-disk state survives, the changelog fills gaps
    try:
        setup.wait_drained([restarted], timeout=300)
        assert_counts_equal(stored_counts(store), oracle_counts(workload))
        check_dead_letters(setup, workload)
    finally:
        restarted.stop()


def test_two_workers_split_the_partitions_and_counts_stay_exact(stack, tmp_path):
    workload = make_workload(30_000, seed=3)
    setup = LiveSetup(stack, tmp_path)
    workers = [setup.start_worker("a"), setup.start_worker("b")]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            health = [w.health() for w in workers]
            if all(h and h["input_partitions"] for h in health):
                break
            time.sleep(0.5)
        owned = [set(map(tuple, h["input_partitions"])) for h in health]
        assert owned[0] and owned[1] and not owned[0] & owned[1], f"partitions not split: {health}"
        setup.produce(workload.messages)
        setup.wait_drained(workers, timeout=300)
        assert_counts_equal(stored_counts(open_store(setup.store_url)), oracle_counts(workload))
    finally:
        for w in workers:
            w.stop()


def _local_clickhouse_pid() -> int:
    state = Path(os.environ.get("FAIRWATCH_STACK_DIR", Path.home() / ".cache/fairwatch/stack"))
    return int((state / "run" / "clickhouse.pid").read_text())


@pytest.mark.exclusive
def test_clickhouse_down_for_30_seconds_loses_nothing(stack, tmp_path):
    if os.environ.get("FAIRWATCH_CLICKHOUSE"):
        pytest.skip("stops the local stack's ClickHouse; FAIRWATCH_CLICKHOUSE points at an external server")
    workload = make_workload(30_000, seed=4)
    setup = LiveSetup(stack, tmp_path)
    worker = setup.start_worker()
    try:
        setup.produce(workload.messages[: len(workload.messages) // 3])
        time.sleep(3)
        os.kill(_local_clickhouse_pid(), signal.SIGTERM)
        setup.produce(workload.messages[len(workload.messages) // 3:])
        time.sleep(30)
        assert setup.lag() > 0, "offsets must not be committed past data ClickHouse has not stored"
        subprocess.run([str(REPO / "scripts" / "stack"), "up"], check=True, capture_output=True)
        setup.wait_drained([worker], timeout=300)
        assert_counts_equal(stored_counts(open_store(setup.store_url)), oracle_counts(workload))
        assert "fairwatch_sink_errors_total" in worker.metrics_text()
    finally:
        worker.stop()


def test_embedded_chdb_store_gets_the_same_counts(stack, tmp_path):
    workload = make_workload(10_000, seed=5)
    setup = LiveSetup(stack, tmp_path, store=f"chdb://{tmp_path}/chdb")
    setup.produce(workload.messages)
    worker = setup.start_worker()
    try:
        setup.wait_drained([worker], timeout=300)
    finally:
        worker.stop()  # chDB allows one process per directory: read after the worker is gone
    assert_counts_equal(stored_counts(open_store(setup.store_url)), oracle_counts(workload))


def check_batched_dead_letters(setup: LiveSetup, workload, bad_records) -> None:
    letters = setup.dead_letters()
    whole = {base64.b64decode(r["value_b64"]) for r in letters.values() if r["record_index"] is None}
    single = {base64.b64decode(r["value_b64"]) for r in letters.values() if r["record_index"] is not None}
    assert whole == {value for _, _, value in workload.malformed}
    assert sorted(single) == sorted(raw for _, raw in bad_records), "each bad record of a batch, alone, once"
    assert len(letters) == len(workload.malformed) + len(bad_records)


def test_mixed_single_and_batched_messages_give_exact_counts(stack, tmp_path):
    workload = make_workload(40_000, seed=7)
    setup = LiveSetup(stack, tmp_path)
    messages, bad_records = mixed_batches(workload, setup.partitions, seed=7)
    assert sum(1 for m in messages if m[3].startswith(b'{"batch_version"')) > 100 and bad_records
    setup.produce_to_partitions(messages)
    worker = setup.start_worker()
    try:
        setup.wait_drained([worker], timeout=300)
        assert_counts_equal(stored_counts(open_store(setup.store_url)), oracle_counts(workload))
        check_batched_dead_letters(setup, workload, bad_records)
        text = worker.metrics_text()
        [rerouted] = [float(line.split()[1]) for line in text.splitlines()
                      if line.startswith("fairwatch_rerouted_records_total ")]
        assert rerouted > 0, "the misrouted batches must have been forwarded"
    finally:
        worker.stop()


def test_kill_9_during_batched_ingestion_then_restart_keeps_counts_exact(stack, tmp_path):
    workload = make_workload(60_000, seed=8)
    setup = LiveSetup(stack, tmp_path, table_store="rocksdb://")
    messages, bad_records = mixed_batches(workload, setup.partitions, seed=8, batch_share=1.0)
    setup.produce_to_partitions(messages)
    worker = setup.start_worker()
    store = open_store(setup.store_url)
    wait_until_labeled(store, 5000)  # kill it while it is working
    worker.kill9()
    restarted = setup.start_worker("w1")
    try:
        setup.wait_drained([restarted], timeout=300)
        assert_counts_equal(stored_counts(store), oracle_counts(workload))
        check_batched_dead_letters(setup, workload, bad_records)
    finally:
        restarted.stop()


def test_records_idle_for_the_ttl_leave_the_join_and_stay_gone_after_kill_9(stack, tmp_path):
    """TTL 20 s of stream time: of 200 events one second apart, those within 20 s of the latest
    event of their partition stay waiting (each partition's join keeps its own stream time). After
    a kill -9 and a restart (joins rebuilt from their log), outcomes for all 200 pair only those."""
    import json
    import re
    from datetime import timedelta

    from fairwatch.testing.workload import T0

    setup = LiveSetup(stack, tmp_path, table_store="rocksdb://")
    setup.env["FAIRWATCH_TTL_DAYS"] = str(20 / 86400)
    setup.env["FAIRWATCH_COMMIT_SECONDS"] = "1"

    def at(seconds: float) -> str:
        return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    events = [("match-events", f"ttl-{i}".encode(), json.dumps({
        "event_id": f"ttl-{i}", "occurred_at": at(i), "deployment": "d", "algorithm": "a", "mode": "verification",
        "score": 0.9, "threshold": 0.5, "decision": "match", "subject": {"sex": "F"}}).encode()) for i in range(200)]
    outcomes = [("verified-outcomes", f"ttl-{i}".encode(), json.dumps({
        "event_id": f"ttl-{i}", "verified_at": at(200), "truth": "genuine", "reviewer": "r", "revision": 0,
        "inclusion_prob": 1.0}).encode()) for i in range(200)]
    from kafka.partitioner.default import murmur2  # kafka-python's, not fairwatch's

    home = {i: (murmur2(f"ttl-{i}".encode()) & 0x7FFFFFFF) % setup.partitions for i in range(200)}
    latest = {p: max(i for i in range(200) if home[i] == p) for p in set(home.values())}
    kept = sorted(f"ttl-{i}" for i in range(200) if i > latest[home[i]] - 20)
    setup.produce(events)
    worker = setup.start_worker()
    try:
        deadline = time.monotonic() + 120
        expired = 0.0
        while time.monotonic() < deadline:
            try:
                text = worker.metrics_text()
            except OSError:  # not serving yet
                text = ""
            found = re.search(r"^fairwatch_expired_joins_total (\S+)$", text, re.M)
            expired = float(found.group(1)) if found else 0.0
            if expired >= 200 - len(kept):
                break
            time.sleep(0.5)
        assert expired == 200 - len(kept)
        time.sleep(3)  # a flush writes them out of the join log
        worker.kill9()
        setup.produce(outcomes)
        worker = setup.start_worker("w1")
        setup.wait_drained([worker], timeout=120)
        store = open_store(setup.store_url)
        labeled = sorted(e for (e,) in store.query("SELECT event_id FROM labeled_outcomes FINAL"))
        assert labeled == kept
    finally:
        worker.stop()
