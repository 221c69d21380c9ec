"""Differentials across the groups of an attribute set, against values worked out by hand."""

import itertools
import json

import numpy as np
import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.differentials import AttributeSet, gini, max_geomean_ratio
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.layout import OVERALL, GroupKey
from hypothesis import given
from hypothesis import strategies as st

SCOPE = AttributeSet("gate-3", "algo-2", "verification", "race")


def unweighted_row(impostor, false_match, genuine, false_non_match):
    return [impostor, false_match] * 3 + [genuine, false_non_match] * 3


def frame_of(groups, config=None, attribute="race"):
    """groups: name -> (impostor, false matches, genuine, false non-matches)."""
    keys = [GroupKey("gate-3", "algo-2", "verification", attribute, name) for name in groups]
    rows = np.array([unweighted_row(*counts) for counts in groups.values()], dtype=float)
    return GroupFrame.from_counts(keys, rows, config or CoreConfig())


def table(frame, scope=SCOPE):
    return {(d.metric, d.rate): d for d in frame.differentials if d.scope == scope}


# Worked case: three groups, 1000 impostor and 1000 genuine comparisons each.
#   FMR:  A 1/1000 = 0.001, B 3/1000 = 0.003, C 9/1000 = 0.009
#   FNMR: A 40/1000 = 0.04, B 10/1000 = 0.01, C 20/1000 = 0.02
WORKED = {"A": (1000, 1, 1000, 40), "B": (1000, 3, 1000, 10), "C": (1000, 9, 1000, 20)}
WORKED_VALUES = {
    # max/min: 0.009 / 0.001 = 9; 0.04 / 0.01 = 4
    ("max_min_ratio", "fmr"): 9.0,
    ("max_min_ratio", "fnmr"): 4.0,
    # geometric means: (0.001 * 0.003 * 0.009)^(1/3) = (2.7e-8)^(1/3) = 0.003, so 0.009 / 0.003 = 3;
    # (0.04 * 0.01 * 0.02)^(1/3) = (8e-6)^(1/3) = 0.02, so 0.04 / 0.02 = 2
    ("max_geomean", "fmr"): 3.0,
    ("max_geomean", "fnmr"): 2.0,
    # max - min: 0.009 - 0.001 = 0.008; 0.04 - 0.01 = 0.03
    ("max_min_difference", "fmr"): 0.008,
    ("max_min_difference", "fnmr"): 0.03,
    # Gini, n = 3: pairwise |differences| of FMR (in 1e-3) are 2, 8, 6, so sum_i sum_j = 2 * 16e-3 = 0.032;
    # 2 n^2 mean = 2 * 9 * 0.013 / 3 = 0.078; 0.032 / 0.078 * 3/2 = 8/13
    ("garbe", "fmr"): 8 / 13,
    # FNMR (in 1e-2): 3, 1, 2 -> sum_i sum_j = 2 * 6e-2 = 0.12; 2 * 9 * 0.07 / 3 = 0.42; 0.12 / 0.42 * 3/2 = 3/7
    ("garbe", "fnmr"): 3 / 7,
    # alpha = 0.5: FDR = 1 - (0.5 * 0.008 + 0.5 * 0.03) = 1 - 0.019 = 0.981
    ("fdr", "combined"): 0.981,
    # IR = 9^0.5 * 4^0.5 = 3 * 2 = 6
    ("ir", "combined"): 6.0,
    # GARBE = 0.5 * 8/13 + 0.5 * 3/7 = 4/13 + 3/14 = 95/182
    ("garbe", "combined"): 95 / 182,
}


def test_worked_case_equals_hand_computed_values():
    found = table(frame_of(WORKED))
    assert set(found) == set(WORKED_VALUES)
    for name, expected in WORKED_VALUES.items():
        d = found[name]
        assert d.value == pytest.approx(expected, rel=1e-12), name
        assert d.status == "ok" and d.groups == 3
        assert d.low <= d.value <= d.high, name
    assert (found["max_min_ratio", "fmr"].max_group, found["max_min_ratio", "fmr"].min_group) == ("C", "A")
    assert (found["max_min_ratio", "fnmr"].max_group, found["max_min_ratio", "fnmr"].min_group) == ("A", "B")
    assert found["fdr", "combined"].max_group is None


