"""The worker's batch step without Kafka: decode -> join against stored state -> ClickHouse sink.

Replays (at-least-once) and crashes between the ClickHouse write and the state write must not
change the counts, on ClickHouse 18.16 and on chDB.
"""

from __future__ import annotations

import random

import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.join import EventState
from fairwatch.store.group_expansion import group_expansion_sql
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.processor import BatchProcessor, RawMessage
from fairwatch.testing.live import assert_counts_equal, changed_counts, stored_counts
from fairwatch.testing.workload import T0, make_workload, mixed_batches, oracle_counts

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


def forwarded(messages: list[RawMessage], reroutes) -> list[RawMessage]:
    """Records sent on to their partition, as they come back from Kafka (after the rest)."""
    return [RawMessage(r.topic.split(".", 1)[1], r.topic, r.partition, len(messages) + n, r.key, r.value)
            for n, r in enumerate(reroutes)]


def counts_from_blobs(table: dict) -> dict[tuple, list[float]]:
    """group_counts as the oracle shapes it, from (partition, group key, bucket) -> totals."""
    summed: dict[tuple, list[float]] = {}
    for (_, key, bucket), row in table.items():
        into = summed.setdefault((*key, bucket), [0.0] * 12)
        summed[(*key, bucket)] = [a + b for a, b in zip(into, row)]
    return summed


def store_counts(table: dict, partition: int, blob: bytes | None) -> None:
    from fairwatch.core.counts import decode_cells

    if blob is not None:
        groups, group_of, buckets, rows = decode_cells(blob)
        for g, bucket, row in zip(group_of.tolist(), buckets.tolist(), rows.tolist()):
            table[(partition, tuple(groups[g]), bucket)] = row


