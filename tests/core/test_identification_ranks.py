"""FNIR at rank <= R against a loop over the searches (weights, ranks past the longest list, groups
without a search), and the CMC it gives."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from fairwatch.core.identification_ranks import IdentificationRanks, RankCurve, RankTally, identified_rank
from fairwatch.core.layout import GroupKey
from fairwatch.testing.oracles import sweep_interval


def loop_sums(searches: list[tuple[int, float]], rank: int) -> tuple[float, ...]:
    n = errors = w = w_err = w2 = w2_err = 0.0
    for identified, weight in searches:
        n, w, w2 = n + 1, w + weight, w2 + weight * weight
        if identified == 0 or identified > rank:
            errors, w_err, w2_err = errors + 1, w_err + weight, w2_err + weight * weight
    return n, errors, w, w_err, w2, w2_err


@pytest.mark.parametrize("seed", range(6))
def test_rank_curves_equal_a_loop_over_the_searches(seed):
    rng = random.Random(seed)
    longest = rng.choice((1, 3, 10, 50))
    searches = [(rng.choice([0] * 2 + [1] * 10 + list(range(1, longest + 1))), rng.choice((1.0, 1.0, 2.0, 10.0)))
                for _ in range(rng.randrange(20, 600))]
    tally = RankTally.of([r for r, _ in searches], [w for _, w in searches], longest=longest)
    curve = RankCurve.of(tally, longest)
    assert curve.ranks.tolist() == list(range(1, longest + 1))
    for i, rank in enumerate(curve.ranks.tolist()):
        sums = loop_sums(searches, rank)
        assert np.allclose(curve.sums[i], sums, rtol=1e-12)
        rate, low, high = sweep_interval(sums)
        assert math.isclose(curve.fnir[i], rate, rel_tol=1e-12)
        assert math.isclose(curve.low[i], low, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(curve.high[i], high, rel_tol=1e-9, abs_tol=1e-15)
    assert np.all(np.diff(curve.fnir) <= 1e-15)  # FNIR does not grow with R
    np.testing.assert_allclose(curve.identification_rate, 1 - curve.fnir)
    # the tally from aggregated rows (what the store reads) is the same
    rows = [(r, 1, w, w * w) for r, w in searches]
    assert RankTally.from_rows(rows, longest) == tally


def test_scopes_share_their_longest_list_and_empty_groups_have_no_rate():
    scope = ("watch", "algo-1", "identification")
    groups = {GroupKey(*scope, "*", "*"): RankTally.of([1, 2, 5, 0], [1.0] * 4, longest=5),
              GroupKey(*scope, "sex", "F"): RankTally.of([1, 0], [1.0, 1.0], longest=2),
              GroupKey(*scope, "sex", "M"): RankTally.of([], [], longest=3),
              GroupKey("gate-b", "algo-1", "identification", "*", "*"): RankTally.of([1], [1.0], longest=1)}
    ranks = IdentificationRanks(groups)
    assert ranks.max_rank == {scope: 5, ("gate-b", "algo-1", "identification"): 1}
    rows = [r for r in ranks.records() if r["group"] == "F"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and [r["fnir"] for r in rows] == [0.5] * 5
    empty = [r for r in ranks.records() if r["group"] == "M"]
    assert all(r["fnir"] is None and r["mated"] == 0 for r in empty)
    assert [k.group for k in ranks.keys(scope)] == ["*", "F", "M"]
    [overall] = [h for h in ranks.headline() if h["deployment"] == "watch" and h["group"] == "*"]
    assert (overall["rank_1_fnir"], overall["last_fnir"], overall["last_rank"]) == (0.75, 0.25, 5)


def test_identified_rank_and_bad_input():
    scores = [0.9, 0.7, 0.7, 0.5]
    assert [identified_rank(r, scores, 0.7) for r in (None, 0, 1, 2, 3, 4, 5)] == [0, 0, 1, 2, 3, 0, 0]
    with pytest.raises(ValueError, match="weights"):
        RankTally.of([1, 2], [1.0])
    with pytest.raises(ValueError, match="positive"):
        RankTally.of([1], [0.0])
    with pytest.raises(ValueError, match="beyond the longest"):
        RankTally.of([4], [1.0], longest=3)
    with pytest.raises(ValueError, match="start at 1"):
        RankTally.of([1], [1.0]).sums([0])
