"""The label-delay join: any arrival order, duplicates and revisions give the brute-force counts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, fields
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from fairwatch.contracts.records import Candidate, MatchEvent, RejectCode, VerifiedOutcome
from fairwatch.core import join as join_module
from fairwatch.core.config import CoreConfig
from fairwatch.core.counts import BucketCounts
from fairwatch.core.join import (
    EventState,
    HeldEvent,
    HeldOutcome,
    LabelJoin,
    Profile,
    _SlotIndex,
)
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CONFIG = CoreConfig(intersections=(("sex", "race"),))
ATTRIBUTES = {"sex": ["F", "M"], "race": ["A", "B", "C"], "age": ["18-29", "70+"]}


# ---- brute force, written without the package's code ---------------------------------------

def expected_groups(event: MatchEvent) -> list[tuple]:
    where = (event.deployment, event.algorithm, event.mode)
    groups = [where + ("*", "*")]
    for attribute, label in event.subject.items():
        groups.append(where + (attribute, label))
    if "sex" in event.subject and "race" in event.subject:
        groups.append(where + ("sex&race", event.subject["sex"] + "&" + event.subject["race"]))
    return groups


def brute_force_counts(pairs: list[tuple[MatchEvent, VerifiedOutcome]]) -> dict[tuple, list[float]]:
    """(group key fields, bucket start) -> the 12 sums, from the final (event, outcome) pairs."""
    cells: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 12)
    for event, outcome in pairs:
        bucket = int(event.occurred_at.timestamp()) // 60 * 60
        base = 6 if outcome.truth == "genuine" else 0
        if outcome.truth == "impostor":
            error = 1.0 if event.decision == "match" else 0.0
        elif event.candidates is not None:  # a mated search: missed unless its mate is listed at or above threshold
            above = sum(1 for c in event.candidates if c.score >= event.threshold)
            error = 0.0 if outcome.mate_rank is not None and outcome.mate_rank <= above else 1.0
        else:
            error = 1.0 if event.decision == "non_match" else 0.0
        w = 1.0 / outcome.inclusion_prob
        for group in expected_groups(event):
            row = cells[(group, bucket)]
            row[base + 0] += 1
            row[base + 1] += error
            row[base + 2] += w
            row[base + 3] += w * error
            row[base + 4] += w * w
            row[base + 5] += w * w * error
    return cells


def assert_counts_equal(counts: BucketCounts, expected: dict[tuple, list[float]]) -> None:
    got = {(tuple(r.key), r.bucket_start): r.row for r in counts.rows()}
    nonzero = {cell: row for cell, row in got.items() if np.any(np.abs(row) > 1e-9)}
    assert nonzero.keys() == expected.keys()
    for cell, row in nonzero.items():
        np.testing.assert_allclose(row, expected[cell], rtol=1e-12, atol=1e-9, err_msg=str(cell))


# ---- random streams ---------------------------------------------------------------------------

subjects = st.fixed_dictionaries(
    {"sex": st.sampled_from(ATTRIBUTES["sex"])},
    optional={"race": st.sampled_from(ATTRIBUTES["race"]), "age": st.sampled_from(ATTRIBUTES["age"])},
)


@st.composite
def candidate_lists(draw, threshold: float = 0.5) -> dict:
    """A search's list, best first, with the score and decision it implies (threshold 0.5)."""
    scores = sorted(draw(st.lists(st.sampled_from([0.2, 0.5, 0.7, 0.9]), max_size=3)), reverse=True)
    candidates = tuple(Candidate(rank, score, f"c{draw(st.integers(0, 99))}-{rank}") for rank, score in
                       enumerate(scores, start=1))
    top = scores[0] if scores else 0.1
    return {"candidates": candidates, "score": top, "decision": "match" if top >= threshold else "non_match",
            "list_length": draw(st.sampled_from([None, 3, 5])), "gallery_size": draw(st.sampled_from([None, 1000]))}


@st.composite
def match_events(draw, event_id: str) -> MatchEvent:
    event = MatchEvent(
        event_id=event_id,
        occurred_at=T0 + timedelta(seconds=draw(st.integers(0, 3 * 3600))),
        deployment=draw(st.sampled_from(["gate-a", "gate-b"])),
        algorithm=draw(st.sampled_from(["algo-1", "algo-2"])),
        mode=draw(st.sampled_from(["verification", "identification"])),
        score=draw(st.floats(0, 1)),
        threshold=0.5,
        decision=draw(st.sampled_from(["match", "non_match"])),
        subject=draw(subjects),
        cluster_id=draw(st.sampled_from([None, "0123456789abcdef", "fedcba9876543210"])),  # a version may differ in it only
    )
    if event.mode == "identification" and draw(st.booleans()):
        event = replace(event, **draw(candidate_lists()))
    return event


