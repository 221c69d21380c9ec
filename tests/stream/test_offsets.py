"""The offset ledger never commits past an unprocessed offset, and re-reads fill every hole.

Oracle: a brute-force replay of the same deliveries, keeping the set of processed offsets; the
safe commit point is the smallest offset (from the starting point) not in that set.
"""

from __future__ import annotations

from fairwatch.stream.offsets import OffsetLedger
from hypothesis import given, settings
from hypothesis import strategies as st


def first_missing(processed: set[int], start: int) -> int:
    offset = start
    while offset in processed:
        offset += 1
    return offset


@st.composite
def deliveries(draw):
    """A partition of `end` offsets delivered in batches, some dropped, some replayed."""
    start = draw(st.integers(0, 50))
    end = start + draw(st.integers(1, 200))
    batches, position = [], start
    while position < end:
        size = draw(st.integers(1, 30))
        batch = list(range(position, min(end, position + size)))
        fate = draw(st.sampled_from(["ok", "ok", "ok", "dropped", "replayed"]))
        if fate == "replayed" and batches:
            batches.append(draw(st.sampled_from(batches)))  # a replay of an older batch
        if fate != "dropped":
            batches.append(batch)
        position += size
    return start, end, batches


@given(deliveries())
@settings(max_examples=300, deadline=None)
def test_commits_never_pass_an_unprocessed_offset_and_rereads_fill_the_holes(case):
    start, end, batches = case
    ledger = OffsetLedger(patience=5.0, max_rereads=3)
    ledger.start("p", start)
    processed: set[int] = set()
    now = 0.0
    for batch in batches:
        ledger.processed("p", batch, now)
        processed.update(batch)
        now += 1.0
        for offset in ledger.committable().values():
            assert offset == first_missing(processed, start)
            ledger.mark_committed({"p": offset})
    # the broker re-delivers from whatever offset the ledger asks for, until nothing is stuck
    for _ in range(100):
        now += 10.0
        stuck = ledger.stuck(now, highwaters={"p": end})
        if not stuck:
            break
        reread = list(range(stuck["p"], end))
        ledger.processed("p", reread, now)
        processed.update(reread)
    assert ledger.committable().get("p", ledger.describe()["p"]["committed"]) == end
    assert ledger.take_skipped() == []  # every hole was fillable, so none may be stepped over


def test_a_dropped_last_batch_is_found_through_the_highwater():
    ledger = OffsetLedger(patience=5.0)
    ledger.start("p", 0, now=0.0)
    ledger.processed("p", [0, 1, 2], now=1.0)  # 3..5 were in flight and dropped; nothing follows
    assert ledger.stuck(now=20.0) == {}  # without the highwater there is nothing to see
    assert ledger.stuck(now=20.0, highwaters={"p": 6}) == {"p": 3}
    assert ledger.stuck(now=21.0, highwaters={"p": 6}) == {}  # waits `patience` again
    ledger.processed("p", [3, 4, 5], now=22.0)
    assert ledger.committable() == {"p": 6}
    assert ledger.stuck(now=60.0, highwaters={"p": 6}) == {}  # caught up: nothing to re-read


def test_a_hole_the_broker_cannot_fill_is_stepped_over_after_the_rereads_and_reported():
    ledger = OffsetLedger(patience=5.0, max_rereads=2)
    ledger.start("p", 10)
    ledger.processed("p", [10, 11], now=0.0)
    ledger.processed("p", [13, 14], now=1.0)  # 12 is a transaction marker: never delivered
    assert ledger.committable() == {"p": 12}
    assert ledger.stuck(now=3.0) == {}  # not yet: patience
    assert ledger.stuck(now=6.5) == {"p": 12}
    ledger.processed("p", [13, 14], now=7.0)  # the re-read delivers 13, 14 again, never 12
    assert ledger.stuck(now=12.0) == {"p": 12}
    assert ledger.stuck(now=18.0) == {}  # third time: step over
    [gap] = ledger.take_skipped()
    assert (gap.partition, gap.first, gap.end) == ("p", 12, 13)
    assert ledger.committable() == {"p": 15}


def test_forgotten_partitions_start_again_and_stale_offsets_are_ignored():
    ledger = OffsetLedger()
    ledger.start("a", 0)
    ledger.start("b", 0)
    ledger.processed("a", range(0, 5), now=0.0)
    ledger.forget(["a"])
    assert "a" not in ledger and "b" in ledger
    ledger.start("a", 3)  # the committed offset Kafka holds after the rebalance
    ledger.processed("a", range(0, 4), now=1.0)  # a stale in-flight batch: below 3 ignored
    assert ledger.committable() == {"a": 4}
    ledger.forget()
    assert "b" not in ledger
