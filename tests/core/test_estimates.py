"""Per-group estimates and the GroupFrame, with fairlearn's MetricFrame as the oracle."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate
from fairwatch.core.config import CoreConfig
from fairwatch.core.estimates import RateEstimator, Status
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.intervals import BetaBinomialMixture, clopper_pearson, jeffreys
from fairwatch.core.layout import COL, INTERSECTION_SEP, N_COLUMNS, OVERALL, GroupKey
from fairwatch.testing.oracles import two_phase_rows

CLI_FIELDS = (
    "deployment", "algorithm", "attribute", "group", "impostor", "false_match", "genuine", "false_non_match",
    "fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high", "status",
)  # fmt: skip


def unweighted_row(impostor, false_match, genuine, false_non_match):
    return [impostor, false_match] * 3 + [genuine, false_non_match] * 3


def key(group="F", attribute="sex", mode="verification"):
    return GroupKey("gate-3", "algo-2", mode, attribute, group)


# --- fairlearn parity ------------------------------------------------------------------------------


def simulated_events(size=6000, seed=5):
    """Labeled comparisons: sex, race, truth, decision and the weight 1 / inclusion_prob."""
    rng = np.random.default_rng(seed)
    events = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], size),
            "race": rng.choice(["Asian", "Black", "White"], size, p=[0.2, 0.3, 0.5]),
            "genuine": rng.random(size) < 0.4,
        }
    )
    # error rates differ by group, so the parity check is not trivially about equal rates
    error_rate = 0.02 + 0.03 * (events.sex == "F") + 0.02 * (events.race == "Black")
    error = rng.random(size) < error_rate
    events["match"] = np.where(events.genuine, ~error, error)
    events["weight"] = 1 / rng.choice([1.0, 0.5, 0.2], size)
    return events


def brute_force_rows(events, attributes, weighted):
    """Counts rows computed one event at a time, straight from the layout's definitions."""
    rows = {}
    for event in events.itertuples():
        weight = event.weight if weighted else 1.0
        is_error = event.match != event.genuine  # impostor + match, or genuine + non-match
        base = COL["genuine_n"] if event.genuine else COL["impostor_n"]
        groups = [(OVERALL, OVERALL)] + [
            (INTERSECTION_SEP.join(combo), INTERSECTION_SEP.join(getattr(event, a) for a in combo))
            for combo in attributes
        ]
        for attribute, group in groups:
            row = rows.setdefault(key(group, attribute), [0.0] * N_COLUMNS)
            row[base] += 1
            row[base + 2] += weight
            row[base + 4] += weight**2
            if is_error:
                row[base + 1] += 1
                row[base + 3] += weight
                row[base + 5] += weight**2
    keys = list(rows)
    return keys, np.array([rows[k] for k in keys])


@pytest.mark.parametrize("weighted", [False, True])
def test_group_rates_equal_fairlearn_metricframe(weighted):
    events = simulated_events()
    attributes = [("sex",), ("race",), ("sex", "race")]
    frame = GroupFrame.from_counts(*brute_force_rows(events, attributes, weighted))
    y_true, y_pred = events.genuine.astype(int), events.match.astype(int)  # positive = same person / match
    weights = events.weight if weighted else np.ones(len(events))
    for combo in attributes:
        oracle = MetricFrame(
            metrics={"fmr": false_positive_rate, "fnmr": false_negative_rate},
            y_true=y_true,
            y_pred=y_pred,
            sensitive_features=events[list(combo)],
            sample_params={"fmr": {"sample_weight": weights}, "fnmr": {"sample_weight": weights}},
        )
        for labels, expected in oracle.by_group.iterrows():
            labels = labels if isinstance(labels, tuple) else (labels,)
            estimate = frame.by_group[key(INTERSECTION_SEP.join(labels), INTERSECTION_SEP.join(combo))]
            assert estimate.fmr.rate == pytest.approx(expected["fmr"], rel=1e-12)
            assert estimate.fnmr.rate == pytest.approx(expected["fnmr"], rel=1e-12)
        overall = frame.overall["gate-3", "algo-2", "verification"]
        assert overall.fmr.rate == pytest.approx(oracle.overall["fmr"], rel=1e-12)
        assert overall.fnmr.rate == pytest.approx(oracle.overall["fnmr"], rel=1e-12)


