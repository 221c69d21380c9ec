"""Dispersion of baseline counts: Pearson's statistic recounted by hand, its bound against data
drawn by scipy's beta-binomial with a known dispersion, and the false-alarm rate of the detectors
that use it on overdispersed null streams against the rate they promise."""

from __future__ import annotations

import math

import numpy as np
from fairwatch.detect.detectors import DEFAULT_GRID, Baseline, MixtureShiryaevRoberts, rate_log_lr
from fairwatch.detect.dispersion import MIN_BLOCKS, PRETEST_LEVEL, block_lengths, estimate_dispersion
from scipy import stats


def test_block_lengths_are_whole_buckets_with_enough_blocks():
    # 1-minute buckets over a day: 1, 5, 15, 60 buckets; over an hour only 1 and 5 (12 blocks >= 10)
    assert block_lengths(60, 1440) == (1, 5, 15, 60)
    assert block_lengths(60, 60) == (1, 5)
    # 10-minute buckets: 5 min is not whole; 15 min is not whole either; an hour is 6 buckets
    assert block_lengths(600, 144) == (1, 6)
    assert block_lengths(60, MIN_BLOCKS - 1) == ()


def test_pearson_statistic_by_hand_and_the_bound_from_chi2():
    # 12 buckets of 100 comparisons: counts chosen so that the variation is plain to see
    x = np.array([0, 9, 1, 8, 0, 10, 2, 7, 0, 9, 1, 9], float)
    n = np.full(12, 100.0)
    found = estimate_dispersion(x, n, 60, confidence=0.99)
    assert found.lengths == (1,)  # 5-bucket blocks: 2 < MIN_BLOCKS
    p = x.sum() / n.sum()  # 56 / 1200
    pearson = sum((xi - 100 * p) ** 2 / (100 * p * (1 - p)) for xi in x)
    assert math.isclose(found.statistics[0], pearson / 11, rel_tol=1e-12)
    assert found.rejected == (pearson > stats.chi2.ppf(1 - PRETEST_LEVEL, 11),) == (True,)
    assert math.isclose(found.phi, pearson / stats.chi2.ppf(0.01, 11), rel_tol=1e-12)


def test_binomial_counts_keep_a_dispersion_of_one_in_most_baselines_with_the_pretest():
    rng = np.random.default_rng(7)
    n = rng.poisson(300, (200, 1440))
    phis = [estimate_dispersion(rng.binomial(row, 2e-3), row.astype(float), 60, 0.99, pretest=True).phi for row in n]
    # the pretest rejects phi = 1 at level 0.05 over all lengths: about 5% of binomial baselines
    assert np.mean(np.array(phis) > 1) <= stats.binom.ppf(0.999, 200, PRETEST_LEVEL) / 200


def test_without_the_pretest_the_dispersion_is_the_largest_bound_over_the_lengths():
    rng = np.random.default_rng(17)
    n = rng.poisson(300, 1440).astype(float)
    x = rng.binomial(n.astype(int), 2e-3).astype(float)
    found = estimate_dispersion(x, n, 60, 0.99)
    assert found.rejected == (False,) * 4  # not shown: still bounded
    p = x.sum() / n.sum()
    bounds = []
    for length in (1, 5, 15, 60):  # recounted by hand from the blocks
        xs, ns = x.reshape(-1, length).sum(axis=1), n.reshape(-1, length).sum(axis=1)
        pearson = (((xs - ns * p) ** 2) / (ns * p * (1 - p))).sum()
        bounds.append(pearson / stats.chi2.ppf(0.01, len(xs) - 1))
    assert math.isclose(found.phi, max(1.0, *bounds), rel_tol=1e-9)
    assert found.phi > 1


def test_the_bound_holds_the_true_dispersion_of_beta_binomial_counts():
    # scipy's beta-binomial: n comparisons share a rate Beta(a, b); Var = n p (1 - p) (1 + (n - 1) rho),
    # rho = 1 / (a + b + 1): the dispersion is 1 + (n - 1) rho at every block length
    n, p, rho = 200, 0.01, 0.005
    a = p * (1 / rho - 1)
    b = (1 - p) * (1 / rho - 1)
    phi = 1 + (n - 1) * rho  # 1.995
    draws = stats.betabinom.rvs(n, a, b, size=(300, 1440), random_state=np.random.default_rng(8))
    found = [estimate_dispersion(row, np.full(1440, float(n)), 60, 0.99) for row in draws]
    held = np.mean([f.phi >= phi for f in found])
    assert held >= 0.97, held
    # the one-bucket point estimate is unbiased for phi
    assert abs(np.mean([f.statistics[0] for f in found]) - phi) < 0.02