@st.composite
def outcomes(draw, event_id: str) -> VerifiedOutcome:
    return VerifiedOutcome(
        event_id=event_id,
        verified_at=T0 + timedelta(hours=draw(st.integers(1, 24 * 20))),
        truth=draw(st.sampled_from(["genuine", "impostor"])),
        reviewer=draw(st.sampled_from(["r1", "r2"])),
        revision=draw(st.integers(0, 3)),
        inclusion_prob=draw(st.sampled_from([1.0, 0.5, 0.25, 0.1, 0.3])),
        mate_rank=draw(st.sampled_from([None, 1, 2, 3])),  # meaningful for mated searches with a list only
    )


@st.composite
def streams(draw):
    """Deliveries (with duplicates, conflicting versions and revisions) in a random order, in batches."""
    deliveries = []
    for i in range(draw(st.integers(1, 20))):
        event_id = f"e{i}"
        versions = draw(st.lists(match_events(event_id), min_size=1, max_size=2))  # a second one conflicts
        for version in versions:
            deliveries += [version] * draw(st.integers(0, 3))
        for outcome in draw(st.lists(outcomes(event_id), max_size=4)):
            deliveries += [outcome] * draw(st.integers(1, 2))
    order = draw(st.permutations(deliveries))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    batches = [order[a:b] for a, b in zip([0] + cuts, cuts + [len(order)])]
    return order, batches


def final_pairs(order: list) -> tuple[dict, dict]:
    """Per event_id: the first event version delivered; the first delivered outcome of the top revision."""
    events: dict[str, MatchEvent] = {}
    latest: dict[str, VerifiedOutcome] = {}
    for record in order:
        if isinstance(record, MatchEvent):
            events.setdefault(record.event_id, record)
        else:
            held = latest.get(record.event_id)
            if held is None or record.revision > held.revision:
                latest[record.event_id] = record
    return events, latest


@settings(max_examples=150, deadline=None)
@given(streams(), st.data())
def test_counts_equal_brute_force_whatever_the_order_duplicates_and_revisions(stream, data):
    order, batches = stream
    events, latest = final_pairs(order)
    restart = data.draw(st.integers(0, len(batches)), label="restore into a fresh join before batch")
    join, counts = LabelJoin(CONFIG), BucketCounts(CONFIG)
    net = defaultdict(int)
    rejected = []
    for k, batch in enumerate(batches):
        if k == restart:  # as after a crash: the state comes back from the changelog, bytes and all
            states = {f"e{i}": join.state_of(f"e{i}") for i in range(len(order))}
            join = LabelJoin(CONFIG)
            for event_id, state in states.items():
                join.restore(event_id, None if state is None else EventState.from_bytes(state.to_bytes()))
        out = join.update(batch)
        counts.update(out.deltas)
        rejected += out.rejected
        for event_id, sign in zip(out.deltas.event_id, out.deltas.sign.tolist()):
            net[event_id] += sign

    paired = [(events[i], latest[i]) for i in events.keys() & latest.keys()]
    assert_counts_equal(counts, brute_force_counts(paired))
    assert {i for i, s in net.items() if s} == events.keys() & latest.keys()
    assert set(net.values()) <= {0, 1}
    assert join.counters.pending == len(events.keys() - latest.keys())
    assert join.counters.orphans == len(latest.keys() - events.keys())
    assert len(join) == len(events.keys() | latest.keys())
    assert all(r.rejection.code is RejectCode.CONFLICTING_DUPLICATE for r in rejected)
    conflicting = [r for r in order if isinstance(r, MatchEvent) and r != events[r.event_id]]
    assert [r.record for r in rejected if isinstance(r.record, MatchEvent)] == conflicting
    if restart == len(batches):  # running totals start afresh in a restored join
        assert join.counters.rejected == len(rejected)
        assert join.counters.paired == len(paired)


# ---- the rules, one by one -------------------------------------------------------------------

def event(event_id="e1", minutes=0, decision="match", score=0.9, **subject) -> MatchEvent:
    return MatchEvent(event_id, T0 + timedelta(minutes=minutes), "gate-a", "algo-1", "verification", score, 0.5,
                      decision, subject or {"sex": "F", "race": "B"})


def outcome(event_id="e1", truth="impostor", revision=0, days=1, prob=1.0, reviewer="r1") -> VerifiedOutcome:
    return VerifiedOutcome(event_id, T0 + timedelta(days=days), truth, reviewer, revision, prob)