# --- the acceptance case and the status rules -------------------------------------------------------


def test_zero_false_matches_in_500_comparisons_with_target_1e_4_is_insufficient():
    frame = GroupFrame.from_counts([key("F")], np.array([unweighted_row(500, 0, 500, 5)]), CoreConfig(target_fmr=1e-4))
    row = frame.to_records()[0]
    assert row["fmr_status"] == "insufficient" and row["status"] == "insufficient"
    assert row["fmr_high"] > 1e-4  # the data allow an FMR far above the target
    assert row["fmr"] == 0.0 and row["fmr_low"] == 0.0


def excluded_by_the_mixture(errors, n, p, alpha):
    """Independent oracle of the status bounds: the Beta(1/2, 1/2) mixture likelihood ratio against
    rate p (Howard et al. 2021) reaches 1/alpha, i.e. p is outside the confidence sequence."""
    from scipy.special import betaln

    log_ratio = (betaln(0.5 + errors, 0.5 + n - errors) - betaln(0.5, 0.5)
                 - errors * math.log(p) - (n - errors) * math.log1p(-p))
    return log_ratio >= math.log(1 / alpha)


def status_oracle(errors, n, target, family=1, confidence=0.95, min_comparisons=30):
    if n == 0 or n < min_comparisons:
        return Status.INSUFFICIENT
    if target is None:
        return Status.NO_TARGET
    if excluded_by_the_mixture(errors, n, target, (1 - confidence) / family):
        return Status.ABOVE_TARGET if errors / n > target else Status.OK
    return Status.INSUFFICIENT


def rule_of_three_n(target, confidence=0.95):
    """Fewest error-free comparisons whose two-sided Clopper-Pearson upper bound is <= target."""
    return math.ceil(math.log((1 - confidence) / 2) / math.log1p(-target))


@pytest.mark.parametrize("family", [1, 40])
@pytest.mark.parametrize("target", [1e-4, 1e-3, 0.01])
def test_error_free_comparisons_become_ok_where_the_mixture_excludes_the_target(target, family):
    # the fewest error-free comparisons whose mixture ratio against the target reaches family / alpha
    needed = next(n for n in range(1, int(30 / target)) if excluded_by_the_mixture(0, n, target, 0.05 / family))
    estimator = RateEstimator(CoreConfig())
    before, at = estimator.estimate(np.array([[needed - 1, 0] * 3, [needed, 0] * 3], dtype=float), target,
                                    family=family)
    assert (before.status, at.status) == (Status.INSUFFICIENT, Status.OK)
    assert before.family == at.family == family
    # a monitor's status costs more than one fixed-sample look (the rule of three's 3.69 / t) ...
    three = rule_of_three_n(target)
    assert three == pytest.approx(3.69 / target, rel=0.01)  # -log(0.025) = 3.69
    [one_look] = estimator.estimate(np.array([[three, 0] * 3], dtype=float), target, family=family)
    assert one_look.high <= target and one_look.status == Status.INSUFFICIENT
    # ... about log(family sqrt(pi n) / alpha) / t
    assert needed * target == pytest.approx(math.log(family * math.sqrt(math.pi * needed) / 0.05), rel=0.02)