def test_alpha_weights_come_from_the_config():
    found = table(frame_of(WORKED, CoreConfig(fdr_alpha=0.25, ir_alpha=0.25, garbe_alpha=0.25)))
    # FDR = 1 - (0.25 * 0.008 + 0.75 * 0.03) = 1 - (0.002 + 0.0225) = 0.9755
    assert found["fdr", "combined"].value == pytest.approx(0.9755)
    # IR = 9^0.25 * 4^0.75 = sqrt(3) * 2^1.5 = sqrt(24)
    assert found["ir", "combined"].value == pytest.approx(24**0.5)
    # GARBE = 0.25 * 8/13 + 0.75 * 3/7 = 2/13 + 9/28 = 173/364
    assert found["garbe", "combined"].value == pytest.approx(173 / 364)


def test_zero_error_group_gives_none_not_inf():
    # FMR: A 0/1000 = 0, B 2/1000 = 0.002, C 4/1000 = 0.004; FNMR as in the worked case
    groups = {"A": (1000, 0, 1000, 40), "B": (1000, 2, 1000, 10), "C": (1000, 4, 1000, 20)}
    frame = frame_of(groups)
    found = table(frame)
    for name in [("max_min_ratio", "fmr"), ("max_geomean", "fmr"), ("ir", "combined")]:
        d = found[name]
        # 0.004 / 0 does not exist: None with status undefined. A's rate may be arbitrarily small,
        # so no upper bound exists (None); the lower bound still says the groups differ at least that much
        assert (d.value, d.status, d.high) == (None, "undefined", None), name
        assert 1 <= d.low < np.inf, name
    # max - min = 0.004 - 0 = 0.004
    assert found["max_min_difference", "fmr"].value == pytest.approx(0.004)
    # Gini: sorted (0, 0.002, 0.004), pairwise |differences| 2, 4, 2 (1e-3): sum_i sum_j = 0.016;
    # 2 * 9 * 0.002 = 0.036; 0.016 / 0.036 * 3/2 = 2/3
    assert found["garbe", "fmr"].value == pytest.approx(2 / 3)
    # FDR = 1 - (0.5 * 0.004 + 0.5 * 0.03) = 0.983; GARBE = 0.5 * 2/3 + 0.5 * 3/7 = 1/3 + 3/14 = 23/42
    assert found["fdr", "combined"].value == pytest.approx(0.983)
    assert found["garbe", "combined"].value == pytest.approx(23 / 42)
    assert all(d.status == "ok" for d in found.values() if d.value is not None)
    json.dumps(frame.to_dict(), allow_nan=False)


def test_a_declared_ratio_floor_bounds_zero_error_groups():
    from scipy.stats import beta

    # FMR: A 0/1000, B 2/1000, C 4/1000; floor 1e-3. FNMR as in the worked case, floor 0.02
    groups = {"A": (1000, 0, 1000, 40), "B": (1000, 2, 1000, 10), "C": (1000, 4, 1000, 20)}
    config = CoreConfig(ratio_floor_fmr=1e-3, ratio_floor_fnmr=0.02)
    found = table(frame_of(groups, config))

    def box(errors, n, groups_at_once):  # Clopper-Pearson at the Bonferroni level, by scipy
        alpha = 0.05 / groups_at_once
        low = beta.ppf(alpha / 2, errors, n - errors + 1) if errors else 0.0
        return low, beta.ppf(1 - alpha / 2, errors + 1, n - errors)

    fmr_box = [box(e, 1000, 3) for e in (0, 2, 4)]
    floored = [(max(lo, 1e-3), max(hi, 1e-3)) for lo, hi in fmr_box]
    # floored rates: A 0.001, B 0.002, C 0.004: max/min = 4, Max/GeoMean = 0.004 / 0.002 = 2
    ratio = found["max_min_ratio", "fmr"]
    assert (ratio.value, ratio.status, ratio.fmr_floor, ratio.fnmr_floor) == (pytest.approx(4.0), "ok", 1e-3, None)
    # brute force over the pairs: one group at its upper bound, another at its lower
    most = max(floored[i][1] / floored[j][0] for i in range(3) for j in range(3) if i != j)
    least = max(1.0, max(lo for lo, _ in floored) / min(hi for _, hi in floored))
    assert (ratio.low, ratio.high) == (pytest.approx(least), pytest.approx(most))
    assert ratio.high < np.inf
    assert found["max_geomean", "fmr"].value == pytest.approx(2.0)
    assert found["max_geomean", "fmr"].high < np.inf
    # FNMR 0.04, 0.01, 0.02 floored at 0.02: 0.04, 0.02, 0.02, so max/min = 2
    assert found["max_min_ratio", "fnmr"].value == pytest.approx(2.0)
    # IR = 4^0.5 * 2^0.5 = sqrt(8), both floors named
    ir = found["ir", "combined"]
    assert (ir.value, ir.fmr_floor, ir.fnmr_floor) == (pytest.approx(8**0.5), 1e-3, 0.02)
    assert ir.low <= ir.value <= ir.high < np.inf
    # differences and Gini coefficients are never floored
    assert found["max_min_difference", "fmr"].value == pytest.approx(0.004)
    assert found["garbe", "fmr"].value == pytest.approx(2 / 3)
    assert found["max_min_difference", "fmr"].fmr_floor is None
    # a policy verdict is about the ratio itself, never the floored one: A's rate may be 0, so the
    # ratio may exceed any policy: not distinguishable, although the floored interval ends at `most`
    judged = table(frame_of(groups, CoreConfig(ratio_floor_fmr=1e-3, ratio_floor_fnmr=0.02, policy_ratio=most + 1)))
    assert judged["max_min_ratio", "fmr"].high < most + 1
    assert judged["max_min_ratio", "fmr"].vs_policy == "not_distinguishable"


