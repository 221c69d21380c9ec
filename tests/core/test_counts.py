"""Per-group bucket counts: weighted sums, windows and group expansion against brute force."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.counts import BucketCounts, _CellIndex, profile_groups
from fairwatch.core.join import LabeledDeltas, Profile
from fairwatch.core.layout import COL, GroupKey
from hypothesis import given, settings
from hypothesis import strategies as st

BUCKET = 60
T0 = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp())
INTERSECTIONS = (("sex", "race"), ("race", "age"))
CONFIG = CoreConfig(bucket_seconds=BUCKET, intersections=INTERSECTIONS)

profiles = st.builds(
    lambda deployment, algorithm, mode, subject: Profile(deployment, algorithm, mode, tuple(sorted(subject.items()))),
    st.sampled_from(["gate-a", "gate-b"]),
    st.sampled_from(["algo-1", "algo-2"]),
    st.sampled_from(["verification", "identification"]),
    st.fixed_dictionaries({}, optional={"sex": st.sampled_from("FM"), "race": st.sampled_from("ABC"),
                                        "age": st.sampled_from(["young", "old"])}).filter(bool),
)


@st.composite
def delta_batches(draw):
    """Batches of labeled deltas over one shared, growing profile table (as the join emits them)."""
    table = draw(st.lists(profiles, min_size=1, max_size=8, unique=True))
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 40))
        rows = draw(st.lists(st.tuples(
            st.integers(0, len(table) - 1), st.integers(0, 30), st.booleans(), st.booleans(),
            st.sampled_from([1.0, 2.0, 4.0, 10.0, 1 / 0.3]), st.sampled_from([1, 1, -1])), min_size=n, max_size=n))
        batches.append(LabeledDeltas(
            profiles=table,
            event_id=[f"e{i}" for i in range(n)],
            profile=np.array([r[0] for r in rows], np.int32),
            occurred_at_us=np.array([(T0 + r[1] * BUCKET) * 1_000_000 for r in rows], np.int64),
            bucket=np.array([T0 + r[1] * BUCKET for r in rows], np.int64),
            match=np.array([r[2] for r in rows], bool),
            genuine=np.array([r[3] for r in rows], bool),
            weight=np.array([r[4] for r in rows], np.float64),
            sign=np.array([r[5] for r in rows], np.int8),
            revision=np.zeros(n, np.int32),
        ))
    return batches


def brute_force(batches: list[LabeledDeltas]) -> dict[tuple, list[float]]:
    """(group key, bucket) -> 12 sums, one delta and one group at a time."""
    cells: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 12)
    for d in batches:
        for i in range(len(d)):
            profile = d.profiles[int(d.profile[i])]
            labels = dict(profile.subject)
            keys = [(*profile[:3], "*", "*")] + [(*profile[:3], a, g) for a, g in profile.subject]
            for combo in INTERSECTIONS:
                if all(a in labels for a in combo):
                    keys.append((*profile[:3], "&".join(combo), "&".join(labels[a] for a in combo)))
            genuine, match = bool(d.genuine[i]), bool(d.match[i])
            error = float((not genuine and match) or (genuine and not match))
            s, w = float(d.sign[i]), float(d.weight[i])
            base = 6 if genuine else 0
            for key in keys:
                row = cells[(key, int(d.bucket[i]))]
                for j, value in enumerate((s, s * error, s * w, s * w * error, s * w * w, s * w * w * error)):
                    row[base + j] += value
    return cells


@settings(max_examples=150, deadline=None)
@given(delta_batches(), st.data())
def test_bucket_rows_and_windows_equal_brute_force(batches, data):
    counts = BucketCounts(CONFIG, capacity=4)
    for d in batches:
        counts.update(d)
    expected = brute_force(batches)

    got = {(tuple(r.key), r.bucket_start): r.row for r in counts.rows()}
    assert got.keys() == expected.keys()
    for cell, row in got.items():
        np.testing.assert_allclose(row, expected[cell], rtol=1e-12, atol=1e-9)

    start = T0 + data.draw(st.integers(-2, 32)) * BUCKET
    end = start + data.draw(st.integers(0, 34)) * BUCKET
    deployment = data.draw(st.sampled_from([None, "gate-a", "gate-b"]))
    algorithm = data.draw(st.sampled_from([None, "algo-1"]))
    window = counts.window(start, end, deployment=deployment, algorithm=algorithm)
    summed: dict[tuple, np.ndarray] = {}
    for (key, bucket), row in expected.items():
        if start <= bucket < end and deployment in (None, key[0]) and algorithm in (None, key[1]):
            summed[key] = summed.get(key, 0) + np.array(row)
    assert [tuple(k) for k in window.keys] == sorted(summed)
    assert window.rows.shape == (len(summed), 12)
    for key, row in zip(window.keys, window.rows):
        np.testing.assert_allclose(row, summed[tuple(key)], rtol=1e-12, atol=1e-9)
        assert window.row(key) is not None


def test_weighted_columns_hold_horvitz_thompson_sums():
    table = [Profile("g", "a", "verification", (("sex", "F"),))]
    deltas = LabeledDeltas(table, ["e1", "e2", "e3"], np.zeros(3, np.int32), np.full(3, T0 * 10**6),
                           np.full(3, T0, np.int64), match=np.array([True, False, True]),
                           genuine=np.array([False, False, True]), weight=np.array([2.0, 10.0, 4.0]),
                           sign=np.ones(3, np.int8), revision=np.zeros(3, np.int32))
    counts = BucketCounts(CONFIG)
    counts.update(deltas)
    row = counts.window(T0, T0 + BUCKET).row(GroupKey("g", "a", "verification", "sex", "F"))
    assert row[COL["impostor_n"]] == 2 and row[COL["impostor_errors"]] == 1
    assert row[COL["impostor_w"]] == 12 and row[COL["impostor_w_err"]] == 2
    assert row[COL["impostor_w2"]] == 104 and row[COL["impostor_w2_err"]] == 4
    assert row[COL["genuine_n"]] == 1 and row[COL["genuine_errors"]] == 0 and row[COL["genuine_w2"]] == 16


def test_profile_groups_follow_the_configured_intersections_and_skip_incomplete_ones():
    profile = Profile("g", "a", "identification", (("age", "old"), ("race", "B"), ("sex", "F")))
    keys = profile_groups(profile, (("sex", "race"), ("race", "disability"), ("age", "sex")))
    assert [(k.attribute, k.group) for k in keys] == [
        ("*", "*"), ("age", "old"), ("race", "B"), ("sex", "F"), ("sex&race", "F&B"), ("age&sex", "old&F"),
    ]
    assert all(k[:3] == ("g", "a", "identification") for k in keys)


def test_drain_changed_returns_each_touched_cell_once_with_its_total():
    table = [Profile("g", "a", "verification", (("sex", "F"),))]

    def one(bucket, sign=1):
        return LabeledDeltas(table, ["e"], np.zeros(1, np.int32), np.array([bucket * 10**6]), np.array([bucket]),
                             np.array([True]),
                             np.array([False]), np.ones(1), np.array([sign], np.int8), np.zeros(1, np.int32))

    counts = BucketCounts(CONFIG)
    counts.update(one(T0))
    counts.update(one(T0))
    assert sorted((r.key.attribute, r.bucket_start, r.row[0]) for r in counts.drain_changed()) == [
        ("*", T0, 2.0), ("sex", T0, 2.0)]
    assert counts.drain_changed() == []
    counts.update(one(T0 + BUCKET, sign=-1))
    assert {(r.bucket_start, r.row[0]) for r in counts.drain_changed()} == {(T0 + BUCKET, -1.0)}
    assert len(counts) == 4


@pytest.mark.parametrize("when", [datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 59,
                                                                                   tzinfo=timezone.utc)])
def test_extreme_event_times_get_their_own_cells(when):
    table = [Profile("g", "a", "verification", (("sex", "F"),))]
    bucket = int(when.timestamp()) // BUCKET * BUCKET
    deltas = LabeledDeltas(table, ["e", "f"], np.zeros(2, np.int32), np.array([bucket, T0]) * 10**6,
                           np.array([bucket, T0], np.int64),
                           np.array([True, True]), np.array([False, False]), np.ones(2), np.ones(2, np.int8),
                           np.zeros(2, np.int32))
    counts = BucketCounts(CONFIG)
    counts.update(deltas)
    assert sorted(r.bucket_start for r in counts.rows()) == sorted([bucket, bucket, T0, T0])
    assert counts.window(bucket, bucket + BUCKET).rows[:, 0].tolist() == [1.0, 1.0]


@given(st.lists(st.lists(st.integers(0, 2**62), max_size=200), max_size=6))
def test_the_cell_index_agrees_with_a_dict(batches):
    index, model = _CellIndex(capacity=4), {}
    for batch in batches:
        keys = np.array(batch, np.int64)
        assert index.lookup(keys).tolist() == [model.get(k, -1) for k in batch]
        new = np.array(sorted(set(batch) - model.keys()), np.int64)
        cells = np.arange(len(model), len(model) + len(new))
        index.insert(new, cells)
        model.update(zip(new.tolist(), cells.tolist()))
    everything = np.array(list(model), np.int64)
    assert index.lookup(everything).tolist() == list(model.values())