@pytest.mark.parametrize(
    ("errors", "n", "target", "family"),
    [
        (5, 10_000, 1e-4, 1),  # fixed-sample low 1.6e-4 > target, but not yet for a monitor
        (12, 20_000, 1e-4, 1),  # shown above
        (12, 20_000, 1e-4, 500),  # not among 500 rates judged together
        (2, 10_000, 1e-4, 1),  # point estimate 2e-4, the bounds hold 1e-4
        (1, 100_000, 1e-4, 1),  # fixed-sample high 5.6e-5 <= target, but not for a monitor
        (1, 200_000, 1e-4, 1),
        (1, 200_000, 1e-4, 40),
        (3, 10, 1e-4, 1),  # far above target, but below min_comparisons = 30
        (0, 0, 1e-4, 1),
        (0, 29, None, 1),
        (0, 30, None, 1),
        (30, 30, None, 1),  # without a target: measured, never "ok"
    ],
)
def test_status_rules(errors, n, target, family):
    [estimate] = RateEstimator(CoreConfig()).estimate(np.array([[n, errors] * 3], dtype=float), target, family=family)
    assert estimate.status == status_oracle(errors, n, target, family)
    low, high = clopper_pearson(errors, n)
    assert (estimate.low, estimate.high) == (low, high)


def test_status_rules_cover_every_status():
    seen = {status_oracle(*case) for case in [(12, 20_000, 1e-4), (1, 200_000, 1e-4), (2, 10_000, 1e-4), (0, 30, None)]}
    assert seen == set(Status)


def test_the_family_is_every_judged_rate_of_a_deployment_algorithm_and_mode():
    config = CoreConfig(target_fmr=1e-3, target_fnmr=0.05)
    keys = [GroupKey("gate-3", "algo-2", "verification", "*", "*"), key("F"), key("M"), key("Black", "race"),
            GroupKey("gate-4", "algo-2", "verification", "sex", "F")]
    rows = np.array([unweighted_row(3000, 3, 300, 9), unweighted_row(1000, 1, 100, 3), unweighted_row(2000, 2, 20, 6),
                     unweighted_row(10, 0, 100, 3), unweighted_row(1000, 1, 100, 3)], dtype=float)
    frame = GroupFrame.from_counts(keys, rows, config)
    # gate-3: both rates of its 4 rows, the few comparisons of Black and M included (they count from
    # the first comparison, so the family does not grow once every group has appeared): 8
    families = {g.key: (g.fmr.family, g.fnmr.family) for g in (*frame.overall.values(), *frame.by_group.values())}
    assert set(families.values()) == {(8, 8), (2, 2)}
    assert families[keys[4]] == (2, 2)
    records = {(r["deployment"], r["group"]): r for r in frame.to_records()}
    assert records["gate-3", "F"]["status_family"] == 8
    bounds = BetaBinomialMixture().interval(1, 1000, 1 - 0.05 / 8)
    assert (records["gate-3", "F"]["fmr_anytime_low"], records["gate-3", "F"]["fmr_anytime_high"]) == bounds


def test_no_comparisons_give_no_rate():
    keys = [key("F"), key("M")]
    rows = np.array([unweighted_row(0, 0, 100, 1), unweighted_row(100, 1, 0, 0)])
    frame = GroupFrame.from_counts(keys, rows)
    female, male = frame.to_records()
    assert female["fmr"] is None and female["fmr_vs_target"] is None and female["fmr_status"] == "insufficient"
    assert (female["fmr_low"], female["fmr_high"]) == (0.0, 1.0)
    assert male["fnmr"] is None and male["status"] == "insufficient"
    json.dumps(frame.to_dict(), allow_nan=False)


def test_group_status_combines_both_rates():
    config = CoreConfig(target_fmr=1e-3, target_fnmr=0.05)
    rows = np.array(
        [
            unweighted_row(50_000, 10, 5000, 100),  # fmr ok, fnmr ok
            unweighted_row(50_000, 200, 100, 1),  # fmr above target, fnmr insufficient
            unweighted_row(50_000, 10, 100, 1),  # fmr ok, fnmr insufficient
        ]
    )
    family = 6  # three groups x two rates judged together
    expected = [(status_oracle(r[1], r[0], 1e-3, family), status_oracle(r[7], r[6], 0.05, family)) for r in rows]
    assert expected == [(Status.OK, Status.OK), (Status.ABOVE_TARGET, Status.INSUFFICIENT),
                        (Status.OK, Status.INSUFFICIENT)]
    frame = GroupFrame.from_counts([key("A"), key("B"), key("C")], rows, config)
    assert [r["status"] for r in frame.to_records()] == ["ok", "above_target", "insufficient"]


