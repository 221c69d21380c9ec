"""The worker's ClickHouse writes in a child process (concurrent inserts per table) or a thread
leave exactly what the plain sequential sink leaves, and count failed attempts."""

from __future__ import annotations

import json
import random
import socket
import time
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.join import LabeledDeltas, Profile
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    LABELED_COLUMNS,
    OUTCOME_COLUMNS,
    ClickHouseSink,
    labeled_frames,
    split_by_partition,
)
from fairwatch.stream.processor import BatchProcessor, RawMessage, ResidentJoins
from fairwatch.stream.write_executor import SinkClosed, SinkExecutor
from fairwatch.testing.live import assert_counts_equal, changed_counts, stored_counts
from fairwatch.testing.stack import server_url
from fairwatch.testing.workload import make_workload, mixed_batches

CONFIG = CoreConfig()


def processed_batches():
    workload = make_workload(4_000, seed=9)
    mixed, _ = mixed_batches(workload, 4, seed=9, batch_share=0.8, max_records=50, bad_record_share=0.01)
    messages = [RawMessage(kind, f"t.{kind}", partition, offset, key, value)
                for offset, (kind, partition, key, value) in enumerate(mixed)]
    processor = BatchProcessor(CONFIG, partitions=4)
    resident = ResidentJoins(CONFIG, lambda partition: [])
    batches = [processor.process(messages[i : i + 150], resident=resident).sink for i in range(0, len(messages), 150)]
    return batches, changed_counts(resident, range(4))


def table_contents(store) -> dict[str, list]:
    columns = {"match_events": EVENT_COLUMNS, "verified_outcomes": OUTCOME_COLUMNS,
               "labeled_outcomes": LABELED_COLUMNS, "dead_letters": DEAD_LETTER_COLUMNS}
    out = {}
    for table, names in columns.items():
        kept = [n for n in names if n not in ("ingested_at", "rejected_at")]  # wall-clock columns
        out[table] = sorted(map(tuple, store.query(f"SELECT {', '.join(kept)} FROM {table} FINAL")))
    return out


@pytest.mark.services
@pytest.mark.parametrize("in_process", [True, False], ids=["child-process", "thread"])
def test_the_sink_executor_writes_what_the_sequential_sink_writes(stack, in_process):
    """The oracle recomputes every bucket from the labeled rows; the executor writes the resident
    counts of partitions 0 and 1 and recomputes the buckets of 2 and 3 (as if behind the floor)."""
    batches, counts = processed_batches()
    assert sum(len(b.envelopes) for b in batches) > 10  # the deferred rows are exercised
    buckets = {p: set() for p in range(4)}
    for batch in batches:
        for row in batch.built().labeled:
            buckets[row[-1]].add(row[3])
    base = stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"]
    tag = uuid.uuid4().hex[:8]
    oracle_store = open_store(server_url(base, f"fw_sinkref_{tag}"))
    store = open_store(server_url(base, f"fw_sinkexec_{tag}"))
    try:
        migrate(oracle_store)
        oracle = ClickHouseSink(oracle_store, CONFIG)
        for batch in batches:
            oracle.write_rows(batch.built())  # rows built in this process, one table after another
        oracle.recompute(buckets)

        executor = SinkExecutor(store.url, CONFIG, in_process=in_process)
        try:
            assert executor.start().result(timeout=60)
            futures = [executor.write_rows(batches[i : i + 2]) for i in range(0, len(batches), 2)]  # in pairs
            futures.append(executor.write_counts({p: counts[p] for p in (0, 1)}))
            futures.append(executor.recompute({p: buckets[p] for p in (2, 3)}))
            assert all(f.result(timeout=120) >= 0 for f in futures)
            assert executor.failures.value == 0
        finally:
            executor.close()
        assert table_contents(store) == table_contents(oracle_store)
        assert stored_counts(oracle_store)
        assert_counts_equal(stored_counts(store), stored_counts(oracle_store))
    finally:
        for opened in (oracle_store, store):
            opened.execute(f"DROP DATABASE IF EXISTS {opened.database}")
            opened.close()