def test_groups_without_any_error_are_equal():
    # every FMR is 0: the differences and the Gini are 0, the ratios 0 / 0 do not exist
    found = table(frame_of({"A": (1000, 0, 1000, 40), "B": (2000, 0, 1000, 10)}))
    assert found["max_min_difference", "fmr"].value == 0.0
    assert found["garbe", "fmr"].value == 0.0
    assert (found["max_min_ratio", "fmr"].value, found["max_min_ratio", "fmr"].status) == (None, "undefined")
    # IR = (0 / 0)^0.5 * 4^0.5 does not exist either
    assert found["ir", "combined"].value is None


def test_a_group_lacking_evidence_makes_its_rates_differentials_insufficient():
    groups = dict(WORKED, D=(10, 0, 1000, 20))  # 10 impostor comparisons < min_comparisons = 30
    found = table(frame_of(groups))
    for (metric, rate), d in found.items():
        expected = "ok" if rate == "fnmr" else "insufficient"
        assert d.status == expected, (metric, rate)
    # values are still shown: D's FMR of 0 makes the FMR max/min ratio infinite, hence None
    assert found["max_min_difference", "fmr"].value == pytest.approx(0.009)
    assert found["max_min_ratio", "fmr"].value is None


def test_insufficiency_follows_the_target():
    # 1000 error-free impostor comparisons cannot show FMR <= 1e-4 (about 36,900 are needed)
    found = table(frame_of(WORKED, CoreConfig(target_fmr=1e-4)))
    assert all(d.status == ("ok" if d.rate == "fnmr" else "insufficient") for d in found.values())


def test_a_group_without_genuine_comparisons_is_left_out_of_fnmr_values():
    groups = dict(WORKED, D=(1000, 2, 0, 0))
    found = table(frame_of(groups))
    assert found["max_min_ratio", "fnmr"].value == pytest.approx(4.0)
    assert found["max_min_ratio", "fnmr"].groups == 3 and found["max_min_ratio", "fmr"].groups == 4
    assert found["max_min_ratio", "fnmr"].status == "insufficient"  # D's FNMR is unknown
    assert found["max_min_ratio", "fmr"].status == "ok"


def test_fewer_than_two_groups_give_no_value():
    found = table(frame_of({"A": (1000, 3, 1000, 40)}))
    assert all((d.value, d.low, d.high, d.status) == (None, None, None, "insufficient") for d in found.values())


def test_overall_row_never_enters_a_differential_and_sets_are_separate():
    alone = table(frame_of(WORKED))
    keys = [GroupKey("gate-3", "algo-2", "verification", "race", name) for name in WORKED]
    keys += [GroupKey("gate-3", "algo-2", "verification", OVERALL, OVERALL)]
    keys += [GroupKey("gate-3", "algo-2", "verification", "sex", name) for name in "FM"]
    rows = [unweighted_row(*c) for c in WORKED.values()]
    rows += [unweighted_row(3000, 500, 3000, 900), unweighted_row(1500, 5, 1500, 30), unweighted_row(1500, 8, 1500, 40)]
    frame = GroupFrame.from_counts(keys, np.array(rows, dtype=float))
    assert {d.scope.attribute for d in frame.differentials} == {"race", "sex"}
    # same values and the same bootstrap intervals whatever else the frame holds
    assert table(frame) == alone