def test_resident_joins_rebuild_from_their_log_after_any_crash_and_compaction():
    """ResidentJoins (the live worker's state) against the per-event-state path as the oracle:
    same sink rows and labeled deltas batch by batch, while its log (a dict standing for the
    changelog table) is persisted at random points, cut short by crashes part-way through a
    flush or before the flush's counts reached ClickHouse, compacted, and the joins rebuilt from it. The counts written at each flush (a dict
    standing for group_counts) end equal to the brute-force oracle, and so do the rebuilt ones."""
    from fairwatch.contracts.partitioning import partition_for
    from fairwatch.stream.processor import ResidentJoins

    workload = make_workload(3_000, seed=5)
    # most in batch envelopes (some with bad records, a few on the wrong partition), some single
    mixed, _ = mixed_batches(workload, 4, seed=5, batch_share=0.6, max_records=40, bad_record_share=0.01)
    messages = [RawMessage(kind, f"t.{kind}", partition, offset, key, value)
                for offset, (kind, partition, key, value) in enumerate(mixed)]
    table: dict[str, bytes] = {}
    group_counts: dict[tuple, list[float]] = {}

    def read_log(partition):
        return [(k, v) for k, v in table.items() if k.startswith(f"{partition}:")]

    resident = ResidentJoins(CONFIG, read_log, compact_factor=1.2, compact_min_ids=200)
    clock = lambda: T0  # noqa: E731  (ingested_at: one instant for both, rows compare whole)
    oracle, state = BatchProcessor(CONFIG, clock=clock, partitions=4), {}
    processor = BatchProcessor(CONFIG, clock=clock, partitions=4)
    rng = random.Random(5)
    i, compactions, rebuilds, torn, lost, deferred = 0, 0, 0, 0, 0, 0
    while i < len(messages):
        batch = messages[i : i + rng.choice((20, 200, 700))]
        got = processor.process(batch, resident=resident)
        want = oracle.process(batch, lambda event_id, partition: state.get(event_id))
        built, wanted = got.sink.built(), want.sink.built()  # rows are left to the sink to build
        assert sorted(built.labeled) == sorted(wanted.labeled)
        assert sorted(built.events) == sorted(wanted.events)
        assert sorted(built.outcomes) == sorted(wanted.outcomes)
        assert len(got.sink) == len(built) == len(want.sink) == len(wanted)
        assert sorted(got.sink.dead_letters) == sorted(want.sink.dead_letters)
        assert got.reroutes == want.reroutes
        assert not any(got.sink.touched.values())  # every bucket is resident: nothing to recompute
        deferred += len(got.sink.envelopes)
        assert [d.rejection for d in got.dead_letters] == [d.rejection for d in want.dead_letters]
        assert (got.pending_change, got.orphan_change) == (want.pending_change, want.orphan_change)
        if rng.random() < 0.15:  # a crash before the flush: in-memory state lost, the batch comes again
            resident.forget(range(4))
            rebuilds += 1
            continue
        flushes = [(partition, resident.persist(partition)) for partition in range(4)]
        fate = rng.random()
        counts_lost = fate < 0.1  # a crash after the log, before the counts reached ClickHouse
        if not counts_lost:
            for partition, persisted in flushes:
                store_counts(group_counts, partition, persisted.counts)
        # the log, partition after partition; a crash may cut it anywhere
        cut = (rng.randrange(4), rng.random()) if 0.1 <= fate < 0.25 else (4, 0.0)
        written = set()  # partitions whose flush marker is in the log
        for partition, persisted in flushes:
            writes = persisted.writes
            if partition == cut[0]:
                writes = writes[: int(cut[1] * len(writes))]
            elif partition > cut[0]:
                break
            for key, value in writes:
                compactions += value is None
                table.pop(key, None) if value is None else table.__setitem__(key, value)
            if writes == persisted.writes or any(v is not None and v.startswith(b"FWFL") for _, v in writes):
                written.add(partition)
        for event_id, (partition, value) in want.state_changes.items():
            if partition in written:
                state.pop(event_id, None) if value is None else state.__setitem__(event_id, value)
        if cut[0] < 4 or counts_lost:  # the batch comes again: partitions whose flush is in the log see duplicates
            resident.forget(range(4))
            torn += cut[0] < 4
            lost += counts_lost
            continue
        messages += forwarded(messages, got.reroutes)
        i += len(batch)
    assert compactions > 0 and rebuilds > 0 and torn > 0 and lost > 0 and deferred > 0
    expected = oracle_counts(workload)
    assert_counts_equal(counts_from_blobs(group_counts), expected)
    resident.forget(range(4))
    rebuilt: dict[tuple, list[float]] = {}
    for partition in range(4):  # the log alone holds every state the oracle holds, and the counts
        join = resident.join(partition)
        held = {event_id: join.state_of(event_id) for event_id in join.held_ids()}
        expected_states = {e: EventState.from_bytes(v) for e, v in state.items() if partition_for(e, 4) == partition}
        assert held == expected_states
        counts = resident.counts(partition)
        store_counts(rebuilt, partition, counts.export_cells(counts.cells_from(resident.floor(partition))))
    assert_counts_equal(counts_from_blobs(rebuilt), expected)


@pytest.mark.services
def test_buckets_behind_the_resident_window_are_recomputed_and_counts_stay_exact(store):  # noqa: F811
    """With a 30-minute resident window over 6 hours of shuffled events, many late outcomes fall
    behind the floor: those buckets are recomputed from the stored rows, the rest written from
    memory, and group_counts on the real store ends equal to the brute-force oracle."""
    from fairwatch.stream.processor import ResidentJoins

    migrate(store)
    workload = make_workload(4_000, seed=8)
    mixed, _ = mixed_batches(workload, 4, seed=8, batch_share=0.7, max_records=40, bad_record_share=0.01)
    messages = [RawMessage(kind, f"t.{kind}", partition, offset, key, value)
                for offset, (kind, partition, key, value) in enumerate(mixed)]
    table: dict[str, bytes] = {}
    resident = ResidentJoins(CONFIG, lambda p: [(k, v) for k, v in table.items() if k.startswith(f"{p}:")],
                             resident_seconds=1800, compact_min_ids=500)
    processor = BatchProcessor(CONFIG, partitions=4)
    sink = ClickHouseSink(store, CONFIG)
    rng = random.Random(8)
    i, recomputed, rebuilds = 0, 0, 0
    while i < len(messages):
        batch = messages[i : i + rng.choice((50, 300))]
        result = processor.process(batch, resident=resident)
        sink.write_rows(result.sink.built())
        recomputed += sum(map(len, result.sink.touched.values()))
        flushes = {partition: resident.persist(partition) for partition in range(4)}
        sink.write_counts({p: f.counts for p, f in flushes.items() if f.counts is not None})
        sink.recompute(result.sink.touched)
        for persisted in flushes.values():
            for key, value in persisted.writes:
                table.pop(key, None) if value is None else table.__setitem__(key, value)
        if rng.random() < 0.2:  # a restart: the joins, counts and floors come back from the log
            resident.forget(range(4))
            rebuilds += 1
        messages += forwarded(messages, result.reroutes)
        i += len(batch)
    assert recomputed > 100 and rebuilds > 0
    expected = oracle_counts(workload)
    # old buckets left memory: a fraction of the cells is resident (each partition has most groups)
    assert sum(len(resident.counts(p)) for p in range(4)) < len(expected) / 2
    assert_counts_equal(stored_counts(store), expected)


