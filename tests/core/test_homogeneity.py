"""Homogeneity tests of an attribute set's rates, against enumeration of every table, Clopper-Pearson
bounds solved with scipy, and simulated audits (numpy draws, independent of the estimators)."""

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.estimates import RateEstimator
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.homogeneity import ALPHA_CEILING, ALPHA_FLOOR, homogeneity
from fairwatch.core.intervals import VARIES
from fairwatch.core.layout import GroupKey
from fairwatch.testing.oracles import two_phase_rows
from scipy import optimize, stats

ESTIMATOR = RateEstimator(CoreConfig(min_comparisons=1))
ALPHA = 0.05


def unweighted(errors, n):
    """Rate estimates of fully verified populations: every weight 1."""
    return ESTIMATOR.estimate(np.array([[m, e] * 3 for e, m in zip(errors, n)], dtype=float), None)


def two_phase_sets(seed, runs, fnmrs, pis, genuine=2000, impostors=2000, fmr=0.01):
    """``runs`` attribute sets of one group per entry of ``fnmrs`` / ``pis``, each group's rows drawn by
    :func:`two_phase_rows` (non-matches verified with probability ``pi``), estimated by the GroupFrame:
    per set, the groups' (FMR estimates, FNMR estimates)."""
    rng = np.random.default_rng(seed)
    rows = np.stack([two_phase_rows(rng, runs, impostors, fmr, genuine, f, pi) for f, pi in zip(fnmrs, pis)], axis=1)
    keys = [GroupKey("d", "a", "verification", f"set{r}", f"g{j}") for r in range(runs) for j in range(len(pis))]
    frame = GroupFrame.from_counts(keys, rows.reshape(-1, 12), CoreConfig(min_comparisons=1))
    groups = list(frame.by_group.values())
    by_set = {}
    for g in groups:
        by_set.setdefault(g.key.attribute, []).append(g)
    return [([g.fmr for g in gs], [g.fnmr for g in gs]) for gs in by_set.values()]


def rejections(results, alpha=ALPHA):
    return sum(r.p_value <= alpha for r in results)


def three_se(runs, alpha=ALPHA):
    return alpha * runs + 3 * math.sqrt(alpha * (1 - alpha) * runs)


# --- exact-conditional: against every table with the same margins ---------------------------------


def g_oracle(errors, n):
    """``G = 2 sum O ln(O / E)`` over both rows of the 2 x k table, one cell at a time."""
    share = sum(errors) / sum(n)
    g = 0.0
    for e, m in zip(errors, n):
        for observed, expected in ((e, m * share), (m - e, m * (1 - share))):
            if observed:
                g += observed * math.log(observed / expected)
    return 2 * g


def exact_conditional_p(errors, n):
    """P(G >= G_obs) over every table with the observed margins, with hypergeometric probabilities
    ``prod_g C(n_g, e_g) / C(N, E)``."""
    total_errors, observed = sum(errors), g_oracle(errors, n)
    p = 0.0
    for table in itertools.product(*(range(min(m, total_errors) + 1) for m in n)):
        if sum(table) == total_errors and g_oracle(table, n) >= observed - 1e-9 * max(1.0, observed):
            p += math.prod(math.comb(m, x) for m, x in zip(n, table)) / math.comb(sum(n), total_errors)
    return p


# (1, 1, 3) of (40, 20, 25): 0.524 by G, 0.377 by Pearson's X^2 (42 standard errors apart), so the
# comparison also pins down the statistic; (2, 2, 2) of (12, 12, 12): G = 0, every table ties
TABLES = [((1, 6, 2), (20, 30, 25)), ((0, 3, 5), (10, 10, 10)), ((3, 2, 4), (15, 40, 8)),
          ((1, 1, 3), (40, 20, 25)), ((5, 0, 1), (12, 9, 30)), ((2, 2, 2), (12, 12, 12))]


@pytest.mark.parametrize(("errors", "n"), TABLES)
def test_exact_conditional_p_value_matches_enumeration_of_every_table(errors, n):
    draws = 20_000
    want = exact_conditional_p(errors, n)
    result = homogeneity(unweighted(errors, n), 0.95, 1, draws=draws, seed=3)
    assert result.method == "exact-conditional" and result.groups == 3
    se = math.sqrt(want * (1 - want) / draws)
    assert abs(result.p_value - want) <= 4 * se + 1 / (1 + draws), (result.p_value, want)


def test_monte_carlo_p_value_is_reproducible_and_never_below_one_over_draws_plus_one():
    estimates = unweighted((1, 6, 2), (20, 30, 25))
    first, again = (homogeneity(estimates, 0.95, 1, seed=7) for _ in range(2))
    assert first == again
    assert homogeneity(estimates, 0.95, 1, seed=8).p_value != first.p_value
    # 40 / 1000 against 0 / 1000: no null table of 100 draws is as extreme
    assert homogeneity(unweighted((40, 0), (1000, 1000)), 0.95, 1, draws=100).p_value == 1 / 101