def test_a_conflicting_duplicate_event_is_rejected_with_a_reason_and_the_first_stays():
    join = LabelJoin(CONFIG)
    first = join.update([event(score=0.9), outcome()])
    out = join.update([event(score=0.8), event(score=0.9)])
    (rejected,) = out.rejected
    assert rejected.record == event(score=0.8)
    assert rejected.rejection.code is RejectCode.CONFLICTING_DUPLICATE
    assert rejected.rejection.field == "event_id"
    assert "e1" in rejected.rejection.message and "different content" in rejected.rejection.message
    assert len(first.deltas) == 1 and len(out.deltas) == 0
    assert (join.counters.rejected, join.counters.duplicates) == (1, 1)


def test_the_same_event_with_another_key_order_or_offset_is_a_duplicate():
    join = LabelJoin(CONFIG)
    a = event(sex="F", race="B")
    b = MatchEvent("e1", a.occurred_at.astimezone(timezone(timedelta(hours=2))), "gate-a", "algo-1",
                   "verification", 0.9, 0.5, "match", {"race": "B", "sex": "F"})
    assert not join.update([a, b]).rejected
    assert join.counters.duplicates == 1


def test_an_outcome_revision_conflict_is_rejected_and_a_lower_revision_is_stale():
    join = LabelJoin(CONFIG)
    join.update([event(), outcome(revision=2)])
    out = join.update([outcome(revision=2, truth="genuine"), outcome(revision=1, truth="genuine"), outcome(revision=2)])
    (rejected,) = out.rejected
    assert rejected.rejection.code is RejectCode.CONFLICTING_DUPLICATE
    assert rejected.rejection.field == "revision"
    assert len(out.deltas) == 0
    c = join.counters
    assert (c.rejected, c.stale, c.duplicates, c.retractions) == (1, 1, 1, 0)


def test_a_higher_revision_retracts_the_old_contribution_then_applies_the_new():
    join = LabelJoin(CONFIG)
    join.update([event(decision="match"), outcome(truth="impostor", prob=0.5)])
    d = join.update([outcome(truth="genuine", revision=1, prob=0.25)]).deltas
    assert d.sign.tolist() == [-1, 1]
    assert d.genuine.tolist() == [False, True]
    assert d.weight.tolist() == [2.0, 4.0]
    assert d.revision.tolist() == [0, 1]
    assert d.error.tolist() == [True, False]
    assert d.event_id == ["e1", "e1"]
    assert join.counters.retractions == 1


def test_revisions_of_an_orphan_replace_it_silently_and_only_the_latest_pairs():
    join = LabelJoin(CONFIG)
    out = join.update([outcome(revision=0), outcome(revision=3, truth="genuine"), outcome(revision=1)])
    assert len(out.deltas) == 0 and join.counters.orphans == 1
    d = join.update([event()]).deltas
    assert (d.sign.tolist(), d.genuine.tolist(), d.revision.tolist()) == ([1], [True], [3])
    assert (join.counters.orphans, join.counters.pending, join.counters.paired) == (0, 0, 1)


def test_deltas_carry_the_event_time_bucket_not_the_verification_time():
    join = LabelJoin(CoreConfig(bucket_seconds=300))
    first = MatchEvent("e1", T0 + timedelta(minutes=7, microseconds=123457), "gate-a", "algo-1", "verification",
                       0.9, 0.5, "match", {"sex": "F", "race": "B"})
    d = join.update([first, outcome(days=9)]).deltas
    start = int((T0 + timedelta(minutes=5)).timestamp())
    assert d.bucket.tolist() == [start]
    assert d.occurred_at_us.tolist() == [(start + 120) * 1_000_000 + 123457]
    assert d.profiles[d.profile[0]] == Profile("gate-a", "algo-1", "verification", (("race", "B"), ("sex", "F")))


def test_unpaired_records_expire_after_the_ttl_and_are_counted():
    join = LabelJoin(CoreConfig(ttl_seconds=3600))
    join.update([event("pending", minutes=0), outcome("orphan", days=0), event("paired", minutes=30),
                 outcome("paired", days=0)])
    assert join.expire(T0 + timedelta(minutes=59)) == []
    assert sorted(join.expire(T0 + timedelta(minutes=60))) == ["orphan", "pending"]
    c = join.counters
    assert (c.pending, c.orphans, c.expired_pending, c.expired_orphans, c.expired) == (0, 0, 1, 1, 2)
    assert "paired" in join and "pending" not in join
    assert join.expire((T0 + timedelta(minutes=90)).timestamp()) == ["paired"]
    assert (c.retired, len(join)) == (1, 0)
    # a late outcome of an expired event is an orphan: no contribution without its event
    assert len(join.update([outcome("pending", days=2)]).deltas) == 0
    assert join.counters.orphans == 1