def test_expired_records_leave_the_resident_join_and_its_log():
    """Records idle for the TTL (as of the earlier of the wall clock and the join's stream time)
    are dropped and written away; a join rebuilt from the log holds exactly the rest."""
    from datetime import datetime, timedelta, timezone

    from fairwatch.stream.processor import ResidentJoins

    config = CoreConfig(ttl_seconds=3600)
    table: dict[str, bytes] = {}
    resident = ResidentJoins(config, lambda p: [(k, v) for k, v in table.items() if k.startswith(f"{p}:")])

    def event(event_id: str, at: datetime) -> bytes:
        return (b'{"event_id": "%s", "occurred_at": "%s", "deployment": "d", "algorithm": "a", "mode": "verification",'
                b' "score": 0.5, "threshold": 0.4, "decision": "match", "subject": {"sex": "F"}}'
                % (event_id.encode(), at.strftime("%Y-%m-%dT%H:%M:%SZ").encode()))

    times = {"old": T0, "edge": T0 + timedelta(minutes=30), "new": T0 + timedelta(hours=2)}
    messages = [RawMessage("match-events", "t", 0, i, None, event(name, at)) for i, (name, at) in enumerate(times.items())]
    BatchProcessor(config).process(messages, resident=resident)

    def persist():
        for key, value in resident.persist(0).writes:
            table.pop(key, None) if value is None else table.__setitem__(key, value)

    persist()
    wall = datetime.now(timezone.utc).timestamp()
    assert T0.timestamp() + 3600 < wall  # so the wall clock alone would expire everything
    # stream time = "new" (T0 + 2 h): "old" and "edge" are idle for 1 h or more as of then
    assert sorted(resident.expire(0, wall)) == ["edge", "old"]
    assert resident.join(0).counters.pending == 1
    persist()
    resident.forget([0])
    assert resident.join(0).held_ids() == ["new"]
    assert resident.expire(0, times["new"].timestamp() + 1800) == []  # idle 30 min only