def test_unweighted_exact_test_holds_its_level_and_finds_a_threefold_rate():
    # 300 audits of 4 groups of 200-500 comparisons at rate 0.01 (2 to 5 errors expected per group)
    rng = np.random.default_rng(11)
    runs, n = 300, np.array([200, 300, 400, 500])

    def audits(rates):
        errors = rng.binomial(n, rates, size=(runs, len(n)))
        return [homogeneity(unweighted(e, n), 0.95, 30, draws=1000, seed=r) for r, e in enumerate(errors)]

    null = audits(np.full(4, 0.01))
    assert {r.method for r in null} == {"exact-conditional"}
    assert rejections(null) <= three_se(runs), rejections(null)  # measured 9 / 300 = 0.030
    differ = audits(np.array([0.01, 0.01, 0.01, 0.03]))
    assert rejections(differ) >= 0.45 * runs, rejections(differ)  # measured 177 / 300 = 0.59
    assert all((r.p_value <= ALPHA) == (r.verdict == "differ") for r in null + differ)


def test_a_design_common_to_the_groups_keeps_the_exact_test_under_partial_verification():
    # every group's non-matches verified with probability 0.1, matches all: error share and rate differ,
    # but equally in every group, so equal rates give equal shares among the verified
    runs = 250
    null = two_phase_sets(5, runs, [0.01] * 4, [0.1] * 4)
    fnmr = [homogeneity(fnmrs, 0.95, 30, draws=1000, seed=r) for r, (_, fnmrs) in enumerate(null)]
    fmr = [homogeneity(fmrs, 0.95, 30, draws=1000, seed=r) for r, (fmrs, _) in enumerate(null)]
    assert {r.method for r in fnmr + fmr} == {"exact-conditional"}
    assert rejections(fnmr) <= three_se(runs), rejections(fnmr)  # measured 14 / 250 = 0.056
    assert rejections(fmr) <= three_se(runs), rejections(fmr)  # measured 16 / 250 = 0.064
    differ = two_phase_sets(6, runs, [0.01, 0.01, 0.01, 0.03], [0.1] * 4)
    found = [homogeneity(fnmrs, 0.95, 30, draws=1000, seed=r) for r, (_, fnmrs) in enumerate(differ)]
    # about 2 verified false non-matches per group at 0.01 and 6 at 0.03
    assert rejections(found) >= 0.2 * runs, rejections(found)  # measured 76 / 250 = 0.30


# --- interval-intersection --------------------------------------------------------------------------


def test_interval_intersection_equals_the_alpha_where_two_clopper_pearson_intervals_touch():
    # 2 / 1000 against 12 / 1000 at level 1 - alpha / 2: the first's upper and the second's lower bound
    # are Beta quantiles at 1 - alpha / 4 and alpha / 4; they meet where the two are equal
    def gap(alpha):
        return stats.beta.ppf(alpha / 4, 12, 1000 - 12 + 1) - stats.beta.ppf(1 - alpha / 4, 2 + 1, 1000 - 2)

    want = optimize.brentq(gap, 1e-6, 0.9, xtol=1e-12)
    result = homogeneity(unweighted((2, 12), (1000, 1000)), 0.95, 30, method="interval-intersection")
    assert result.method == "interval-intersection"
    assert want <= result.p_value <= want * (1 + 1e-3), (result.p_value, want)  # errs upwards only
    assert result.verdict == "no_difference_shown"  # want = 0.153


def differently_verified_sets(seed, runs, fnmrs):
    """FNMR estimates of 4 groups whose non-matches are verified with probabilities 1, 0.5, 0.25, 0.1."""
    return [fnmrs_ for _, fnmrs_ in two_phase_sets(seed, runs, fnmrs, [1.0, 0.5, 0.25, 0.1])]


def test_interval_intersection_p_value_is_where_the_bonferroni_intervals_stop_meeting():
    sets = differently_verified_sets(2, 12, [0.03, 0.01, 0.01, 0.005])
    seen = []
    for estimates in sets:
        result = homogeneity(estimates, 0.95, 30)
        assert result.method == "interval-intersection"
        p = result.p_value
        seen.append(p)
        if p == 1.0:
            below = [e.interval(1 - ALPHA_CEILING / 4) for e in estimates]
            assert max(lo for lo, _ in below) <= min(hi for _, hi in below)
            continue
        at = [e.interval(1 - p / 4) for e in estimates]
        below = [e.interval(1 - p * (1 - 1e-3) / 4) for e in estimates]
        assert max(lo for lo, _ in at) > min(hi for _, hi in at), p
        assert max(lo for lo, _ in below) <= min(hi for _, hi in below), p
    assert min(seen) < ALPHA < max(seen), seen  # both sides of the definition were exercised