def test_rate_varying_by_the_hour_shows_at_the_hour():
    rng = np.random.default_rng(9)
    hourly = np.repeat(rng.gamma(4.0, 0.25, 24), 60)  # CV 0.5, shared by the 60 buckets of each hour
    n = np.full(1440, 300.0)
    found = estimate_dispersion(rng.binomial(300, 0.01 * hourly), n, 60, 0.99)
    # an hour holds 18,000 comparisons at 1%: phi = 1 + 180 * 0.25 = 46 at the hour, about 1.75 per bucket
    assert found.statistics[0] < 3 < found.statistics[-1]
    assert found.phi >= found.statistics[-1]


def test_the_dispersion_keeps_the_false_alarm_rate_on_overdispersed_null_streams():
    # 100 null streams at their edge, counts beta-binomial with phi about 3: the binomial likelihood
    # ratio breaks the promised rate of S * T / A alarms; divided by the baseline's dispersion it keeps it
    S, T, A, n, p, rho = 100, 3000, 1000.0, 400, 0.01, 0.005
    a, b = p * (1 / rho - 1), (1 - p) * (1 / rho - 1)
    rng = np.random.default_rng(12)
    base = stats.betabinom.rvs(n, a, b, size=(1440, S), random_state=rng).astype(float)
    phi = np.array([estimate_dispersion(base[:, j], np.full(1440, float(n)), 60, 0.99).phi for j in range(S)])
    x = stats.betabinom.rvs(n, a, b, size=(T, S), random_state=rng).astype(float)
    counts = np.full((T, S), float(n))
    bound = S * T / A
    alarms = {}
    for name, dispersion in (("binomial", 1.0), ("dispersion", phi)):
        bank = MixtureShiryaevRoberts(S, math.log(A), n_alternatives=len(DEFAULT_GRID))
        alarms[name] = int(bank.run(rate_log_lr(x, counts, p, dispersion=dispersion))[0].sum())
    assert alarms["dispersion"] <= stats.poisson.ppf(0.999, bound), (alarms, bound)
    assert alarms["binomial"] > 3 * bound, (alarms, bound)  # the failure this guards against


def test_baseline_bound_on_effective_counts():
    # dispersion 4: the bound of 40 errors in 8,000 taken as 10 in 2,000
    wide = Baseline.from_counts(40, 8000, band=1.0, confidence=0.99, dispersion=4.0)
    assert math.isclose(wide.upper, stats.beta.ppf(0.99, 11, 1990), rel_tol=1e-12)
    assert wide.upper > Baseline.from_counts(40, 8000, band=1.0, confidence=0.99).upper


def test_pooled_dispersion_recovers_the_shared_variation_of_beta_binomial_groups():
    from fairwatch.detect.dispersion import pooled_dispersion

    # 8 groups, each too short to show a dispersion of 1 + (n - 1) rho = 1.4 alone with certainty;
    # pooled, the bound holds it and stays near it; binomial groups keep 1
    n, p, rho = 200, 0.01, 0.002
    a, b = p * (1 / rho - 1), (1 - p) * (1 / rho - 1)
    rng = np.random.default_rng(13)
    phi = 1 + (n - 1) * rho
    held, near, binomial = 0, 0, []
    for _ in range(40):
        groups = [(stats.betabinom.rvs(n, a, b, size=1440, random_state=rng).astype(float), np.full(1440, float(n)))
                  for _ in range(8)]
        found = pooled_dispersion(groups, 60, 0.99)
        held += min(found) >= phi
        near += max(found) <= 1.5 * phi
        plain = [(rng.binomial(n, p, 1440).astype(float), np.full(1440, float(n))) for _ in range(8)]
        binomial.append(max(pooled_dispersion(plain, 60, 0.99)))
    assert held >= 36 and near >= 36, (held, near)
    # binomial groups are bounded too (no pretest), mostly below the variation held above
    assert np.median(binomial) < phi and max(binomial) < 2, binomial


