"""The detection cycle drives river-style detector banks; their alarms and statistics equal the
vectorized engine run over every stream's stacked log likelihood ratios (checked against a brute-force
sum over change points in test_detectors), stream by stream, with resets after alarms."""

from __future__ import annotations

import math

import numpy as np
from fairwatch.detect.detectors import DEFAULT_GRID, MixtureShiryaevRoberts
from fairwatch.detect.evaluation import run_detectors
from fairwatch.detect.streams import Stream


def _streams(rng: np.random.Generator, T: int) -> list[Stream]:
    out = []
    for g, (edge, rate) in enumerate([(0.002, 0.001), (0.002, 0.008), (0.01, 0.01), (0.05, 0.2)]):
        n = rng.poisson(800, T).astype(float)
        x = rng.binomial(n.astype(int), rate).astype(float)
        out.append(Stream("error_rate_drift" if g < 3 else "score_drift", "a", "verification", "race", f"g{g}",
                          "fmr", "sr_band", None, edge, x=x, n=n, dispersion=(1.0, 1.5, 1.0, 2.0)[g]))
    for g, rate in enumerate([0.004, 0.02]):
        n, n_ref = rng.poisson(800, T).astype(float), rng.poisson(900, T).astype(float)
        x, x_ref = (rng.binomial(m.astype(int), r).astype(float) for m, r in ((n, rate), (n_ref, 0.004)))
        out.append(Stream("disparity_breach", "a", "verification", "race", f"d{g}", "fmr", "sr_disparity:ref", None,
                          None, x=x, n=n, x_ref=x_ref, n_ref=n_ref, ratio=1.5, dispersion=(1.0, 3.0)[g]))
    return out


def test_detector_banks_equal_the_engine_over_stacked_ratios():
    rng = np.random.default_rng(5)
    T, threshold = 400, 1e4
    streams = _streams(rng, T)
    alarms, log_stats = run_detectors(streams, threshold, T)

    # each stream's likelihood ratios divided by its dispersion (quasi-likelihood), written out: for a
    # rate stream, per alternative r_k, the count at most the larger of 4 quasi-sd and one error above
    # the null's mean and the alternative's own mean (a burst counts as a few sd, a drift keeps its evidence)
    grid = np.array(DEFAULT_GRID)
    ratios = []
    for s in streams:
        phi = s.dispersion
        if s.type == "disparity_breach":  # pairs: no cap
            pi0 = s.ratio * s.n / (s.ratio * s.n + s.n_ref)
            pi1 = s.ratio * grid * s.n[:, None] / (s.ratio * grid * s.n[:, None] + s.n_ref[:, None])
            llr = (s.x[:, None] * np.log(pi1 / pi0[:, None])
                   + s.x_ref[:, None] * (np.log1p(-pi1) - np.log1p(-pi0)[:, None]))
        else:
            p0, p1 = s.edge, s.edge * grid
            cap = np.maximum((s.n * p0 + 4 * np.sqrt(phi * s.n * p0 * (1 - p0)) + 1)[:, None], s.n[:, None] * p1)
            x = np.minimum(s.x[:, None], cap)
            llr = x * np.log(p1 / p0) + (s.n[:, None] - x) * (np.log1p(-p1) - np.log1p(-p0))
        ratios.append(np.where(((s.n > 0) & (s.n_ref > 0))[:, None], llr, 0.0) / phi
                      if s.type == "disparity_breach" else llr / phi)
    engine = MixtureShiryaevRoberts(len(streams), math.log(threshold), n_alternatives=len(DEFAULT_GRID))
    want_alarms, want_stats = engine.run(np.stack(ratios, axis=1))

    np.testing.assert_array_equal(alarms, want_alarms)
    np.testing.assert_allclose(log_stats, want_stats, rtol=1e-12)
    # the drifted streams alarm, repeatedly (reset after each alarm); the quiet one never does
    assert alarms[:, 1].sum() >= 2 and alarms[:, 5].sum() >= 2 and alarms[:, 0].sum() == 0