# --- intervals, anytime bounds, weights, realized vs intended ---------------------------------------


def test_rows_carry_interval_anytime_bounds_and_realized_vs_intended():
    config = CoreConfig(target_fmr=1e-3)
    frame = GroupFrame.from_counts([key("F")], np.array([unweighted_row(20_000, 40, 2000, 60)]), config)
    [row] = frame.to_records()
    assert set(CLI_FIELDS) <= set(row)
    assert (row["impostor"], row["false_match"], row["genuine"], row["false_non_match"]) == (20_000, 40, 2000, 60)
    assert row["fmr"] == 0.002 and row["fnmr"] == 0.03
    assert (row["fmr_low"], row["fmr_high"]) == clopper_pearson(40, 20_000)
    assert (row["fmr_anytime_low"], row["fmr_anytime_high"]) == BetaBinomialMixture().interval(40, 20_000)
    assert row["fmr_anytime_low"] < row["fmr_low"] < row["fmr_high"] < row["fmr_anytime_high"]
    assert row["status_family"] == 1  # the only rate with a target
    assert row["fmr_n_eff"] == 20_000.0
    assert row["fmr_vs_target"] == pytest.approx(2.0)
    assert row["fmr_vs_target_low"] == pytest.approx(row["fmr_low"] / 1e-3)
    assert row["fmr_vs_target_high"] == pytest.approx(row["fmr_high"] / 1e-3)
    # 2e-3 against 1e-3: the fixed-sample interval excludes the target, the monitor's bounds do not
    assert row["fmr_low"] > 1e-3 and row["fmr_anytime_low"] < 1e-3
    assert row["fmr_status"] == "insufficient" and row["fnmr_target"] is None and row["fnmr_vs_target"] is None


def test_identification_mode_names_the_rates_fpir_and_fnir():
    frame = GroupFrame.from_counts([key("F", mode="identification")], np.array([unweighted_row(100, 1, 100, 2)]))
    [row] = frame.to_records()
    assert (row["fmr_label"], row["fnmr_label"]) == ("FPIR", "FNIR")
    assert row["mode"] == "identification"


def test_jeffreys_method_is_available():
    frame = GroupFrame.from_counts([key()], np.array([unweighted_row(500, 3, 500, 4)]), method="jeffreys")
    [row] = frame.to_records()
    assert (row["fmr_low"], row["fmr_high"]) == jeffreys(3, 500)
    with pytest.raises(ValueError):
        GroupFrame.from_counts([key()], np.array([unweighted_row(500, 3, 500, 4)]), method="wald")


def test_weighted_rate_uses_horvitz_thompson_weights():
    # 990 matches of weight 1 and 10 non-matches of weight 10: FNMR = 100 / 1090, not 10 / 1000
    row = [1000, 0, 1000, 0, 1000, 0, 1000, 10, 1090, 100, 1990, 1000]
    [record] = GroupFrame.from_counts([key()], np.array([row])).to_records()
    assert record["fnmr"] == pytest.approx(100 / 1090)
    assert record["fnmr_n_eff"] < 1000 and record["false_non_match"] == 10
    assert record["fnmr_low"] < 100 / 1090 < record["fnmr_high"]


def test_rows_of_the_same_key_are_summed_like_buckets_of_a_window():
    buckets = np.array([unweighted_row(300, 1, 200, 2), unweighted_row(200, 2, 300, 3)])
    window = GroupFrame.from_counts([key(), key()], buckets)
    total = GroupFrame.from_counts([key()], buckets.sum(axis=0, keepdims=True))
    assert window.to_dict() == total.to_dict()


