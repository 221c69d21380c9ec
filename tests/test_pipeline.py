"""The worker's batch step without Kafka: decode -> join against stored state -> ClickHouse sink.

Replays (at-least-once) and crashes between the ClickHouse write and the state write must not
change the counts, on ClickHouse 18.16 and on chDB.
"""

from __future__ import annotations

import random

import pytest

from fairwatch.config import CoreConfig
from fairwatch.pipeline import BatchProcessor, RawMessage
from fairwatch.sink import ClickHouseSink, group_expansion_sql
from fairwatch.store import migrate
from tests.live import assert_counts_equal, stored_counts
from tests.test_store import store  # noqa: F401  (the fixture: server and embedded)
from tests.workload import make_workload, oracle_counts

CONFIG = CoreConfig(intersections=(("sex", "race"),))


def partition_of(key: bytes, partitions: int = 4) -> int:
    return sum(key) % partitions  # any function works here: both topics use the same one


def raw_messages(workload) -> list[RawMessage]:
    return [RawMessage(kind, f"t.{kind}", partition_of(key), offset, key, value)
            for offset, (kind, key, value) in enumerate(workload.messages)]


@pytest.mark.services
def test_replays_and_crashes_between_writes_keep_counts_exact(store):  # noqa: F811
    migrate(store)
    workload = make_workload(6_000, seed=21)
    messages = raw_messages(workload)
    sink = ClickHouseSink(store, CONFIG)
    processor = BatchProcessor(CONFIG)
    state: dict[str, bytes] = {}
    rng = random.Random(21)
    dead = {}
    i = 0
    while i < len(messages):
        batch = messages[i : i + rng.choice((50, 500, 2000))]
        result = processor.process(batch, lambda event_id, partition: state.get(event_id))
        sink.write(result.sink)
        for letter in result.dead_letters:
            dead[letter.message.offset] = letter.rejection.code
        fate = rng.random()
        if fate < 0.15:
            continue  # crash after the ClickHouse write, before the state write: the batch comes again
        for event_id, (_, value) in result.state_changes.items():
            if value is None:
                state.pop(event_id, None)
            else:
                state[event_id] = value
        if fate < 0.3:
            continue  # crash after the state write, before the offset commit: the batch comes again
        i += len(batch)
    assert_counts_equal(stored_counts(store), oracle_counts(workload))
    assert len(dead) == len(workload.malformed)
    (stored_dead,) = store.query("SELECT count() FROM dead_letters FINAL")[0]
    assert stored_dead == len(workload.malformed)


def test_group_expansion_names_intersections_in_configured_order():
    sql = group_expansion_sql((("race", "sex"),))
    assert "('race&sex', if(has(subject_keys, 'race') AND has(subject_keys, 'sex'), concat(subject_values[indexOf(subject_keys, 'race')], '&'," in sql