def test_activity_extends_the_life_of_a_paired_record():
    join = LabelJoin(CoreConfig(ttl_seconds=86_400))
    join.update([event(), outcome(days=0)])
    join.update([outcome(revision=1, days=3)])
    assert join.expire(T0 + timedelta(days=3, hours=23)) == []
    assert join.expire(T0 + timedelta(days=4)) == ["e1"]


def test_slots_freed_by_expiry_are_reused_and_state_stays_consistent():
    join = LabelJoin(CoreConfig(ttl_seconds=60), capacity=4)
    for round_ in range(5):
        ids = [f"r{round_}-{i}" for i in range(50)]
        join.update([event(i, minutes=round_ * 10) for i in ids])
        assert join.counters.pending == 50 and all(i in join for i in ids)
        assert len(join.expire(T0 + timedelta(minutes=round_ * 10 + 1))) == 50
    assert len(join) == 0 and join.counters.expired_pending == 250
    assert len(join._flags) < 100  # the slots of expired events were reused


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=300))
def test_the_slot_index_agrees_with_a_dict(operations):
    index, model = _SlotIndex(), {}
    for add, n in operations:
        event_id = f"id-{n}"
        if add and event_id not in model:
            model[event_id] = index.add(event_id)
        elif not add and event_id in model:
            assert index.remove(event_id) == model.pop(event_id)
        assert len(index) == len(model)
    assert all(index.find(f"id-{n}") == model.get(f"id-{n}", -1) for n in range(61))
    assert len(set(model.values())) == len(model)


@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "find"]), st.lists(st.integers(0, 80), max_size=40)),
                max_size=40))
def test_the_slot_index_bulk_operations_agree_with_a_dict_and_with_one_by_one(operations):
    bulk, single, model = _SlotIndex(), _SlotIndex(), {}
    for operation, numbers in operations:
        event_ids = list(dict.fromkeys(f"id-{n}" for n in numbers))
        if operation == "add":
            fresh = [event_id for event_id in event_ids if event_id not in model]
            slots = bulk.add_many(fresh, list(map(hash, fresh)))
            assert slots == [single.add(event_id) for event_id in fresh]  # freed slots reused in the same order
            model.update(zip(fresh, slots))
        elif operation == "remove":
            for event_id in event_ids:
                if event_id in model:
                    assert bulk.remove(event_id) == single.remove(event_id) == model.pop(event_id)
        else:
            assert bulk.find_many(event_ids, map(hash, event_ids)) == [model.get(i, -1) for i in event_ids]
        assert len(bulk) == len(model)
    everything = [f"id-{n}" for n in range(81)]
    assert bulk.find_many(everything, map(hash, everything)) == [model.get(i, -1) for i in everything]
    assert [bulk.find(i) for i in everything] == [model.get(i, -1) for i in everything]


held_events = st.builds(HeldEvent, st.integers(0, 2**32 - 1), st.integers(-(2**60), 2**60),
                        st.builds(Profile, st.text(min_size=1), st.text(min_size=1), st.sampled_from(["verification"]),
                                  st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1))).map(tuple)),
                        st.booleans(), st.just(False), st.just(0))
held_searches = st.builds(lambda ev, above: HeldEvent(ev.fingerprint, ev.occurred_at_us, ev.profile, ev.match, True, above),
                          held_events, st.integers(0, 4096))
held_outcomes = st.builds(HeldOutcome, st.integers(0, 2**32 - 1), st.integers(0, 2**31 - 1), st.booleans(),
                          st.floats(1e-9, 1.0), st.sampled_from([0, 1, 7, 4096]))


@given(st.builds(EventState, st.integers(-(2**40), 2**40), st.none() | held_events | held_searches,
                 st.none() | held_outcomes))
def test_event_state_survives_bytes(state):
    assert EventState.from_bytes(state.to_bytes()) == state


def test_state_of_and_restore_move_an_event_between_joins():
    source = LabelJoin(CONFIG)
    source.update([event(), outcome(revision=2, prob=0.5)])
    state = source.state_of("e1")
    assert state.outcome.revision == 2 and state.event.match
    target = LabelJoin(CONFIG)
    target.restore("e1", state)
    assert target.state_of("e1") == state
    assert len(target.update([outcome(revision=2, prob=0.5)]).deltas) == 0  # still a duplicate
    assert target.update([outcome(revision=3, truth="genuine")]).deltas.sign.tolist() == [-1, 1]
    target.restore("e1", None)
    assert "e1" not in target and target.state_of("e1") is None
    assert source.state_of("nope") is None