@pytest.mark.parametrize(
    "row",
    [
        unweighted_row(10, 11, 10, 0),  # more errors than comparisons
        unweighted_row(-1, 0, 10, 0),
        [np.nan] + unweighted_row(10, 0, 10, 0)[1:],
    ],
)
def test_impossible_counts_are_rejected(row):
    with pytest.raises(ValueError):
        GroupFrame.from_counts([key()], np.array([row], dtype=float))


def test_an_empty_window_gives_an_empty_frame():
    frame = GroupFrame.from_counts([], np.empty((0, N_COLUMNS)))
    assert frame.to_dict() == {"groups": [], "differentials": [], "homogeneity": []}


def test_every_attribute_set_and_rate_gets_its_homogeneity_test():
    from fairwatch.core.differentials import AttributeSet
    from fairwatch.core.homogeneity import homogeneity

    keys = [key("F"), key("M"), key("Black", "race"), key("White", "race"), key("Asian", "race")]
    rows = np.array([unweighted_row(5000, 5, 1000, 30), unweighted_row(5000, 25, 1000, 31),
                     unweighted_row(3000, 3, 600, 12), unweighted_row(3000, 4, 600, 14),
                     unweighted_row(3000, 2, 600, 13)], dtype=float)
    frame = GroupFrame.from_counts(keys, rows, CoreConfig())
    assert set(frame.homogeneity) == {(AttributeSet("gate-3", "algo-2", "verification", a), r)
                                      for a in ("sex", "race") for r in ("fmr", "fnmr")}
    sex = AttributeSet("gate-3", "algo-2", "verification", "sex")
    groups = [g for k, g in frame.by_group.items() if k.attribute == "sex"]
    assert frame.homogeneity[sex, "fmr"] == homogeneity([g.fmr for g in groups], 0.95, 30)
    # 5 against 25 false matches in 5,000 each: a difference; FNMR 30 against 31: none shown
    assert (frame.homogeneity[sex, "fmr"].verdict, frame.homogeneity[sex, "fnmr"].verdict) == (
        "differ", "no_difference_shown")
    records = {(r["attribute"], r["rate"]): r for r in frame.to_dict()["homogeneity"]}
    assert records["sex", "fmr"]["p_value"] == frame.homogeneity[sex, "fmr"].p_value
    assert records["race", "fnmr"]["groups"] == 3


def test_a_group_is_ok_only_when_every_rate_is_shown_within_its_target():
    # FMR: 0 false matches in 100,000 against target 1e-4 is shown within (high 3.7e-5); FNMR has no target
    from fairwatch.core.estimates import GroupEstimate
    from fairwatch.core.layout import GroupKey

    estimator = RateEstimator(CoreConfig())
    [fmr] = estimator.estimate(np.array([[100_000, 0] * 3], dtype=float), 1e-4)
    [fnmr] = estimator.estimate(np.array([[5_000, 40] * 3], dtype=float), None)
    [fnmr_ok] = estimator.estimate(np.array([[5_000, 40] * 3], dtype=float), 0.02)
    key = GroupKey("d", "a", "verification", "race", "g")
    assert (fmr.status, fnmr.status, fnmr_ok.status) == (Status.OK, Status.NO_TARGET, Status.OK)
    assert GroupEstimate(key, fmr, fnmr).status == Status.NO_TARGET
    assert GroupEstimate(key, fmr, fnmr_ok).status == Status.OK