def test_intervals_are_reproducible_and_follow_the_confidence():
    first, again = table(frame_of(WORKED)), table(frame_of(WORKED))
    wider = table(frame_of(WORKED, CoreConfig(confidence=0.99)))
    assert first == again
    for name, d in first.items():
        assert wider[name].value == d.value
        assert wider[name].low <= d.low and (wider[name].high is None or wider[name].high >= d.high), name


def test_intervals_shrink_around_the_value_with_more_evidence():
    # 100 times the comparisons at the same rates: the same values, intervals at least 4 times
    # narrower (about 10 for the exact bounds; the Gini's separately bounded minimum shrinks less)
    base = table(frame_of(WORKED))
    scaled = table(frame_of({name: tuple(100 * c for c in counts) for name, counts in WORKED.items()}))
    for name, d in scaled.items():
        assert d.value == pytest.approx(base[name].value)
        assert d.low <= d.value <= d.high
        factor = 0.3 if name[0] == "garbe" else 0.25
        assert d.high - d.low < factor * (base[name].high - base[name].low), name


def test_frame_difference_and_ratio_select_the_differentials():
    frame = frame_of(WORKED)
    assert frame.difference("fnmr")[SCOPE].value == pytest.approx(0.03)
    assert frame.ratio()[SCOPE].value == pytest.approx(9.0)
    with pytest.raises(ValueError):
        frame.ratio("combined")


def test_weighted_groups_use_weighted_rates():
    keys = [GroupKey("gate-3", "algo-2", "verification", "race", name) for name in "AB"]
    rows = np.array(
        [
            [1000, 2, 1000, 2, 1000, 2, 1000, 10, 1090, 100, 1990, 1000],  # FNMR 100 / 1090
            [1000, 4, 1000, 4, 1000, 4, 1000, 20, 1000, 20, 1000, 20],  # FNMR 0.02
        ],
        dtype=float,
    )
    found = table(GroupFrame.from_counts(keys, rows))
    assert found["max_min_ratio", "fnmr"].value == pytest.approx((100 / 1090) / 0.02)


@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-9, 1)), min_size=2, max_size=12))
def test_gini_equals_its_pairwise_definition(rates):
    rates = np.array(rates)
    count = len(rates)
    pairwise = sum(abs(a - b) for a, b in itertools.product(rates, rates))
    expected = 0.0 if rates.sum() == 0 else count / (count - 1) * pairwise / (2 * count**2 * rates.mean())
    assert gini(rates) == pytest.approx(expected, abs=1e-12)


def test_metrics_vectorize_over_many_rate_vectors():
    draws = np.array([[0.001, 0.003, 0.009], [0.01, 0.04, 0.02]])
    assert max_geomean_ratio(draws) == pytest.approx([3.0, 2.0])
    assert gini(draws) == pytest.approx([8 / 13, 3 / 7])


def _box_oracle(low, high, metric):
    """Brute force: the metric at every corner of the box and at random points inside it."""
    rng = np.random.default_rng(3)
    corners = np.array(list(itertools.product(*zip(low, high))))
    inside = low + (high - low) * rng.random((4000, len(low)))
    points = np.vstack([corners, inside])
    return metric(points), metric(corners)


@pytest.mark.parametrize("seed", range(25))
def test_box_bounds_hold_every_point_of_the_box_and_are_attained_where_exact(seed):
    from fairwatch.core import differentials as d

    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 7))
    low = rng.uniform(0, 0.02, count) * (rng.random(count) > 0.2)  # some boxes reach 0
    high = low + rng.uniform(1e-4, 0.02, count)
    for name, metric in d.PER_RATE.items():
        least, most = d.PER_RATE_BOUNDS[name](low, high)
        values, at_corners = _box_oracle(low, high, metric)
        finite = values[np.isfinite(values)]
        assert least <= finite.min() + 1e-12, name
        assert np.isinf(most) or finite.max() <= most + 1e-12, name
        if name in ("max_min_difference", "garbe"):  # exact maxima: attained at a corner
            assert most == pytest.approx(at_corners.max(), rel=1e-9), name
        if name == "max_min_difference":
            assert least == pytest.approx(max(0.0, low.max() - high.min()))
        if name == "max_min_ratio" and low.min() > 0:
            assert most == pytest.approx(at_corners.max(), rel=1e-9)