@pytest.mark.parametrize("records, gauges", [
    ([event()], (1, 0)),
    ([outcome()], (0, 1)),
    ([event(), outcome()], (0, 0)),
])
def test_restore_keeps_the_gauges(records, gauges):
    source = LabelJoin(CONFIG)
    source.update(records)
    target = LabelJoin(CONFIG)
    target.restore("e1", source.state_of("e1"))
    assert (target.counters.pending, target.counters.orphans) == gauges
    target.restore("e1", source.state_of("e1"))  # restoring twice replaces, it does not add
    assert (target.counters.pending, target.counters.orphans) == gauges


@settings(max_examples=150, deadline=None)
@given(streams(), st.data())
def test_a_join_rebuilt_from_its_batch_blobs_holds_the_same_states(stream, data):
    """The live worker's changelog: one export_states blob per batch (the ids the batch touched),
    compacted now and then into one blob of everything held. Replaying the blobs in order into a
    fresh join must give back every state (oracle: state_of of the original) and the gauges."""
    order, batches = stream
    compact_at = data.draw(st.integers(0, len(batches)), label="compact the log after batch")
    expire_at = data.draw(st.integers(0, len(batches)), label="expire after batch")
    source, log = LabelJoin(CONFIG), []
    for k, batch in enumerate(batches):
        source.update(batch)
        log.append(source.export_states(r.event_id for r in batch))
        if k == expire_at:
            gone = source.expire(T0 + timedelta(days=data.draw(st.integers(0, 60), label="expire day")))
            log.append(source.export_states(gone))
        if k == compact_at:
            log = [source.export_states()]
    replica = LabelJoin(CONFIG)
    for blob in log:
        replica.import_states(blob)
    ids = {r.event_id for r in order}
    assert {i: replica.state_of(i) for i in ids} == {i: source.state_of(i) for i in ids}
    assert (replica.counters.pending, replica.counters.orphans) == (source.counters.pending, source.counters.orphans)
    assert len(replica) == len(source)
    # and both go on identically: the same redeliveries are duplicates in both
    again_source, again_replica = source.update(order), replica.update(order)
    assert again_source.deltas.sign.tolist() == again_replica.deltas.sign.tolist()
    assert again_source.deltas.event_id == again_replica.deltas.event_id


def test_a_state_blob_refuses_foreign_or_truncated_bytes():
    join = LabelJoin(CONFIG)
    join.update([event(), outcome()])
    blob = join.export_states()
    with pytest.raises(ValueError, match="magic"):
        LabelJoin(CONFIG).import_states(b"{}" + blob)
    with pytest.raises(ValueError):
        LabelJoin(CONFIG).import_states(blob[:-3])
    assert LabelJoin(CONFIG).import_states(join.export_states([])) == 0


# ---- the columnar update against the one-by-one reference -----------------------------------

def replace(record, **changes):
    """A copy of an event or outcome with ``changes`` (dataclass or msgspec Struct alike)."""
    names = getattr(type(record), "__struct_fields__", None) or [f.name for f in fields(record)]
    return type(record)(**{name: getattr(record, name) for name in names} | changes)


PLACES = [("gate-a", "algo-1", "verification"), ("gate-b", "algo-2", "identification")]


@st.composite
def event_versions(draw, event_id: str) -> list[MatchEvent]:
    """An event, copies of it that are the same content (subject key order, UTC offset) and
    conflicting versions (one field changed)."""
    subject = draw(subjects)
    first = MatchEvent(
        event_id=event_id,
        occurred_at=T0 + timedelta(seconds=draw(st.integers(0, 3 * 3600)), microseconds=draw(st.integers(0, 2))),
        deployment=(place := draw(st.sampled_from(PLACES)))[0], algorithm=place[1], mode=place[2],
        score=draw(st.floats(0, 1)), threshold=0.5, decision=draw(st.sampled_from(["match", "non_match"])),
        subject=subject,
        reference=draw(st.none() | st.just({"gallery": "g1", "template": "t9"})),
        context=draw(st.none() | st.just({"camera": 3, "lighting": "dim"})),
    )
    if first.mode == "identification" and draw(st.booleans()):
        first = replace(first, **draw(candidate_lists()))
    same = [
        replace(first, subject=dict(reversed(list(subject.items())))),
        replace(first, occurred_at=first.occurred_at.astimezone(timezone(timedelta(hours=-5)))),
    ]
    conflicting = [
        replace(first, score=first.score / 2 + 0.25 if first.score != 0.5 else 0.1),
        replace(first, occurred_at=first.occurred_at + timedelta(microseconds=1)),
        replace(first, subject={**subject, "sex": "M" if subject["sex"] == "F" else "F"}),
        replace(first, context={"camera": 4}),
    ]
    if first.candidates is not None:
        conflicting.append(replace(first, gallery_size=(first.gallery_size or 0) + 1))
        conflicting.append(replace(first, candidates=first.candidates + (Candidate(len(first.candidates) + 1, 0.0, "z"),)))
    return [first, first, *same, *draw(st.lists(st.sampled_from(conflicting), max_size=2))]