def test_interval_intersection_holds_its_level_under_unequal_verification_and_finds_a_large_difference():
    runs = 150
    null = [homogeneity(e, 0.95, 30) for e in differently_verified_sets(9, runs, [0.01] * 4)]
    assert {r.method for r in null} == {"interval-intersection"}
    assert rejections(null) <= three_se(runs), rejections(null)  # measured 0 / 150: conservative
    # FNMR 0.03 in the fully verified group, 0.01 elsewhere
    differ = [homogeneity(e, 0.95, 30) for e in differently_verified_sets(10, runs, [0.03, 0.01, 0.01, 0.01])]
    assert rejections(differ) >= 0.5 * runs, rejections(differ)  # measured 94 / 150 = 0.63


def test_interval_intersection_ends():
    # the intervals meet however much alpha is spent: p = 1; disjoint at 1e-10: reported as that bound
    assert homogeneity(unweighted((3, 3), (1000, 1000)), 0.95, 1, method="interval-intersection").p_value == 1.0
    far = homogeneity(unweighted((0, 500), (100_000, 1000)), 0.95, 1, method="interval-intersection")
    assert (far.p_value, far.verdict) == (ALPHA_FLOOR, "differ")


# --- method choice, verdicts, degenerate input --------------------------------------------------------


def test_the_method_follows_the_design():
    [common] = two_phase_sets(1, 1, [0.01] * 3, [0.1] * 3)
    [mixed] = two_phase_sets(1, 1, [0.01] * 3, [1.0, 0.1, 0.1])
    assert homogeneity(common[1], 0.95, 30).method == "exact-conditional"
    assert homogeneity(mixed[1], 0.95, 30).method == "interval-intersection"
    # a stratum with several probabilities, or an unknown one, leaves no exact conditional law
    plain = unweighted((1, 4), (500, 500))
    assert homogeneity(plain, 0.95, 30).method == "exact-conditional"
    for broken in (replace(plain[0], correct_inclusion=VARIES), replace(plain[0], error_inclusion=None)):
        assert homogeneity([broken, plain[1]], 0.95, 30).method == "interval-intersection"
        with pytest.raises(ValueError, match="exact-conditional"):
            homogeneity([broken, plain[1]], 0.95, 30, method="exact-conditional")


def test_fewer_than_two_groups_with_comparisons_is_insufficient():
    none = ("insufficient", None, "none")
    one = homogeneity(unweighted((3,), (1000,)), 0.95, 30)
    assert (one.verdict, one.p_value, one.method, one.groups) == (*none, 1)
    empty_and_one = homogeneity(unweighted((0, 3), (0, 1000)), 0.95, 30)
    assert (empty_and_one.verdict, empty_and_one.p_value, empty_and_one.method, empty_and_one.groups) == (*none, 1)
    assert homogeneity([], 0.95, 30).groups == 0


@pytest.mark.parametrize("method", ["exact-conditional", "interval-intersection"])
def test_no_error_anywhere_or_only_errors_shows_no_difference(method):
    for errors, n in (((0, 0, 0), (400, 900, 50)), ((40, 90, 50), (40, 90, 50))):
        result = homogeneity(unweighted(errors, n), 0.95, 30, method=method)
        assert (result.p_value, result.verdict, result.groups) == (1.0, "no_difference_shown", 3)
    # the same with a group below min_comparisons: a p-value, but no verdict
    result = homogeneity(unweighted((0, 0, 0), (400, 900, 20)), 0.95, 30, method=method)
    assert (result.p_value, result.verdict) == (1.0, "insufficient")


def test_a_small_group_makes_even_a_clear_difference_insufficient():
    estimates = unweighted((40, 0, 0), (1000, 1000, 0))  # the third group has no comparison
    result = homogeneity(estimates, 0.95, 30)
    assert result.groups == 2 and result.p_value < 0.001 and result.verdict == "insufficient"
    assert homogeneity(estimates[:2], 0.95, 30).verdict == "differ"
    assert homogeneity(estimates[:2], 0.95, 1001).verdict == "insufficient"


def test_the_verdict_compares_the_p_value_with_one_minus_confidence():
    estimates = unweighted((2, 12), (1000, 1000))
    p = homogeneity(estimates, 0.95, 30).p_value  # near Fisher's 0.0126
    assert 0.005 < p < 0.03
    assert homogeneity(estimates, 1 - 1.01 * p, 30).verdict == "differ"
    assert homogeneity(estimates, 1 - 0.99 * p, 30).verdict == "no_difference_shown"


def test_to_dict_is_json_ready_and_arguments_are_checked():
    result = homogeneity(unweighted((2, 12), (1000, 1000)), 0.95, 30)
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False)) == {
        "p_value": result.p_value, "method": "exact-conditional", "groups": 2, "verdict": "differ"}
    assert homogeneity(unweighted((3,), (10,)), 0.95, 30).to_dict()["p_value"] is None
    estimates = unweighted((2, 12), (1000, 1000))
    for bad in ({"confidence": 1.0}, {"draws": 0}, {"method": "fisher"}):
        with pytest.raises(ValueError):
            homogeneity(estimates, **{"confidence": 0.95, "min_comparisons": 30, **bad})