@pytest.mark.parametrize("rates", [(0.01, 0.01, 0.01, 0.01), (0.01, 0.015, 0.02, 0.01)])
def test_differential_intervals_cover_at_parity_and_at_a_moderate_difference(rates):
    # binomial draws of each group's errors (independent oracle: numpy), the true values from
    # the metric definitions; the simultaneous intervals must cover at least 95% of the time
    from fairwatch.core import differentials as d

    rng = np.random.default_rng(11)
    n, runs, config = 3000, 300, CoreConfig()
    fmr, fnmr = np.array(rates), np.array(rates[::-1]) * 2
    truth = {(m, "fmr"): float(f(fmr)) for m, f in d.PER_RATE.items()}
    truth |= {(m, "fnmr"): float(f(fnmr)) for m, f in d.PER_RATE.items()}
    truth |= {("fdr", "combined"): float(d.fdr(fmr, fnmr, 0.5)), ("ir", "combined"): float(d.inequity_rate(fmr, fnmr, 0.5)),
              ("garbe", "combined"): float(d.garbe(fmr, fnmr, 0.5))}
    covered = {name: 0 for name in truth}
    for _ in range(runs):
        groups = {f"g{i}": (n, rng.binomial(n, fmr[i]), n, rng.binomial(n, fnmr[i])) for i in range(len(rates))}
        found = table(frame_of(groups, config))
        for name, true in truth.items():
            low, high = found[name].low, found[name].high
            covered[name] += low <= true + 1e-12 and (high is None or true <= high + 1e-12)
    assert min(covered.values()) >= 0.95 * runs, covered


def test_max_min_ratio_is_judged_against_the_policy_ratio_by_its_interval():
    from scipy.stats import beta

    # 100,000 impostor comparisons per group; policy: no group's FMR above 2x another's
    config = CoreConfig(policy_ratio=2.0)
    cases = {
        "above_policy": {"A": (100_000, 100, 1000, 20), "B": (100_000, 1000, 1000, 20)},  # 10x
        "within_policy": {"A": (100_000, 1000, 1000, 20), "B": (100_000, 1100, 1000, 20)},  # 1.1x
        "not_distinguishable": {"A": (100_000, 100, 1000, 20), "B": (100_000, 200, 1000, 20)},  # 2x
    }
    for expected, groups in cases.items():
        d = table(frame_of(groups, config))["max_min_ratio", "fmr"]
        assert d.vs_policy == expected, (expected, d)
        # the interval behind the verdict, from scipy: per-group Clopper-Pearson at 1 - 0.05 / 2
        (n_a, x_a), (n_b, x_b) = ((g[0], g[1]) for g in groups.values())
        lo = {x: beta.ppf(0.0125, x, n - x + 1) for n, x in ((n_a, x_a), (n_b, x_b))}
        hi = {x: beta.ppf(0.9875, x + 1, n - x) for n, x in ((n_a, x_a), (n_b, x_b))}
        assert d.low == pytest.approx(max(1.0, lo[x_b] / hi[x_a]), rel=1e-6)
        assert d.high == pytest.approx(hi[x_b] / lo[x_a], rel=1e-6)
    # other metrics and configs without a policy carry no verdict
    assert table(frame_of(cases["above_policy"], config))["max_geomean", "fmr"].vs_policy is None
    assert table(frame_of(cases["above_policy"]))["max_min_ratio", "fmr"].vs_policy is None
    # a group lacking evidence (10 comparisons < min_comparisons) says so
    short = dict(cases["above_policy"], C=(10, 0, 1000, 20))
    assert table(frame_of(short, config))["max_min_ratio", "fmr"].vs_policy == "insufficient"


def test_the_policy_verdict_does_not_depend_on_the_rate_targets():
    groups = {"A": (10_000, 1, 1000, 10), "B": (10_000, 100, 1000, 10)}
    plain = table(frame_of(groups, CoreConfig(policy_ratio=2.0)))["max_min_ratio", "fmr"]
    targeted = table(frame_of(groups, CoreConfig(policy_ratio=2.0, target_fmr=1e-4)))["max_min_ratio", "fmr"]
    assert plain.vs_policy == targeted.vs_policy == "above_policy"
    assert targeted.status == "insufficient"  # A's FMR cannot be placed against 1e-4: the status says so
    one = table(frame_of({"A": groups["A"]}, CoreConfig(policy_ratio=2.0)), AttributeSet(*SCOPE))
    assert one["max_min_ratio", "fmr"].vs_policy == "insufficient"