@st.composite
def outcome_versions(draw, event_id: str) -> list[VerifiedOutcome]:
    versions = []
    for revision in draw(st.lists(st.integers(0, 3), max_size=4)):
        versions.append(VerifiedOutcome(
            event_id, T0 + timedelta(hours=draw(st.integers(1, 24 * 20)), microseconds=draw(st.integers(0, 1))),
            draw(st.sampled_from(["genuine", "impostor"])), draw(st.sampled_from(["r1", "r2"])), revision,
            draw(st.sampled_from([1.0, 0.5, 0.25, 0.1])), mate_rank=draw(st.sampled_from([None, 1, 2]))))
    return versions


@st.composite
def mixed_streams(draw):
    """Runs of events and runs of outcomes of a few ids (so ids repeat within runs), in chunks."""
    n_ids = draw(st.integers(1, 30))
    events = {i: draw(event_versions(f"x{i}")) for i in range(n_ids)}
    outcomes = {i: draw(outcome_versions(f"x{i}")) for i in range(n_ids)}
    outcomes = {i: versions for i, versions in outcomes.items() if versions}
    order = []
    for kind in draw(st.lists(st.sampled_from(["events", "outcomes"]), max_size=8)):
        pool = events if kind == "events" or not outcomes else outcomes
        length = draw(st.integers(1, 40))
        keys = draw(st.lists(st.sampled_from(sorted(pool)), min_size=length, max_size=length))
        order += [draw(st.sampled_from(pool[key])) for key in keys]
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    return [order[a:b] for a, b in zip([0] + cuts, cuts + [len(order)])]


def rows_by_id(out) -> dict[str, list[tuple]]:
    d = out.deltas
    rows = defaultdict(list)
    for k, event_id in enumerate(d.event_id):
        rows[event_id].append((int(d.sign[k]), bool(d.genuine[k]), float(d.weight[k]), int(d.revision[k]),
                               int(d.bucket[k]), int(d.occurred_at_us[k]), d.profiles[d.profile[k]], bool(d.match[k])))
    return dict(rows)


def rejections(out) -> Counter:
    return Counter((id(r.record), r.rejection) for r in out.rejected)


def assert_same_join(tested: LabelJoin, reference: LabelJoin, event_ids: set[str]) -> None:
    assert {i: tested.state_of(i) for i in event_ids} == {i: reference.state_of(i) for i in event_ids}
    assert asdict(tested.counters) == asdict(reference.counters)
    assert set(tested.held_ids()) == set(reference.held_ids())
    assert tested.latest_activity() == reference.latest_activity()
    copies = LabelJoin(CONFIG), LabelJoin(CONFIG)
    copies[0].import_states(tested.export_states())
    copies[1].import_states(reference.export_states())
    assert {i: copies[0].state_of(i) for i in event_ids} == {i: copies[1].state_of(i) for i in event_ids}


@settings(max_examples=200, deadline=None)
@given(mixed_streams(), st.data())
def test_update_gives_what_applying_the_records_one_by_one_gives(chunks, data):
    """Same states, counters, rows (per event id, in order) and rejected records, whatever the
    chunking, the shortest run handled in columns, and the path each chunk takes in the join."""
    min_bulk = data.draw(st.sampled_from([1, 2, 8]), label="shortest run handled in columns")
    saved, join_module._MIN_BULK = join_module._MIN_BULK, min_bulk
    try:
        tested, reference = LabelJoin(CONFIG, capacity=4), LabelJoin(CONFIG, capacity=4)
        event_ids = {r.event_id for chunk in chunks for r in chunk}
        for chunk in chunks:
            one_by_one = data.draw(st.booleans(), label="this chunk one by one in the tested join too")
            got = (tested._update_one_by_one if one_by_one else tested.update)(chunk)
            expected = reference._update_one_by_one(chunk)
            assert rows_by_id(got) == rows_by_id(expected)
            assert rejections(got) == rejections(expected)
            assert_same_join(tested, reference, event_ids)
            if data.draw(st.booleans(), label="expire after this chunk"):  # frees slots for reuse
                now = T0 + timedelta(days=data.draw(st.integers(0, 25), label="expiry day"))
                assert sorted(tested.expire(now)) == sorted(reference.expire(now))
    finally:
        join_module._MIN_BULK = saved


