"""Binomial intervals, effective counts and the anytime-valid confidence sequence."""

import numpy as np
import pytest
from fairwatch.core.intervals import (
    BetaBinomialMixture,
    clopper_pearson,
    effective_counts,
    jeffreys,
)
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

ALPHA = 0.05
GRID = [(x, n) for n in (1, 2, 7, 30, 500, 10_000) for x in sorted({0, 1, n // 3, n - 1, n})]


# --- fixed-sample intervals against closed forms -------------------------------------------------


@pytest.mark.parametrize(("x", "n"), GRID)
def test_clopper_pearson_equals_scipy_exact_interval(x, n):
    expected = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="exact")
    low, high = clopper_pearson(x, n, 0.95)
    # scipy finds these bounds by root-finding (relative error ~1e-8); ours are Beta quantiles
    assert low == pytest.approx(expected.low, rel=1e-7, abs=1e-15)
    assert high == pytest.approx(expected.high, rel=1e-7, abs=1e-15)


@pytest.mark.parametrize("n", [1, 30, 500, 36_887])
def test_clopper_pearson_endpoints_have_closed_forms(n):
    # x = 0: P(X = 0) = (1 - p)^n = alpha/2 at the upper bound; x = n mirrors it
    assert clopper_pearson(0, n)[1] == pytest.approx(1 - (ALPHA / 2) ** (1 / n), rel=1e-10)
    assert clopper_pearson(n, n)[0] == pytest.approx((ALPHA / 2) ** (1 / n), rel=1e-10)
    assert clopper_pearson(0, n)[0] == 0.0 and clopper_pearson(n, n)[1] == 1.0
    # x = 1: P(X >= 1) = 1 - (1 - p)^n = alpha/2 at the lower bound
    assert clopper_pearson(1, n)[0] == pytest.approx(-np.expm1(np.log1p(-ALPHA / 2) / n), rel=1e-10)


@pytest.mark.parametrize(("x", "n"), GRID)
def test_jeffreys_is_the_equal_tailed_posterior_interval_with_endpoint_fixes(x, n):
    low, high = jeffreys(x, n)
    posterior_low, posterior_high = stats.beta(x + 0.5, n - x + 0.5).interval(0.95)
    assert low == (0.0 if x == 0 else pytest.approx(posterior_low, rel=1e-12))
    assert high == (1.0 if x == n else pytest.approx(posterior_high, rel=1e-12))


def test_no_comparisons_give_the_whole_unit_interval():
    for interval in (clopper_pearson, jeffreys, BetaBinomialMixture().interval):
        low, high = interval(0, 0)
        assert (low, high) == (0.0, 1.0)


def test_intervals_are_vectorized_and_reject_impossible_counts():
    low, high = clopper_pearson(np.array([[0, 1], [2, 3]]), 10)
    assert low.shape == high.shape == (2, 2)
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)
    with pytest.raises(ValueError):
        jeffreys(-1, 4)


# --- effective counts ------------------------------------------------------------------------------


@given(st.integers(0, 10**7).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_unit_weights_reduce_exactly_to_the_unweighted_interval(counts):
    x, n = counts
    x_eff, n_eff = effective_counts(n, x, n, x, n, x)
    assert (x_eff, n_eff) == (x, n)
    for interval in (clopper_pearson, jeffreys):
        assert interval(x_eff, n_eff) == interval(x, n)


@given(
    st.integers(1, 10**6).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.sampled_from([2.0, 4.0, 10.0, 1 / 0.3]),
)
def test_equal_weights_keep_the_sample_size(counts, weight):
    x, n = counts
    x_eff, n_eff = effective_counts(n, x, n * weight, x * weight, n * weight**2, x * weight**2)
    assert n_eff == pytest.approx(n, rel=1e-9)
    assert x_eff == pytest.approx(x, rel=1e-9, abs=1e-9)


def test_heavy_error_weights_shrink_the_effective_sample():
    # 10 errors of weight 10 among 990 non-errors of weight 1 (reviewers rarely see non-matches)
    x_eff, n_eff = effective_counts(1000, 10, 1090, 100, 1990, 1000)
    p = 100 / 1090
    variance = (1000 * (1 - p) ** 2 + 990 * p**2) / 1090**2
    assert n_eff == pytest.approx(p * (1 - p) / variance)  # design-based, below Kish's 1090^2/1990
    assert n_eff < 1090**2 / 1990 < 1000
    assert x_eff / n_eff == pytest.approx(p)


# --- coverage by simulation ------------------------------------------------------------------------

REPLICATIONS = 4000


@pytest.mark.parametrize(("p", "n"), [(0.001, 500), (0.01, 200), (0.05, 100), (0.2, 50), (0.5, 30), (0.003, 20_000)])
def test_clopper_pearson_covers_at_least_94_percent(p, n):
    x = np.random.default_rng(11).binomial(n, p, REPLICATIONS)
    low, high = clopper_pearson(x, n)
    assert np.mean((low <= p) & (p <= high)) >= 0.94


def _weighted_sums(levels):
    """Counts rows sums from (sampled comparisons, sampled errors, weight) per inclusion level."""
    n = sum(m for m, _, _ in levels)
    errors = sum(e for _, e, _ in levels)
    w = sum(m * wt for m, _, wt in levels)
    w_err = sum(e * wt for _, e, wt in levels)
    w2 = sum(m * wt**2 for m, _, wt in levels)
    w2_err = sum(e * wt**2 for _, e, wt in levels)
    return n, errors, w, w_err, w2, w2_err


@pytest.mark.parametrize("p", [0.005, 0.02, 0.1])
def test_weighted_interval_covers_when_inclusion_is_independent_of_errors(p):
    # a stream of 20,000 comparisons; half verified with probability 0.1, a quarter with 0.5, the rest all
    rng = np.random.default_rng(12)
    levels = []
    for inclusion, size in ((0.1, 10_000), (0.5, 5_000), (1.0, 5_000)):
        sampled = rng.binomial(size, inclusion, REPLICATIONS)
        levels.append((sampled, rng.binomial(sampled, p), 1 / inclusion))
    low, high = clopper_pearson(*effective_counts(*_weighted_sums(levels)))
    assert np.mean((low <= p) & (p <= high)) >= 0.94


@pytest.mark.parametrize("p", [0.02, 0.1])
def test_weighted_interval_covers_when_errors_are_rarely_verified(p):
    # genuine comparisons: every match is verified, a non-match (the error) only with probability 0.2
    rng = np.random.default_rng(13)
    errors = rng.binomial(20_000, p, REPLICATIONS)
    verified_errors = rng.binomial(errors, 0.2)
    sums = _weighted_sums([(20_000 - errors, 0, 1.0), (verified_errors, verified_errors, 5.0)])
    low, high = clopper_pearson(*effective_counts(*sums))
    assert np.mean((low <= p) & (p <= high)) >= 0.94


# --- the anytime-valid confidence sequence ---------------------------------------------------------

PATHS, STEPS = 2000, 10_000


def _running_counts(p, paths, steps, seed):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.random((paths, steps)) < p, axis=1), np.arange(1, steps + 1)


@pytest.mark.parametrize("p", [0.5, 0.05, 0.002])
def test_confidence_sequence_miscoverage_uniformly_over_10000_steps_is_at_most_5_percent(p):
    # the running intersection of the intervals excludes p iff some interval does, iff the
    # martingale at p reaches 1/alpha at some step (the interval is {p : M_n(p) < 1/alpha})
    cs = BetaBinomialMixture()
    excluded = 0
    for chunk in range(4):
        x, n = _running_counts(p, PATHS // 4, STEPS, seed=100 + chunk)
        excluded += np.sum(np.max(cs.log_e_value(x, n, p), axis=1) >= np.log(1 / ALPHA))
    assert excluded / PATHS <= ALPHA


def test_running_intersection_of_the_intervals_contains_p():
    p, cs = 0.05, BetaBinomialMixture()
    x, n = _running_counts(p, 50, STEPS, seed=7)
    low, high = cs.interval(x, n, 1 - ALPHA)
    running_low, running_high = np.maximum.accumulate(low, axis=1), np.minimum.accumulate(high, axis=1)
    assert np.all(running_low <= running_high)
    covered = (running_low[:, -1] <= p) & (p <= running_high[:, -1])
    # the same paths judged by the martingale: the two views agree
    crossed = np.max(cs.log_e_value(x, n, p), axis=1) >= np.log(1 / ALPHA)
    assert np.array_equal(covered, ~crossed)
    assert covered.mean() >= 1 - ALPHA


@pytest.mark.parametrize(("x", "n"), [(0, 1), (0, 500), (3, 10), (12, 20_000), (500, 1000), (1000, 1000)])
def test_confidence_sequence_bounds_sit_on_the_rejection_boundary(x, n):
    cs = BetaBinomialMixture()
    low, high = cs.interval(x, n, 0.95)
    threshold = np.log(20)
    assert low <= x / n <= high
    for bound, inward in ((low, 1e-9), (high, -1e-9)):
        if 0 < bound < 1:
            assert cs.log_e_value(x, n, bound) == pytest.approx(threshold, abs=1e-6)
            assert cs.log_e_value(x, n, bound + inward * max(bound, 1e-3)) < threshold
    # wider than the fixed-sample interval: the price of continuous monitoring
    cp_low, cp_high = clopper_pearson(x, n)
    assert low <= cp_low and cp_high <= high


@pytest.mark.parametrize(
    ("alternative", "true_rate", "p0"),
    [("greater", 1e-3, 1e-3), ("greater", 5e-4, 1e-3), ("less", 1e-3, 1e-3), ("less", 2e-3, 1e-3)],
)
def test_one_sided_e_processes_keep_type_one_error_under_their_null(alternative, true_rate, p0):
    cs = BetaBinomialMixture()
    x, n = _running_counts(true_rate, 500, STEPS, seed=21)
    rejected = np.max(cs.log_e_value(x, n, p0, alternative=alternative), axis=1) >= np.log(1 / ALPHA)
    assert rejected.mean() <= ALPHA


def test_one_sided_e_process_detects_a_rate_three_times_the_target():
    cs = BetaBinomialMixture()
    x, n = _running_counts(3e-3, 500, STEPS, seed=22)
    rejected = np.max(cs.log_e_value(x, n, 1e-3, alternative="greater"), axis=1) >= np.log(1 / ALPHA)
    assert rejected.mean() > 0.8


def test_e_value_rejects_an_unknown_alternative():
    with pytest.raises(ValueError):
        BetaBinomialMixture().log_e_value(1, 10, 0.1, alternative="bigger")