@pytest.mark.parametrize("pi", [1.0, 0.25, 0.1])
@pytest.mark.parametrize("fnmr", [1e-3, 1e-2])
def test_partial_verification_intervals_cover_and_never_grant_ok_at_the_target(pi, fnmr):
    # simulated design (numpy draws, independent of the estimator): 5,000 genuine and 20,000 impostor
    # comparisons, matches all verified, non-matches verified with probability pi; target = true FNMR
    rng = np.random.default_rng(int(pi * 100) + int(fnmr * 1e4))
    runs = 400
    rows = two_phase_rows(rng, runs, 20_000, 1e-3, 5_000, fnmr, pi)
    frame = GroupFrame.from_counts([key(group=f"g{i}") for i in range(runs)], rows,
                                   CoreConfig(target_fnmr=fnmr, min_comparisons=1))
    estimates = [g.fnmr for g in frame.by_group.values()]
    covered = sum(e.low <= fnmr <= e.high for e in estimates)
    wrongly_ok = sum(e.status == Status.OK for e in estimates)
    assert covered >= 0.94 * runs, (covered, runs)
    assert wrongly_ok <= 0.025 * runs + 5, wrongly_ok  # 0.025 allowed, plus binomial noise of 400 runs


def test_a_population_whose_verified_members_are_all_errors_takes_the_other_stratum_from_its_group():
    from scipy.stats import beta

    # 50 false matches verified (weight 1), no impostor non-match verified: the non-match stratum's
    # probability is unknown from the impostors alone
    alone = np.array([[50, 50, 50, 50, 50, 50, 1000, 0, 1000, 0, 1000, 0]], dtype=float)
    [fmr] = [g.fmr for g in GroupFrame.from_counts([key()], alone, CoreConfig(target_fmr=0.01)).by_group.values()]
    assert (fmr.low, fmr.high, fmr.status) == (0.0, 1.0, Status.INSUFFICIENT)
    # with one false non-match verified at weight 5000, non-matches were verified with probability 2e-4:
    # the FMR's lower bound maps the share's exact lower bound (all 50 of 50) through (1, 2e-4)
    known = np.array([[50, 50, 50, 50, 50, 50, 1001, 1, 6000, 5000, 25_001_000, 25_000_000]], dtype=float)
    [fmr] = [g.fmr for g in GroupFrame.from_counts([key()], known, CoreConfig(target_fmr=0.01)).by_group.values()]
    share_low = beta.ppf(0.025, 50, 1)
    want = share_low * 2e-4 / (share_low * 2e-4 + (1 - share_low) * 1.0)
    assert fmr.low == pytest.approx(want, rel=1e-6) and fmr.high == 1.0


def test_inclusion_probabilities_that_vary_within_a_stratum_fall_back_to_effective_counts_and_cover():
    # a window over two buckets: non-matches verified with probability 1, then 0.1 (numpy draws)
    rng = np.random.default_rng(21)
    runs, fnmr, fmr = 300, 0.01, 0.005
    rows = (two_phase_rows(rng, runs, 20_000, fmr, 20_000, fnmr, 1.0)
            + two_phase_rows(rng, runs, 20_000, fmr, 20_000, fnmr, 0.1))
    frame = GroupFrame.from_counts([key(group=f"g{i}") for i in range(runs)], rows, CoreConfig(min_comparisons=1))
    groups = list(frame.by_group.values())
    assert all(g.fnmr.error_inclusion == -1.0 for g in groups if g.fnmr.errors)  # the sums show it varies
    assert sum(g.fnmr.low <= fnmr <= g.fnmr.high for g in groups) >= 0.93 * runs
    assert sum(g.fmr.low <= fmr <= g.fmr.high for g in groups) >= 0.93 * runs


@pytest.mark.parametrize("window", [None, 12])
def test_no_status_of_a_deployment_is_ever_wrong_over_100_looks_at_more_than_the_stated_rate(window):
    from fairwatch.testing.looks import status_looks

    # 4 groups + overall, both rates exactly at their targets, 100 looks at growing (and trailing)
    # windows: wrong means `ok` or `above_target` for a rate equal to its target
    runs = 200
    result = status_looks(4, 500, 200, 1e-3, 1.0, 0.02, 1.0, 1.0, window, 0.0, runs=runs, looks=100, seed=3)
    assert result["family"] == 10
    allowed = 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    assert result["ever_wrong"] <= allowed, result
    assert result["ever_wrong_one_look"] > 0.5, result  # the one-look rule, judged the same way, fails