@pytest.mark.parametrize("shares", [1, 2, 3, 8])
def test_split_by_partition_deals_whole_partitions_into_balanced_disjoint_parts(shares):
    rng = random.Random(shares)
    for _ in range(200):
        touched = {p: set(rng.sample(range(1000), rng.randint(0, 40))) for p in rng.sample(range(16), rng.randint(0, 12))}
        parts = split_by_partition(touched, shares)
        nonempty = {p: b for p, b in touched.items() if b}
        assert len(parts) == min(shares, len(nonempty))
        assert all(parts) and sorted(p for part in parts for p in part) == sorted(nonempty)  # each once
        assert all(part[p] is touched[p] for part in parts for p in part)
        loads = [sum(map(len, part.values())) for part in parts]
        if loads:  # greedy on the largest first: no part exceeds another by more than one partition
            assert max(loads) - min(loads) <= max(map(len, nonempty.values()))


def test_failed_attempts_are_counted_while_the_write_is_retried():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed when the block ends: nothing listens there
    executor = SinkExecutor(f"clickhouse://default:@127.0.0.1:{port}/nowhere", CONFIG, in_process=False)
    future = executor.recompute({0: {0}})
    deadline = time.monotonic() + 30
    while executor.failures.value < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert executor.failures.value >= 2 and not future.done()
    executor.close()  # stops retrying
    with pytest.raises(SinkClosed):
        future.result(timeout=10)