def test_pooling_needs_five_groups():
    from fairwatch.detect.dispersion import MIN_POOLED_GROUPS, pooled_dispersion

    rng = np.random.default_rng(14)
    hourly = np.repeat(rng.gamma(1 / 0.09, 0.09, 24), 60)
    groups = [(rng.binomial(300, 1e-2 * hourly).astype(float), np.full(1440, 300.0)) for _ in range(MIN_POOLED_GROUPS)]
    assert pooled_dispersion(groups[:-1], 60, 0.99) == [1.0] * (MIN_POOLED_GROUPS - 1)
    assert min(pooled_dispersion(groups, 60, 0.99)) > 1


def test_split_dispersion_ignores_shared_variation_and_sees_one_groups_own():
    from fairwatch.detect.dispersion import split_dispersion

    rng = np.random.default_rng(15)
    n = np.full(1440, 400.0)
    shared = np.repeat(rng.gamma(4.0, 0.25, 24), 60)  # CV 0.5 by the hour, both groups
    own = np.repeat(rng.gamma(4.0, 0.25, 24), 60)  # the group's alone
    reference = rng.binomial(400, 0.01 * shared).astype(float)
    together = rng.binomial(400, 0.02 * shared).astype(float)
    apart = rng.binomial(400, 0.02 * shared * own).astype(float)
    kept = split_dispersion(together, n, reference, n, 60, 0.99)
    assert kept.rejected == (False,) * 4 and kept.phi < 4  # bounded as binomial counts would be
    found = split_dispersion(apart, n, reference, n, 60, 0.99)
    assert found.phi > 5 and found.rejected[-1]
    # Pearson's statistic at the hour, recounted: the group's share of each hour's errors
    x = apart.reshape(24, 60).sum(axis=1)
    m = (apart + reference).reshape(24, 60).sum(axis=1)
    pi = (400 * apart.sum() / n.sum()) / (400 * apart.sum() / n.sum() + 400 * reference.sum() / n.sum())
    pearson = (((x - m * pi) ** 2) / (m * pi * (1 - pi))).sum()
    assert math.isclose(found.statistics[-1], pearson / 23, rel_tol=1e-9)


def test_a_stream_without_a_pooled_set_is_bounded_at_every_length_with_enough_blocks():
    from fairwatch.detect.dispersion import MIN_BOUND_BLOCKS, stream_dispersions

    # an hour of binomial buckets: 60 one-minute blocks (bounded, no pretest) and 12 five-minute
    # blocks (fewer than MIN_BOUND_BLOCKS: bounded only where their pretest rejects)
    assert 60 // 5 < MIN_BOUND_BLOCKS <= 60
    rng = np.random.default_rng(18)
    n = np.full(60, 400.0)
    pairs = [(rng.binomial(400, 1e-2, 60).astype(float), n) for _ in range(2)]
    found = stream_dispersions(pairs, 60, 0.99)
    for (x, _), phi in zip(pairs, found):
        p = x.sum() / n.sum()
        pearson = (((x - 400 * p) ** 2) / (400 * p * (1 - p))).sum()
        five = estimate_dispersion(x, n, 60, 0.99)
        expected = pearson / stats.chi2.ppf(0.01, 59)
        if five.rejected[1]:
            expected = max(expected, five.statistics[1] * 11 / stats.chi2.ppf(0.01, 11))
        assert math.isclose(phi, max(1.0, expected), rel_tol=1e-9)
    # five groups are pooled: each keeps 1 from its own unless its pretest rejects
    groups = [(rng.binomial(400, 1e-2, 1440).astype(float), np.full(1440, 400.0)) for _ in range(5)]
    pooled_phis = stream_dispersions(groups, 60, 0.99)
    own = [estimate_dispersion(x, m, 60, 0.99, pretest=True).phi for x, m in groups]
    bounded = [estimate_dispersion(x, m, 60, 0.99).phi for x, m in groups]
    assert all(p >= o for p, o in zip(pooled_phis, own))
    assert sum(p < b for p, b in zip(pooled_phis, bounded)) >= 4  # the pooled bound is the tighter one