def test_alert_values_use_the_strata_of_the_whole_group_as_reports_do():
    # one bucket: 20,000 impostors (false matches all verified, 1 in 10 non-matches verified at weight 10)
    # and 5,000 genuine comparisons with no verified false non-match: the FNMR's upper bound must carry
    # the weight an unseen false non-match would have, as in GroupFrame (the reports' path)
    from fairwatch.core.config import CoreConfig
    from fairwatch.core.estimates import RateEstimator
    from fairwatch.core.groupframe import GroupFrame
    from fairwatch.core.layout import GENUINE, GroupKey
    from fairwatch.detect.evaluation import _value

    row = np.array([[20 + 1998, 20, 20 + 19980, 20, 20 + 199800, 20, 5000, 0, 5000, 0, 5000, 0]], dtype=float)
    stream = Stream("error_rate_drift", "a", "verification", "race", "g", "fnmr", "sr_band", None, 0.01,
                    x=row[:, 7], n=row[:, 6], weighted=row[:, GENUINE], counts=row)
    rate, low, high, n = _value(stream, 0, 1, RateEstimator(CoreConfig()))
    [group] = GroupFrame.from_counts([GroupKey("d", "a", "verification", "race", "g")], row).by_group.values()
    assert (rate, low, high) == (group.fnmr.rate, group.fnmr.low, group.fnmr.high)
    blind = Stream(*stream.__dict__.values())  # the same stream without the group's other population
    blind.counts = None
    assert high > 5 * _value(blind, 0, 1, RateEstimator(CoreConfig()))[2]


def test_streams_carry_the_dispersion_and_bound_of_their_own_baseline_buckets():
    from fairwatch.core.config import CoreConfig
    from fairwatch.core.layout import COLUMNS, IMPOSTOR
    from fairwatch.detect.detectors import Baseline
    from fairwatch.detect.dispersion import estimate_dispersion, pooled_dispersion, split_dispersion
    from fairwatch.detect.policy import parse_policy
    from fairwatch.detect.streams import build_streams

    rng = np.random.default_rng(21)
    policy = parse_policy("deployment: d\nattributes: [race]\nbaseline: {duration: 1d}\nmetrics: [fmr]\n"
                          "policy_ratio: 2\nreference: {race: A}\n")
    bucket, day = 60, 86_400
    hourly = {"A": np.ones(24), "B": rng.gamma(4.0, 0.25, 24)}  # B's rate varies by the hour
    counts, base = [], {}
    for group, factor in hourly.items():
        n = rng.poisson(300, 1440)
        x = rng.binomial(n, 0.01 * np.repeat(factor, 60))
        base[group] = (x.astype(float), n.astype(float))
        for t in range(1440):
            row = [0.0] * len(COLUMNS)
            row[IMPOSTOR.start], row[IMPOSTOR.start + 1] = float(n[t]), float(x[t])
            row[IMPOSTOR.start + 2], row[IMPOSTOR.start + 3] = float(n[t]), float(x[t])
            row[IMPOSTOR.start + 4], row[IMPOSTOR.start + 5] = float(n[t]), float(x[t])
            counts.append(("a", "verification", "race", group, t * bucket, *row))
    streams = build_streams(policy, CoreConfig(), counts, [], 0, day, day, day + 3600)
    found = {s.group: s for s in streams if s.type == "error_rate_drift"}
    # two banded streams: each bound at 1 - 0.01 / 2, so that both hold at once with probability 0.99
    assert len(found) == 2 and all(0 < s.edge < 1 for s in found.values())
    pooled = dict(zip(base, pooled_dispersion(list(base.values()), bucket, policy.baseline_confidence)))
    for group, (x, n) in base.items():
        want = max(estimate_dispersion(x, n, bucket, policy.baseline_confidence).phi, pooled[group])
        assert found[group].dispersion == want
        edge = Baseline.from_counts(x.sum(), n.sum(), policy.band, 1 - 0.01 / 2, want).edge
        assert math.isclose(found[group].edge, edge, rel_tol=1e-12)
    assert found["B"].dispersion > 10  # an hour of 18,000 comparisons at CV 0.5: about 46
    # the disparity pair B vs A: the dispersion of B's share of the pair's errors, not of either rate
    [pair] = [s for s in streams if s.type == "disparity_breach"]
    (xa, na), (xb, nb) = base["A"], base["B"]
    assert pair.dispersion == split_dispersion(xb, nb, xa, na, bucket, policy.baseline_confidence).phi