@pytest.mark.services
def test_a_new_sink_process_takes_over_when_the_old_one_dies(stack):
    """What the worker does when the sink's child process dies (killed, out of memory): its writes
    fail as BrokenProcessPool, one restart makes a new child, and the writes submitted again land."""
    import concurrent.futures
    import os
    import signal

    batches, counts = processed_batches()
    store = open_store(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_sinkdie_{uuid.uuid4().hex[:8]}"))
    executor = SinkExecutor(store.url, CONFIG, in_process=True)
    try:
        assert executor.start().result(timeout=60)
        first = executor.write_rows(batches[0]).result(timeout=60)
        assert first >= 0
        (pid,) = executor._executor._processes  # the one child
        os.kill(pid, signal.SIGKILL)
        broken = [executor.write_rows(batch) for batch in batches[1:]]
        for future in broken:
            with pytest.raises(concurrent.futures.process.BrokenProcessPool):
                future.result(timeout=60)
        for future in broken:  # every caller restarts; only the first replaces the pool
            executor.restart(broken=future)
        (new_pid,) = executor._executor._processes if executor._executor._processes else (None,)
        for batch in batches[1:]:
            executor.write_rows(batch).result(timeout=120)
        assert executor._executor._processes and pid not in executor._executor._processes
        assert new_pid is None or list(executor._executor._processes) == [new_pid]
        executor.write_counts(counts).result(timeout=120)

        reference = open_store(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_sinkref2_{uuid.uuid4().hex[:8]}"))
        try:
            migrate(reference)
            sink = ClickHouseSink(reference, CONFIG)
            for batch in batches:
                sink.write_rows(batch)
            sink.write_counts(counts)
            assert table_contents(store) == table_contents(reference)
            assert stored_counts(store) == stored_counts(reference) and stored_counts(store)
        finally:
            reference.execute(f"DROP DATABASE IF EXISTS {reference.database}")
            reference.close()
    finally:
        executor.close()
        store.execute(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()


def test_labeled_frames_refuse_what_their_joined_labels_cannot_carry_and_carry_the_rest():
    """Labels travel joined by '&' (which the contract keeps out of labels): a profile with one in
    a label, or a time outside DateTime, sends the rows the column-list way instead."""
    def deltas(label: str, seconds: int) -> LabeledDeltas:
        profiles = [Profile("gate-a", "algo-1", "verification", (("race", "B"), ("sex", label)))]
        return LabeledDeltas(profiles, ["e1", "e2"], np.array([0, 0], np.int32),
                             np.array([seconds * 1_000_000 + 5, seconds * 1_000_000], np.int64),
                             np.array([seconds - seconds % 60] * 2, np.int64), np.array([True, False]),
                             np.array([False, True]), np.array([1.0, 2.0]), np.array([1, -1], np.int8),
                             np.array([0, 0], np.int32))

    rows, profiles = labeled_frames([(deltas("F", 1_700_000_000), 3)])
    assert rows["event_id"].tolist() == ["e1"]  # the retraction (sign -1) is implied, not stored
    assert (rows["occurred_s"].tolist(), rows["occurred_at_us"].tolist()) == ([1_700_000_000], [5])
    assert (rows["decision"].tolist(), rows["truth"].tolist(), rows["kafka_partition"].tolist()) == (
        ["match"], ["impostor"], [3])
    assert (profiles["keys"].tolist(), profiles["labels"].tolist()) == (["race&sex"], ["B&F"])
    assert labeled_frames([(deltas("F&M", 1_700_000_000), 3)]) is None
    assert labeled_frames([(deltas("F", -60), 3)]) is None
    assert labeled_frames([(deltas("F", 1 << 32), 3)]) is None


@pytest.mark.services
def test_envelope_frames_store_references_contexts_and_odd_times_as_the_column_lists_do(stack):
    """The numpy-column path of events and outcomes against the column-list path, on records the
    workload lacks: references, nested and empty contexts, fractions of a second, UTC offsets."""
    from fairwatch.producer import BatchBuilder

    builder = BatchBuilder(2, max_records=50, linger=1e9)
    envelopes = []
    for i in range(120):
        event = {"event_id": f"fx-{i}", "occurred_at": f"2026-11-2{i % 3}T0{i % 10}:1{i % 6}:0{i % 10}"
                 + (".123456Z" if i % 4 == 0 else ".250000+02:00" if i % 4 == 1 else "Z" if i % 4 == 2 else "-05:30"),
                 "deployment": "gate-a", "algorithm": "algo-1", "mode": "verification" if i % 2 else "identification",
                 "score": i / 120, "threshold": 0.5, "decision": "match" if i % 3 else "non_match",
                 "subject": {"sex": "F" if i % 2 else "M", "race": ["Black", "White", "Asian"][i % 3]}}
        if i % 5 == 0:
            event["reference"] = {"sex": "M", "race": "White"}
        if i % 7 == 0:
            event["context"] = {"camera": i, "site": {"name": "north", "floors": [1, 2]}}
        elif i % 7 == 1:
            event["context"] = {}
        outcome = {"event_id": f"fx-{i}", "verified_at": "2026-11-26T10:00:00.250000+01:00", "truth": "genuine"
                   if i % 2 else "impostor", "reviewer": f"r{i % 3}", "revision": i % 2, "inclusion_prob": 0.5}
        envelopes += builder.add("match-events", event["event_id"], json.dumps(event).encode(), 0.0)
        envelopes += builder.add("verified-outcomes", outcome["event_id"], json.dumps(outcome).encode(), 0.0)
    envelopes += builder.drain()
    messages = [RawMessage(e.topic, f"t.{e.topic}", e.partition, offset, e.key, e.value)
                for offset, e in enumerate(envelopes)]
    processor, resident = BatchProcessor(CONFIG, partitions=2), ResidentJoins(CONFIG, lambda p: [])
    half = len(messages) // 2
    batches = [processor.process(part, resident=resident).sink for part in (messages[:half], messages[half:])]
    batches[0].ingested_at = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)  # told apart in one insert
    batches[1].ingested_at = datetime(2026, 11, 26, 12, 0, 7, tzinfo=timezone.utc)
    assert sum(len(b.envelopes) for b in batches) == len(envelopes)  # every envelope on the fast path
    assert not any(b.records for b in batches)

    base = stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"]
    tag = uuid.uuid4().hex[:8]
    oracle_store, store = (open_store(server_url(base, f"fw_{name}_{tag}")) for name in ("framesref", "frames"))
    try:
        for opened in (oracle_store, store):
            migrate(opened)
        for batch in batches:  # rows built in Python, the driver's way, a batch at a time
            ClickHouseSink(oracle_store, CONFIG).write_rows(batch.built())
        ClickHouseSink(store, CONFIG).write_rows(batches)  # both at once: one insert per table
        expected, got = table_contents(oracle_store), table_contents(store)
        ingested = "SELECT event_id, toUnixTimestamp(ingested_at) FROM {} ORDER BY event_id"
        for table in ("match_events", "verified_outcomes"):
            assert store.query(ingested.format(table)) == oracle_store.query(ingested.format(table))
            assert len({seconds for _, seconds in store.query(ingested.format(table))}) == 2
        assert len(got["match_events"]) == 120 and len(got["verified_outcomes"]) == 120
        assert got == expected
        context = [n for n in EVENT_COLUMNS if n != "ingested_at"].index("context")  # as table_contents keeps them
        contexts = {row[0]: row[context] for row in got["match_events"]}
        assert json.loads(contexts["fx-7"]) == {"camera": 7, "site": {"floors": [1, 2], "name": "north"}}
        assert contexts["fx-8"] == contexts["fx-1"] == "{}"
    finally:
        for opened in (oracle_store, store):
            opened.execute(f"DROP DATABASE IF EXISTS {opened.database}")
            opened.close()