def test_a_long_stream_in_columns_matches_the_one_by_one_reference():
    """Thousands of ids in runs of 100, as the worker sees them: mostly new slots and pairs."""
    rng = np.random.default_rng(3)
    events = [MatchEvent(f"ev{i}", T0 + timedelta(microseconds=int(rng.integers(0, 10**10))), PLACES[i % 2][0],
                         PLACES[i % 2][1], PLACES[i % 2][2], float(rng.random()), 0.5,
                         "match" if rng.random() < 0.5 else "non_match",
                         {"race": "A", "sex": "F"} if i % 3 else {"sex": "F", "race": "A"}) for i in range(3000)]
    outcomes = [VerifiedOutcome(f"ev{i}", T0 + timedelta(days=1, seconds=i), "genuine" if i % 5 else "impostor",
                                f"r{i % 7}", int(rng.integers(0, 3)), 0.5) for i in rng.permutation(3300).tolist()]
    outcomes += [replace(outcomes[k], revision=int(rng.integers(0, 4)), truth="impostor") for k in range(0, 3300, 3)]
    batches = [events[k:k + 100] for k in range(0, 3000, 100)] + [outcomes[k:k + 100] for k in range(0, 4400, 100)]
    order = [batches[k] for k in rng.permutation(len(batches)).tolist()]
    tested, reference = LabelJoin(CONFIG), LabelJoin(CONFIG)
    for batch in order:
        got, expected = tested.update(batch), reference._update_one_by_one(batch)
        assert rows_by_id(got) == rows_by_id(expected)
        assert rejections(got) == rejections(expected)
    assert_same_join(tested, reference, {f"ev{i}" for i in range(3300)})
    c = tested.counters
    assert c.paired > 1000 and c.stale > 0 and c.retractions > 0 and c.rejected > 0 and c.duplicates > 0


def fingerprints(records: list, columns: bool) -> list[int]:
    """The fingerprint each record leaves in a fresh join (each under its own event id)."""
    saved, join_module._MIN_BULK = join_module._MIN_BULK, 1
    try:
        join = LabelJoin(CONFIG)
        records = [replace(r, event_id=f"f{k}") for k, r in enumerate(records)]
        (join.update if columns else join._update_one_by_one)(records)
        states = [join.state_of(r.event_id) for r in records]
        return [s.event.fingerprint if s.event is not None else s.outcome.fingerprint for s in states]
    finally:
        join_module._MIN_BULK = saved


def test_fingerprints_tell_every_field_apart_and_ignore_key_order_and_utc_offset():
    base = MatchEvent("e", T0 + timedelta(microseconds=7), "gate-a", "algo-1", "verification", 0.75, 0.5, "match",
                      {"sex": "F", "race": "B"}, {"gallery": "g1", "template": "t9"}, {"camera": 3, "lit": [1, 2]})
    changed = [
        replace(base, score=0.7500000000000001), replace(base, threshold=0.6), replace(base, decision="non_match"),
        replace(base, occurred_at=base.occurred_at + timedelta(microseconds=1)), replace(base, deployment="gate-b"),
        replace(base, algorithm="algo-2"), replace(base, mode="identification"),
        replace(base, subject={"sex": "F", "race": "C"}), replace(base, subject={"sex": "F", "race": "B", "age": "70+"}),
        replace(base, reference=None), replace(base, reference={"gallery": "g2", "template": "t9"}),
        replace(base, context=None), replace(base, context={"camera": 3, "lit": [2, 1]}),
        replace(base, reference=None, context=None), replace(base, score=0.5, threshold=0.75),
    ]
    same = [
        replace(base, subject={"race": "B", "sex": "F"}), replace(base, reference={"template": "t9", "gallery": "g1"}),
        replace(base, context={"lit": [1, 2], "camera": 3}),
        replace(base, occurred_at=base.occurred_at.astimezone(timezone(timedelta(hours=5, minutes=30)))),
    ]
    outcome_base = VerifiedOutcome("e", T0 + timedelta(days=1, microseconds=3), "genuine", "r1", 2, 0.25)
    outcome_changed = [
        replace(outcome_base, verified_at=outcome_base.verified_at + timedelta(microseconds=1)),
        replace(outcome_base, truth="impostor"), replace(outcome_base, reviewer="r2"),
        replace(outcome_base, inclusion_prob=0.5),
    ]
    records = [base, *changed, *same, outcome_base, *outcome_changed, replace(outcome_base, revision=3)]
    for columns in (False, True):
        values = fingerprints(records, columns)
        assert values == fingerprints(records, not columns)  # the bulk and one-by-one paths agree
        events, outcomes = values[:1 + len(changed) + len(same)], values[1 + len(changed) + len(same):]
        assert len(set(events[: 1 + len(changed)])) == 1 + len(changed)
        assert set(events[1 + len(changed):]) == {events[0]}
        assert len(set(outcomes[:-1])) == len(outcomes) - 1 and outcomes[-1] == outcomes[0]  # revision aside


