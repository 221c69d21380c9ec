"""The verified scores per group, read from the store, against the raw records: the latest revision
of each primary verdict counts (a correction that arrives after the first was stored replaces it),
an independent review never counts, weights are 1 / inclusion_prob, and the groups are those the
sink counts (overall, each attribute, the intersection). A mated identification search is judged on
its mate's own score (the candidate its counted verdict names), one whose mate was not listed has
none and comes back apart, one without a candidate list on its own score."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.store.migrations import migrate
from fairwatch.store.verified_scores import read_verified_scores, verified_thresholds
from fairwatch.testing.workload import T0, contrary_reviews, make_workload, store_workload, verified_score_records

CONFIG = CoreConfig(intersections=(("sex", "race"),))


@pytest.fixture(scope="module")
def workload():
    return make_workload(2_500, seed=26, hours=2, revision_share=0.08, sampled_share=0.4, duplicate_share=0.02)


def test_verified_scores_equal_the_raw_records(migrated_store, workload):
    reviews = contrary_reviews(workload, 1)
    store_workload(migrated_store, workload, CONFIG, reviews)
    (reviewed,), = migrated_store.query("SELECT count() FROM independent_reviews FINAL")
    assert reviewed == len(reviews) > 50
    windows = [(T0, T0 + timedelta(hours=2)), (T0 + timedelta(minutes=30), T0 + timedelta(minutes=91))]
    for start, end in windows:
        want = verified_score_records(workload, start, end)
        found = read_verified_scores(migrated_store, start, end, CONFIG.intersections)
        got, cuts = {}, set()
        for key, group in found.items():
            got[(*key, "impostor")] = sorted(zip(group.impostor_scores.tolist(), group.impostor_weights.tolist()))
            # identification: the mate's own score; a mate not listed has none (the oracle's -inf)
            missed = [(float("-inf"), w) for w in group.genuine_missed.tolist()]
            got[(*key, "genuine")] = sorted(missed + list(zip(group.genuine_scores.tolist(),
                                                              group.genuine_weights.tolist())))
            assert (group.missed_cut is None) == (not missed) and (key.mode == "identification" or not missed)
            cuts.add(group.missed_cut)
        got = {k: v for k, v in got.items() if v}
        assert got == want
        assert cuts == {None, 0.6}  # the workload's threshold
    # the corrections matter: counting first verdicts instead would read other scores per truth
    assert verified_score_records(workload, *windows[0], pick=min) != verified_score_records(workload, *windows[0])
    # a scope narrows the read to one deployment and algorithm
    scoped = read_verified_scores(migrated_store, *windows[0], (), deployment="site-1", algorithm="algo-1")
    assert scoped and {k[:2] for k in scoped} == {("site-1", "algo-1")}
    assert {k.attribute for k in scoped} == {"*", "sex", "race", "age"}
    assert read_verified_scores(migrated_store, *windows[0], (), algorithm="algo-other") == {}
    thresholds = verified_thresholds(migrated_store, *windows[0])
    assert thresholds == {scope: [0.6] for scope in {k[:3] for k in found}}


def test_an_empty_window_reads_nothing(migrated_store):
    migrate(migrated_store)
    assert read_verified_scores(migrated_store, T0, T0 + timedelta(hours=1), CONFIG.intersections) == {}
