"""Drift detectors: likelihood ratios against scipy, the SR recursion against its defining sum,
the false-alarm rate under the null against the configured budget, and detection of a change."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairwatch.detect.detectors import (
    DEFAULT_GRID,
    AdwinErrorDetector,
    Baseline,
    DisparityDetector,
    MixtureShiryaevRoberts,
    RateDriftDetector,
    ScoreMeanPageHinkley,
    bernoulli_kl,
    cusum_information_bound,
    disparity_log_lr,
    rate_log_lr,
    threshold_for_budget,
)
from scipy import stats


def test_rate_log_lr_is_the_binomial_likelihood_ratio():
    rng = np.random.default_rng(5)
    n = rng.integers(0, 400, 50).astype(float)
    x = np.floor(n * rng.uniform(0, 0.1, 50))
    edge = 0.01
    got = rate_log_lr(x, n, edge)
    for k, r in enumerate(DEFAULT_GRID):
        want = stats.binom.logpmf(x, n, edge * r) - stats.binom.logpmf(x, n, edge)
        np.testing.assert_allclose(got[:, k], want, rtol=1e-9, atol=1e-9)


def test_disparity_log_lr_is_the_conditional_binomial_ratio():
    rng = np.random.default_rng(6)
    n_g, n_r = rng.integers(1, 5000, 40).astype(float), rng.integers(1, 5000, 40).astype(float)
    x_g, x_r = rng.integers(0, 20, 40).astype(float), rng.integers(0, 20, 40).astype(float)
    ratio = 1.25
    got = disparity_log_lr(x_g, n_g, x_r, n_r, ratio)
    for k, r in enumerate(DEFAULT_GRID):
        pi0 = ratio * n_g / (ratio * n_g + n_r)
        pi1 = r * ratio * n_g / (r * ratio * n_g + n_r)
        want = stats.binom.logpmf(x_g, x_g + x_r, pi1) - stats.binom.logpmf(x_g, x_g + x_r, pi0)
        np.testing.assert_allclose(got[:, k], want, rtol=1e-9, atol=1e-9)
    # no comparison in either group: no evidence
    assert np.all(disparity_log_lr(3.0, 0.0, 1.0, 10.0, ratio) == 0)


def test_shiryaev_roberts_matches_the_sum_over_change_points():
    # R_t = sum_{j<=t} prod_{i=j..t} L_i for each alternative, then the weighted mixture
    rng = np.random.default_rng(7)
    T = 30
    llr = rate_log_lr(rng.binomial(200, 0.012, T).astype(float), np.full(T, 200.0), 0.01)
    weights = np.array([1, 2, 3, 4, 5], float)
    bank = MixtureShiryaevRoberts(1, np.inf, weights=weights)
    _, log_stats = bank.run(llr[:, None, :])
    for t in range(T):
        brute = sum(np.exp(llr[j : t + 1].sum(axis=0)) for j in range(t + 1))
        assert math.isclose(log_stats[t, 0], math.log(brute @ (weights / weights.sum())), rel_tol=1e-9)


def test_alarm_resets_the_statistic():
    bank = MixtureShiryaevRoberts(2, math.log(10.0), n_alternatives=1)
    alarms, _ = bank.run(np.array([[[3.0], [0.0]], [[0.0], [0.0]]]))
    # e^3 > 10 alarms stream 0; after the reset R = (0 + 1) * 1 = 1 < 10
    assert alarms.tolist() == [[True, False], [False, False]]
    assert math.isclose(bank.log_stat[0], 0.0, abs_tol=1e-12)


def test_threshold_and_information_bound_by_hand():
    assert threshold_for_budget(50, 1440, 2.0) == 50 * 1440 / 2.0
    kl = 0.06 * math.log(0.06 / 0.02) + 0.94 * math.log(0.94 / 0.98)
    assert math.isclose(bernoulli_kl(0.06, 0.02), kl)
    assert math.isclose(cusum_information_bound(1e5, 0.02, 0.06), math.log(1e5) / kl)
    with pytest.raises(ValueError):
        threshold_for_budget(0, 1440, 1.0)


def test_baseline_upper_bound_is_clopper_pearson():
    b = Baseline.from_counts(17, 4000, band=1.5, confidence=0.99)
    # one-sided 99% upper = upper end of the two-sided 98% exact interval
    ci = stats.binomtest(17, 4000).proportion_ci(confidence_level=0.98, method="exact")
    assert math.isclose(b.upper, ci.high, rel_tol=1e-9)
    assert math.isclose(b.edge, 1.5 * ci.high)
    assert b.rate == 17 / 4000


def test_null_false_alarm_rate_is_within_budget():
    # 200 null streams, 3000 steps: the budget says at most S * T / A false alarms on average
    rng = np.random.default_rng(11)
    S, T, A = 200, 3000, 2000.0
    p = rng.uniform(0.002, 0.02, S)  # true rates, each at the null edge (the worst case)
    n = rng.integers(20, 200, (T, S)).astype(float)
    x = rng.binomial(n.astype(int), p).astype(float)
    bank = MixtureShiryaevRoberts(S, math.log(A), n_alternatives=len(DEFAULT_GRID))
    alarms, _ = bank.run(rate_log_lr(x, n, p))
    bound = S * T / A
    # the expectation is at most `bound`; allow Poisson noise at the 0.1% level
    assert alarms.sum() <= stats.poisson.ppf(0.999, bound), (alarms.sum(), bound)


def test_rate_drift_is_detected_after_the_change_and_near_the_information_bound():
    rng = np.random.default_rng(12)
    p0, n, change = 0.01, 100, 300
    detector = RateDriftDetector(edge=p0, threshold=1e5)
    first = None
    for step in range(2000):
        p = p0 if step < change else 3 * p0
        if detector.update(rng.binomial(n, p), n).drift_detected:
            first = step
            break
    assert first is not None and first >= change
    delay = (first - change + 1) * n
    bound = cusum_information_bound(1e5 * n, p0, 3 * p0)
    # Lorden: no detector beats the bound by much; a mixture over a grid pays a small factor
    assert 0.3 * bound <= delay <= 5 * bound, (delay, bound)


def test_disparity_detector_ignores_a_gap_within_policy_and_finds_one_beyond():
    rng = np.random.default_rng(13)
    within = DisparityDetector(ratio=2.0, threshold=1e4)
    assert not any(within.update(rng.binomial(3000, 0.006), 3000, rng.binomial(3000, 0.003), 3000).drift_detected
                   for _ in range(1000))
    beyond = DisparityDetector(ratio=2.0, threshold=1e4)
    assert any(beyond.update(rng.binomial(3000, 0.018), 3000, rng.binomial(3000, 0.003), 3000).drift_detected
               for _ in range(200))


def test_river_detectors_see_a_large_change():
    adwin = AdwinErrorDetector(seed=1)
    assert not adwin.update(5, 1000).drift_detected
    assert adwin.update(300, 1000).drift_detected
    rng = np.random.default_rng(2)
    ph = ScoreMeanPageHinkley(mean0=1.0, sd0=2.0)
    assert not any(ph.update(rng.normal(1.0, 2.0, 200)).drift_detected for _ in range(200))
    assert any(ph.update(rng.normal(1.5, 2.0, 200)).drift_detected for _ in range(50))


def test_one_burst_of_errors_is_capped_a_few_quasi_sd_above_the_null():
    import math

    from fairwatch.detect.detectors import BURST_SD, RateDriftDetector, burst_cap, threshold_for_budget

    # the cap by hand: 300 comparisons at an edge of 1e-3, phi 4: 0.3 + 4 sqrt(4 x 0.3 x 0.999) + 1
    cap = 0.3 + BURST_SD * math.sqrt(4 * 0.3 * 0.999) + 1
    assert math.isclose(float(burst_cap(30.0, 300.0, 1e-3, 4.0)), cap, rel_tol=1e-12)
    assert float(burst_cap(2.0, 300.0, 1e-3, 4.0)) == 2.0  # counts below the cap are untouched
    # one bucket of 30 errors (100 times the mean) among quiet ones: a burst, not a drift
    detector = RateDriftDetector(1e-3, 1e6)
    quiet = [detector.update(0.0, 300.0).drift_detected for _ in range(50)]
    assert not any(quiet) and not detector.update(30.0, 300.0).drift_detected
    # a sustained rise is still found: 5x the edge for a few hours of buckets
    rng = np.random.default_rng(5)
    assert any(detector.update(rng.binomial(300, 5e-3), 300.0).drift_detected for _ in range(300))
    # a drift at high volume keeps its evidence: 20,000 comparisons a bucket, edge 0.02, 2x, one bucket
    busy = RateDriftDetector(0.02, threshold_for_budget(200, 1440, 0.1))
    assert busy.update(800.0, 20000.0).drift_detected