def test_counts_rebuilt_after_expiry_hold_only_buckets_no_pair_expired_from():
    """A pair idle for the TTL leaves the join; the floor moves past its bucket, so a rebuilt
    partition (counts derived from what its join holds) never writes that bucket's counts from a
    join that lost part of it, and a late pair there is recomputed from the stored rows."""
    from datetime import timedelta

    from fairwatch.stream.processor import ResidentJoins

    config = CoreConfig(ttl_seconds=3600)
    table: dict[str, bytes] = {}
    resident = ResidentJoins(config, lambda p: [(k, v) for k, v in table.items() if k.startswith(f"{p}:")])

    def pair(event_id: str, at, offset: int) -> list[RawMessage]:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        event = (b'{"event_id": "%s", "occurred_at": "%s", "deployment": "d", "algorithm": "a", "mode": "verification",'
                 b' "score": 0.5, "threshold": 0.4, "decision": "match", "subject": {"sex": "F"}}' % (event_id.encode(), stamp))
        outcome = (b'{"event_id": "%s", "verified_at": "%s", "truth": "impostor", "reviewer": "r", "revision": 0,'
                   b' "inclusion_prob": 1.0}' % (event_id.encode(), stamp))
        return [RawMessage("match-events", "t", 0, offset, None, event),
                RawMessage("verified-outcomes", "t", 0, offset + 1, None, outcome)]

    def persist():
        for key, value in resident.persist(0).writes:
            table.pop(key, None) if value is None else table.__setitem__(key, value)

    old_bucket = int(T0.timestamp()) // 60 * 60
    processor = BatchProcessor(config)
    processor.process(pair("old", T0, 0) + pair("new", T0 + timedelta(hours=2), 2), resident=resident)
    persist()
    assert {row.bucket_start for row in resident.counts(0).rows()} == {old_bucket, old_bucket + 7200}
    assert resident.expire(0, T0.timestamp() + 10 * 3600) == ["old"]  # stream time is "new": old is idle 2 h
    persist()
    assert resident.floor(0) > old_bucket
    resident.forget([0])
    rebuilt = resident.counts(0)
    # "new" alone, in the overall group and in sex=F: one impostor comparison, a false match
    assert sorted((row.key.attribute, row.bucket_start, row.row[:2].tolist()) for row in rebuilt.rows()) == [
        ("*", old_bucket + 7200, [1.0, 1.0]), ("sex", old_bucket + 7200, [1.0, 1.0])]
    late = processor.process(pair("late", T0 + timedelta(seconds=5), 4), resident=resident)
    assert late.sink.touched == {0: {old_bucket}}  # behind the floor: recomputed from the rows
    assert all(row.bucket_start != old_bucket for row in resident.counts(0).rows())


def test_join_log_records_stay_under_kafkas_message_size_whatever_the_subjects():
    """Every event with its own subject labels: the blobs' headers grow, records still fit in 1 MB."""
    from fairwatch.stream.processor import ResidentJoins

    resident = ResidentJoins(CoreConfig(), lambda p: [])
    messages = [RawMessage("match-events", "t", 0, i, None, (
        b'{"event_id": "e-%d", "occurred_at": "2026-11-25T00:00:00Z", "deployment": "d", "algorithm": "a",'
        b' "mode": "verification", "score": 0.5, "threshold": 0.4, "decision": "match",'
        b' "subject": {"sex": "F", "badge": "%s"}}' % (i, (b"b%d-" % i) + b"x" * 50))) for i in range(30_000)]
    BatchProcessor(CoreConfig()).process(messages, resident=resident)
    writes = resident.persist(0).writes
    assert len(writes) > 1 and all(len(blob) < 1_000_000 for _, blob in writes)
    table = dict(writes)
    rebuilt = ResidentJoins(CoreConfig(), lambda p: list(table.items())).join(0)
    assert sorted(rebuilt.held_ids()) == sorted(f"e-{i}" for i in range(30_000))


@pytest.mark.services
def test_counts_taken_earlier_lose_to_counts_taken_later_whatever_lands_last(store):  # noqa: F811
    """A revoked partition's old owner may write its last counts after the new owner's: the totals
    carry the time they were taken, so the newer ones stay in group_counts."""
    from fairwatch.stream.processor import ResidentJoins

    migrate(store)
    workload = make_workload(300, seed=3)
    messages = raw_messages(workload)
    resident = ResidentJoins(CONFIG, lambda p: [])
    processor = BatchProcessor(CONFIG)
    processor.process(messages[:150], resident=resident)
    older = changed_counts(resident, range(4))
    processor.process(messages[150:], resident=resident)
    newer = changed_counts(resident, range(4))
    sink = ClickHouseSink(store, CONFIG)
    sink.write_counts(newer, version=2_000)
    sink.write_counts(older, version=1_000)  # lands last, taken first
    expected = {}
    for partition in range(4):  # every resident cell's totals at the end, summed over partitions
        for row in resident.counts(partition).rows():
            key = (*row.key, row.bucket_start)
            expected[key] = [a + b for a, b in zip(expected.get(key, [0.0] * 12), row.row.tolist())]
    assert_counts_equal(stored_counts(store), expected)
    assert_counts_equal(expected, oracle_counts(workload))  # and they are the brute-force counts
