"""The worker's ClickHouse writes in a child process (concurrent inserts per table) or a thread
leave exactly what the plain sequential sink leaves, and count failed attempts."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from fairwatch.config import CoreConfig
from fairwatch.pipeline import BatchProcessor, RawMessage, ResidentJoins
from fairwatch.sink import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    LABELED_COLUMNS,
    OUTCOME_COLUMNS,
    ClickHouseSink,
)
from fairwatch.sinkprocess import SinkClosed, SinkExecutor
from fairwatch.store import migrate, open_store
from tests.live import stored_counts
from tests.test_store import server_url
from tests.workload import make_workload, mixed_batches

CONFIG = CoreConfig()


def processed_batches():
    workload = make_workload(4_000, seed=9)
    mixed, _ = mixed_batches(workload, 4, seed=9, batch_share=0.8, max_records=50, bad_record_share=0.01)
    messages = [RawMessage(kind, f"t.{kind}", partition, offset, key, value)
                for offset, (kind, partition, key, value) in enumerate(mixed)]
    processor = BatchProcessor(CONFIG, partitions=4)
    resident = ResidentJoins(CONFIG, lambda partition: [])
    return [processor.process(messages[i : i + 150], resident=resident).sink for i in range(0, len(messages), 150)]


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
    batches = processed_batches()
    assert sum(len(b.envelopes) for b in batches) > 10  # the deferred rows are exercised
    base = stack["FAIRWATCH_CLICKHOUSE"]
    tag = uuid.uuid4().hex[:8]
    oracle_store = open_store(server_url(base, f"fw_sinkref_{tag}"))
    store = open_store(server_url(base, f"fw_sinkexec_{tag}"))
    try:
        migrate(oracle_store)
        oracle = ClickHouseSink(oracle_store, CONFIG)
        for batch in batches:
            oracle.write_rows(batch.built())  # rows built in this process, one table after another
        oracle.recompute({p: set().union(*(b.touched.get(p, set()) for b in batches)) for p in range(4)})

        executor = SinkExecutor(store.url, CONFIG, in_process=in_process)
        try:
            assert executor.start().result(timeout=60)
            futures = [executor.write_rows(batch) for batch in batches]
            futures.append(executor.recompute({p: set().union(*(b.touched.get(p, set()) for b in batches))
                                               for p in range(4)}))
            assert all(f.result(timeout=120) >= 0 for f in futures)
            assert executor.failures.value == 0
        finally:
            executor.close()
        assert table_contents(store) == table_contents(oracle_store)
        assert stored_counts(store) == stored_counts(oracle_store) and stored_counts(store)
    finally:
        for opened in (oracle_store, store):
            opened.execute(f"DROP DATABASE IF EXISTS {opened.database}")
            opened.close()


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
