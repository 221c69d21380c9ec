"""Score curves against a brute-force sweep (fairwatch.testing.oracles: plain loops over weighted
records at every threshold, sharing nothing with the core), ties at the thresholds and scores exactly
equal to them included."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from fairwatch.core.layout import GroupKey
from fairwatch.core.score_curves import (
    FOUND,
    TOO_LITTLE_EVIDENCE,
    GroupScores,
    RateCurve,
    ScoreCurves,
    impostors_needed,
    threshold_for_fmr,
    weighted_histogram,
)
from fairwatch.testing.oracles import sweep_interval, sweep_sums, sweep_threshold

CONFIDENCE = 0.95


# ------------------------------------------------------------------------------- the data


def records(rng: random.Random, n: int, center: float, operating: float, levels: int) -> list[tuple[float, float]]:
    """n (score, weight): scores on a grid of ``levels`` steps (many ties), weights of a two-phase
    design: at or above ``operating`` (a match) verified always, below it with probability 0.5, 0.25
    or 0.1 (weight 2, 4 or 10)."""
    out = []
    for _ in range(n):
        score = min(max(round(rng.gauss(center, 0.15) * levels) / levels, 0.0), 1.0)
        weight = 1.0 if score >= operating else rng.choice((2.0, 4.0, 10.0))
        out.append((score, weight))
    return out


def group_scores(impostors, genuine) -> GroupScores:
    def arrays(rows):
        return (np.array([s for s, _ in rows]), np.array([w for _, w in rows])) if rows is not None else (None, None)

    return GroupScores(*arrays(impostors), *arrays(genuine))


def close(a, b, rel=1e-9) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-15)


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", range(6))
def test_det_points_equal_a_brute_force_sweep_with_ties_and_thresholds_on_scores(seed):
    rng = random.Random(seed)
    impostors = records(rng, rng.randrange(200, 1500), 0.3, 0.6, 50)
    genuine = records(rng, rng.randrange(100, 800), 0.75, 0.6, 50)
    scores = sorted({s for s, _ in impostors + genuine})
    # thresholds on scores (ties at t), between them, below and above every score
    thresholds = scores[::3] + [(a + b) / 2 for a, b in zip(scores[::7], scores[1::7])] + [-1.0, 2.0]
    fmr = RateCurve.of([s for s, _ in impostors], [w for _, w in impostors], thresholds, "above", CONFIDENCE)
    fnmr = RateCurve.of([s for s, _ in genuine], [w for _, w in genuine], thresholds, "below", CONFIDENCE)
    for i, t in enumerate(thresholds):
        for curve, rows, above in ((fmr, impostors, True), (fnmr, genuine, False)):
            sums = sweep_sums(rows, t, above)
            assert fmr.thresholds[i] == t
            assert np.allclose(curve.sums[i], sums, rtol=1e-12), (t, curve.sums[i], sums)
            rate, low, high = sweep_interval(sums)
            assert close(float(curve.rate[i]), rate) and close(float(curve.low[i]), low) \
                and close(float(curve.high[i]), high), (t, curve.rate[i], curve.low[i], curve.high[i], rate, low, high)
    # the ends: a threshold below every score accepts every comparison, one above rejects them all
    assert fmr.rate[-2] == 1.0 and fnmr.rate[-2] == 0.0 and fmr.rate[-1] == 0.0 and fnmr.rate[-1] == 1.0


@pytest.mark.parametrize("seed", range(8))
def test_the_target_threshold_equals_a_brute_force_sweep(seed):
    rng = random.Random(100 + seed)
    impostors = records(rng, rng.randrange(1500, 4000), 0.35, 0.7, 120)
    genuine = records(rng, rng.randrange(200, 600), 0.8, 0.7, 120)
    candidates = sorted({s for s, _ in impostors + genuine})
    group = group_scores(impostors, genuine)
    for target in (0.2, 0.05, 0.01, 0.003, 1e-4):
        got = threshold_for_fmr(candidates, group.impostor_scores, group.impostor_weights, target,
                                group.genuine_scores, group.genuine_weights, CONFIDENCE)
        want = sweep_threshold(candidates, impostors, genuine, target)
        assert got.status == want["status"], (target, got, want)
        assert got.impostors == len(impostors) and got.impostors_needed == impostors_needed(target)
        if got.status == TOO_LITTLE_EVIDENCE:
            assert (got.threshold, got.low, got.high, got.fmr, got.fnmr) == (None,) * 5
            continue
        assert (got.threshold, got.low, got.high) == (want["threshold"], want["low"], want["high"])
        for name in ("fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high"):
            assert close(getattr(got, name), want[name]), (target, name, getattr(got, name), want[name])
        assert got.low <= got.threshold <= got.high
        assert got.fmr <= target and got.fnmr_low <= got.fnmr <= got.fnmr_high


def test_too_little_evidence_below_the_needed_impostors_and_a_threshold_above_it():
    target = 1e-3
    needed = impostors_needed(target)
    assert needed == math.ceil(math.log(0.025) / math.log(1 - target))  # Clopper-Pearson at 0 errors
    # scores 0..n-1 and one genuine score above them all: the top candidate has no false match
    for n, status in ((needed - 1, TOO_LITTLE_EVIDENCE), (needed, FOUND)):
        impostors = np.arange(n, dtype=float)
        candidates = np.append(impostors, n + 1.0)
        got = threshold_for_fmr(candidates, impostors, np.ones(n), target, np.array([n + 1.0]), np.ones(1))
        assert got.status == status
        if status == FOUND:
            # only above every impostor score is the upper bound (no false match) within the target
            assert got.high == n + 1.0 and got.low < got.high
    # no impostor at all
    empty = threshold_for_fmr([0.5, 0.7], np.array([]), np.array([]), 0.01)
    assert empty.status == TOO_LITTLE_EVIDENCE and empty.impostors == 0


def test_score_curves_per_group_and_overall_equal_the_sweep():
    rng = random.Random(7)
    scope = ("gate-a", "algo-1", "verification")
    groups, raw = {}, {}
    everyone = ([], [])
    for label, center in (("Black", 0.4), ("White", 0.3)):
        imp, gen = records(rng, 2500, center, 0.65, 80), records(rng, 400, 0.8, 0.65, 80)
        raw[label] = (imp, gen)
        everyone[0].extend(imp)
        everyone[1].extend(gen)
        groups[GroupKey(*scope, "race", label)] = group_scores(imp, gen)
    groups[GroupKey(*scope, "*", "*")] = group_scores(*everyone)
    raw["*"] = everyone
    # a second algorithm is a scope of its own: its scores never enter the first one's grid
    other = ("gate-a", "algo-2", "verification")
    groups[GroupKey(*other, "*", "*")] = group_scores(records(rng, 100, 0.0, 0.5, 1000), None)
    curves = ScoreCurves(groups, bins=10)
    candidates = sorted({s for s, _ in everyone[0] + everyone[1]})
    assert curves.candidates[scope].tolist() == candidates
    assert curves.keys(scope)[0].group == "*"
    found = curves.thresholds_for_fmr(0.01)
    for key, result in found.items():
        if key[:3] != scope:
            assert result.fnmr is None  # no genuine scores given
            continue
        want = sweep_threshold(candidates, *raw[key.group], 0.01)
        assert result.status == want["status"] == FOUND
        assert (result.threshold, result.low, result.high) == (want["threshold"], want["low"], want["high"])
        assert close(result.fnmr, want["fnmr"])
    points = curves.det_points({scope: [0.5, candidates[10], 0.5]})  # repeated thresholds count once
    assert len(points) == 3 * 2
    for p in points:
        imp, gen = raw[p["group"]]
        assert close(p["fmr"], sweep_interval(sweep_sums(imp, p["threshold"], True))[0])
        assert close(p["fnmr_high"], sweep_interval(sweep_sums(gen, p["threshold"], False))[2])
        assert p["impostor"] == len(imp) and p["genuine"] == len(gen)
    # histograms: counts and weighted shares per bin, the last bin closed
    edges = np.linspace(candidates[0], candidates[-1], 11)
    for h in curves.histograms():
        if h["algorithm"] != "algo-1":
            assert h["truth"] == "impostor"  # no genuine side without genuine scores
            continue
        rows = raw[h["group"]][0 if h["truth"] == "impostor" else 1]
        assert h["edges"] == edges.tolist()
        counts, weights = [0.0] * 10, [0.0] * 10
        for score, weight in rows:
            b = next(i for i in range(10) if edges[i] <= score < edges[i + 1] or (i == 9 and score == edges[10]))
            counts[b] += 1
            weights[b] += weight
        assert h["counts"] == counts
        assert np.allclose(h["shares"], np.array(weights) / sum(weights), rtol=1e-12)


def test_identification_without_mate_scores_gives_fpir_alone():
    key = GroupKey("gate-a", "algo-1", "identification", "*", "*")
    imp = np.linspace(0, 1, 5000)
    curves = ScoreCurves({key: GroupScores(imp, np.ones(5000), None, None)})
    [point] = curves.det_points({key[:3]: [0.9]})
    assert point["fnmr"] is None and point["genuine"] is None and close(point["fmr"], 500 / 5000)
    result = curves.thresholds_for_fmr(0.05)[key]
    assert result.status == FOUND and result.fnmr is None and result.fmr <= 0.05


@pytest.mark.parametrize("seed", range(4))
def test_mates_not_listed_are_misses_at_every_threshold_and_exact_only_from_their_cut(seed):
    """Identification: mated searches whose mate was not listed have no score; the sweep holds them as
    scores of -inf (below every threshold), the core as ``genuine_missed``."""
    rng = random.Random(300 + seed)
    impostors = records(rng, 3000, 0.35, 0.7, 120)
    listed = records(rng, 400, 0.8, 0.7, 120)
    missed = [rng.choice((1.0, 2.0, 10.0)) for _ in range(rng.randrange(1, 60))]
    genuine = listed + [(float("-inf"), w) for w in missed]
    key = GroupKey("watch", "algo-1", "identification", "*", "*")
    group = replace(group_scores(impostors, listed), genuine_missed=np.array(missed), missed_cut=0.7)
    curves = ScoreCurves({key: group})
    candidates = sorted({s for s, _ in impostors + listed})
    assert curves.candidates[key[:3]].tolist() == candidates  # no score for the missed ones
    thresholds = [0.5, 0.7, 0.75, 0.9]
    _, fnir = curves.curves(key, thresholds)
    for i, t in enumerate(thresholds):
        sums = sweep_sums(genuine, t, False)
        assert np.allclose(fnir.sums[i], sums, rtol=1e-12)
        assert all(close(float(a), b) for a, b in zip((fnir.rate[i], fnir.low[i], fnir.high[i]), sweep_interval(sums)))
    points = curves.det_points({key[:3]: thresholds})
    assert [p["fnmr_exact"] for p in points] == [False, True, True, True]  # below the cut: an upper bound
    assert all(p["genuine"] == len(genuine) for p in points)
    for target in (0.05, 0.01):
        got = curves.thresholds_for_fmr(target)[key]
        want = sweep_threshold(candidates, impostors, genuine, target)
        for name in ("threshold", "low", "high", "fnmr", "fnmr_low", "fnmr_high"):
            assert close(getattr(got, name), want[name]), (target, name)
        assert got.fnmr_exact == (got.low >= 0.7)
    [hist] = [h for h in curves.histograms() if h["truth"] == "genuine"]
    assert hist["not_listed"] == len(missed)
    assert math.isclose(sum(hist["shares"]) + hist["not_listed_share"], 1.0)
    assert math.isclose(hist["not_listed_share"], sum(missed) / (sum(missed) + sum(w for _, w in listed)))


def test_histogram_counts_ties_on_edges_into_the_upper_bin():
    counts, weighted = weighted_histogram([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, -0.1], [1, 2, 3, 4, 5, 6, 7],
                                          [0.0, 0.5, 1.0])
    assert counts.tolist() == [2.0, 3.0] and weighted.tolist() == [3.0, 12.0]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="finite"):
        RateCurve.of([0.1, float("nan")], [1, 1], [0.5], "above")
    with pytest.raises(ValueError, match="positive"):
        RateCurve.of([0.1, 0.2], [1, 0], [0.5], "above")
    with pytest.raises(ValueError, match="sorted"):
        threshold_for_fmr([0.5, 0.4], [0.1], [1.0], 0.01)
    with pytest.raises(ValueError, match="target"):
        impostors_needed(0.0)