def test_fingerprints_are_the_same_in_another_process():
    code = (
        "from datetime import datetime, timezone\n"
        "from fairwatch.contracts.records import MatchEvent, VerifiedOutcome\n"
        "from fairwatch.core.join import LabelJoin\n"
        "t = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone.utc)\n"
        "ev = MatchEvent('e', t, 'gate-a', 'algo-1', 'verification', 0.75, 0.5, 'match', {'sex': 'F', 'race': 'B'},"
        " {'gallery': 'g1'}, {'camera': 3})\n"
        "oc = VerifiedOutcome('e', t, 'genuine', 'r1', 0, 0.5)\n"
        "s = LabelJoin()._update_one_by_one([ev, oc]) and None\n"
        "j = LabelJoin(); j._update_one_by_one([ev, oc]); state = j.state_of('e')\n"
        "print(state.event.fingerprint, state.outcome.fingerprint)\n"
    )
    values = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        values.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                  check=True).stdout)
    assert len(values) == 1


def test_a_blob_written_before_identification_searches_is_still_read():
    """FWJS1 blobs (eight columns) from a worker of the previous version restore the same states."""
    from fairwatch.core import blob_framing

    join = LabelJoin(CONFIG)
    join.update([event("e1"), outcome("e1", prob=0.5), event("e2", decision="non_match"), outcome("e3", revision=4)])
    parts = blob_framing.unpack(join.export_states(), b"FWJS2", 12, "join state")
    old = blob_framing.pack(b"FWJS1", parts[:10])
    restored = LabelJoin(CONFIG)
    assert restored.import_states(old) == 3
    assert {i: restored.state_of(i) for i in ("e1", "e2", "e3")} == {i: join.state_of(i) for i in ("e1", "e2", "e3")}


def search(event_id: str, scores: list[float], threshold: float = 80.0, **subject) -> MatchEvent:
    candidates = tuple(Candidate(rank, s, f"face-{event_id}-{rank}") for rank, s in enumerate(scores, start=1))
    top = scores[0] if scores else 10.0
    return MatchEvent(event_id, T0, "station", "algo-1", "identification", top, threshold,
                      "match" if top >= threshold else "non_match", subject or {"sex": "F"},
                      candidates=candidates, list_length=5, gallery_size=10_000)


def mated(event_id: str, mate_rank: int | None, revision: int = 0) -> VerifiedOutcome:
    return VerifiedOutcome(event_id, T0 + timedelta(days=1), "genuine", "r1", revision, 1.0, mate_rank=mate_rank)


def test_a_mated_search_is_identified_only_when_its_mate_is_listed_at_or_above_the_threshold():
    """Hand-computed: scores 91, 84.5, 62 at threshold 80 put two candidates above it."""
    join = LabelJoin(CONFIG)
    scores = [91.0, 84.5, 62.0]
    cases = {"rank1": 1, "rank2": 2, "rank3-below": 3, "absent": None}
    out = join.update([search(i, scores) for i in cases] + [mated(i, rank) for i, rank in cases.items()])
    identified = dict(zip(out.deltas.event_id, out.deltas.match.tolist()))
    assert identified == {"rank1": True, "rank2": True, "rank3-below": False, "absent": False}
    # a non-mated search is a false positive when anything is listed above the threshold
    out = join.update([search("nm", scores), search("nm-empty", []),
                       VerifiedOutcome("nm", T0, "impostor", "r1", 0, 1.0),
                       VerifiedOutcome("nm-empty", T0, "impostor", "r1", 0, 1.0)])
    assert dict(zip(out.deltas.event_id, out.deltas.error.tolist())) == {"nm": True, "nm-empty": False}
    # a revision that moves the mate out of the list takes back "identified" and adds "missed"
    out = join.update([mated("rank1", None, revision=1)])
    assert list(zip(out.deltas.sign.tolist(), out.deltas.match.tolist())) == [(-1, True), (1, False)]
    # the same decision without a list keeps the old reading: the system's decision is the mate's
    plain = replace(search("plain", scores), candidates=None, list_length=None, gallery_size=None)
    out = join.update([plain, mated("plain", None)])
    assert out.deltas.match.tolist() == [True]
