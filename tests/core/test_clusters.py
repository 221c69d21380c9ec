"""Design effects of clustered comparisons (fairwatch.core.clusters): a case worked by hand, the
cases that must change nothing (no keys, every key alone, errors spread evenly over the clusters),
and a Monitor whose window cuts clusters and whose verdicts are corrected."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
from fairwatch.contracts.records import MatchEvent, VerifiedOutcome
from fairwatch.core.clusters import cluster_moments, design_effects
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.layout import GroupKey
from fairwatch.core.monitor import Monitor
from scipy import stats

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def block(errors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    y = errors.astype(bool)
    return np.array([[len(y), y.sum(), weights.sum(), weights[y].sum(), (weights**2).sum(), (weights[y] ** 2).sum()]])


def test_a_case_worked_by_hand():
    # 3 clusters: {err, err}, {ok, ok}, {err, ok}, weights 1; p = 1/2. Cluster residuals A - pB:
    # 1, -1, 0 -> var_c = 3/2 * 2 / 36 = 1/12; comparisons alone: 6 residuals of +-1/2 ->
    # var_i = 6/5 * 6/4 / 36 = 1/20; deff = 20/12 = 5/3. t factor with K - 1 = 2, n - 1 = 5.
    clusters = np.array(["a", "a", "b", "b", "c", "c"])
    errors = np.array([1, 1, 0, 0, 1, 0], bool)
    moments = cluster_moments(clusters, errors, np.ones(6))
    # A^2 - sum y: 4-2, 0, 1-1; A B - sum y: 4-2, 0, 2-1; B^2 - n_k: 2, 2, 2; merged 3
    assert moments.tolist() == [2.0, 3.0, 6.0, 3.0]
    factor, deff = design_effects(block(errors, np.ones(6)), moments[None], 0.95)
    assert math.isclose(deff[0], 5 / 3, rel_tol=1e-12)
    t_ratio = stats.t.ppf(0.975, 5) / stats.t.ppf(0.975, 2)
    assert math.isclose(factor[0], 5 / 3 / t_ratio**2, rel_tol=1e-12)


def test_no_keys_or_lone_keys_change_nothing():
    rng = np.random.default_rng(3)
    errors = rng.random(400) < 0.1
    weights = np.where(rng.random(400) < 0.5, 1.0, 4.0)
    for clusters in (np.full(400, ""), np.array([f"k{i}" for i in range(400)])):
        moments = cluster_moments(clusters, errors, weights)
        assert moments.tolist() == [0.0, 0.0, 0.0, 0.0]
        assert design_effects(block(errors, weights), moments[None], 0.95)[0].tolist() == [1.0]


def test_errors_spread_evenly_never_narrow_the_interval():
    # every cluster of four has exactly one error: less variable than binomial (own deff < 1)
    errors = np.tile([True, False, False, False], 50)
    clusters = np.repeat(np.arange(50), 4).astype(str)
    moments = cluster_moments(clusters, errors, np.ones(200))
    factor, deff = design_effects(block(errors, np.ones(200)), moments[None], 0.95)
    assert (factor[0], deff[0]) == (1.0, 1.0)


def test_frame_without_clustering_is_unchanged_and_clustering_widens():
    rows = np.array([[500, 25, 500, 25, 500, 25, 300, 30, 300, 30, 300, 30]], float)
    keys = [GroupKey("gate", "algo", "verification", "*", "*")]
    plain = GroupFrame.from_counts(keys, rows).overall["gate", "algo", "verification"]
    zeros = GroupFrame.from_counts(keys, rows, clustering={keys[0]: np.zeros((2, 4))}).overall["gate", "algo",
                                                                                                 "verification"]
    assert plain == zeros
    # impostor errors in 5 clusters of 5 among 100 clusters of 5 comparisons
    errors = np.zeros(500, bool)
    errors[:25] = True
    moments = cluster_moments(np.repeat(np.arange(100), 5).astype(str), errors, np.ones(500))
    clustered = GroupFrame.from_counts(keys, rows, clustering={keys[0]: np.array([moments, np.zeros(4)])}).overall[
        "gate", "algo", "verification"]
    assert clustered.fmr.design_effect > 4 and clustered.fnmr == plain.fnmr
    assert clustered.fmr.low < plain.fmr.low and clustered.fmr.high > plain.fmr.high
    assert clustered.fmr.interval(0.95) == (clustered.fmr.low, clustered.fmr.high)


def _event(i: int, cluster: str | None, minute: int) -> MatchEvent:
    return MatchEvent(f"e{i}", T0 + timedelta(minutes=minute), "gate", "algo", "verification", 0.7, 0.5, "match",
                      {"sex": "F"}, cluster_id=cluster)


def test_monitor_window_cuts_clusters_and_follows_corrections():
    monitor = Monitor(CoreConfig(min_comparisons=1))
    # subject s1: 3 impostor comparisons at minutes 0, 1, 2, all false matches; s2: 3 at 0, 1, 2,
    # none (later corrected: the first is genuine); e9: no key
    events = [_event(i, f"s{1 + i // 3}", i % 3) for i in range(6)] + [_event(9, None, 1)]
    outcomes = [VerifiedOutcome(e.event_id, T0 + timedelta(hours=1), "impostor", "r1", 0) for e in events]
    monitor.update(events + outcomes)
    monitor.update([VerifiedOutcome("e3", T0 + timedelta(hours=2), "genuine", "r1", 1)])
    # all decisions are "match": impostors are false matches. Window [minute 1, minute 3): s1 has
    # e1, e2 (A = B = 2), s2 has e4, e5 (A = B = 2); e9 alone. extra_aa = 4 - 2 per cluster.
    window = monitor.clusters.window((T0 + timedelta(minutes=1)).timestamp(), (T0 + timedelta(minutes=3)).timestamp())
    key = GroupKey("gate", "algo", "verification", "sex", "F")
    assert window[key][0].tolist() == [4.0, 4.0, 4.0, 2.0]
    # the whole window: s1 has 3 (A = B = 3), s2 has 2 impostors left (e3 is genuine now) and e3
    # alone among s2's genuine comparisons adds nothing
    whole = monitor.clusters.window(-math.inf, math.inf)[key]
    assert whole[0].tolist() == [(9 - 3) + (4 - 2), (9 - 3) + (4 - 2), (9 - 3) + (4 - 2), 2 + 1]
    assert whole[1].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_rank_clusters_give_each_ranks_moments():
    from fairwatch.core.identification_ranks import RankClusters, RankTally

    rng = np.random.default_rng(8)
    clusters = rng.integers(0, 30, 300).astype(str)
    ranks = np.where(rng.random(300) < 0.2, 0, rng.integers(1, 6, 300))
    weights = np.where(rng.random(300) < 0.5, 1.0, 2.5)
    keyed = RankClusters.of(clusters.tolist(), ranks, weights, size=6)
    for rank in range(1, 7):
        miss = (ranks == 0) | (ranks > rank)
        assert np.allclose(keyed.moments([rank])[0], cluster_moments(clusters, miss, weights), rtol=1e-12, atol=1e-9)
    # unkeyed searches add nothing: a tally with half the keys blank has the keyed half's sums
    blank = np.where(np.arange(300) % 2 == 0, clusters, "")
    tally = RankTally.of(ranks, weights, longest=5, clusters=blank)
    half = RankClusters.of(clusters[::2].tolist(), ranks[::2], weights[::2], size=6)
    assert np.allclose(tally.clusters.moments(np.arange(1, 6)), half.moments(np.arange(1, 6)))
