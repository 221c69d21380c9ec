"""Rank-1 and rank-R FNIR per group, read from the store, against the raw records (plain loops: the
final primary revision, its mate_rank, weights 1 / inclusion_prob), and a small case computed by
hand: a mate at rank 2 misses at rank 1 and is identified at rank 2; a mate listed below the
threshold misses at every rank; a correction that names another rank replaces the first verdict's.
The mate's own score enters FNIR(t) (a mate not listed: a miss at every threshold from the cut)."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest
from fairwatch.contracts.topics import MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.core.identification_ranks import IdentificationRanks, RankTally
from fairwatch.core.layout import COL, GroupKey
from fairwatch.core.score_curves import ScoreCurves
from fairwatch.store.group_counts import read_counts
from fairwatch.store.identification_ranks import read_rank_tallies
from fairwatch.store.verified_scores import read_verified_scores
from fairwatch.testing.oracles import sweep_interval
from fairwatch.testing.workload import T0, Workload, contrary_reviews, make_workload, rank_records, store_workload

CONFIG = CoreConfig(intersections=(("sex", "race"),))


def fnir_sums(records: list[tuple[int, float, int]], rank: int) -> tuple[float, ...]:
    """(n, errors, w, w_err, w2, w2_err) of FNIR at rank <= ``rank``, by a loop."""
    n = errors = w = w_err = w2 = w2_err = 0.0
    for identified, weight, _ in records:
        miss = identified == 0 or identified > rank
        n, w, w2 = n + 1, w + weight, w2 + weight * weight
        if miss:
            errors, w_err, w2_err = errors + 1, w_err + weight, w2_err + weight * weight
    return n, errors, w, w_err, w2, w2_err


@pytest.fixture(scope="module")
def workload():
    return make_workload(3_000, seed=41, hours=2, revision_share=0.08, sampled_share=0.4, search_share=0.9)


def test_rank_rates_equal_the_raw_records(migrated_store, workload):
    store_workload(migrated_store, workload, CONFIG, contrary_reviews(workload, 3))
    windows = [(T0, T0 + timedelta(hours=2)), (T0 + timedelta(minutes=30), T0 + timedelta(minutes=91))]
    for start, end in windows:
        want = rank_records(workload, start, end)
        tallies = read_rank_tallies(migrated_store, start, end, CONFIG.intersections)
        assert {(k.deployment, k.algorithm, k.attribute, k.group) for k in tallies} == set(want)
        assert {k.mode for k in tallies} == {"identification"}
        ranks = IdentificationRanks(tallies)
        rows = ranks.records()
        for scope in ranks.scopes:  # R runs to the longest list of the scope
            longest = max(r[2] for k, records in want.items() if k[:2] == scope[:2] for r in records)
            assert ranks.max_rank[scope] == longest
        for row in rows:
            records = want[(row["deployment"], row["algorithm"], row["attribute"], row["group"])]
            sums = fnir_sums(records, row["rank"])
            rate, low, high = sweep_interval(sums)
            assert (row["mated"], row["missed"]) == sums[:2]
            assert math.isclose(row["fnir"], rate, rel_tol=1e-12)
            assert math.isclose(row["fnir_low"], low, rel_tol=1e-9, abs_tol=1e-15)
            assert math.isclose(row["fnir_high"], high, rel_tol=1e-9, abs_tol=1e-15)
        # the data has every case: rank-1 misses identified lower down, and misses at every rank
        overall = [r for r in rows if r["attribute"] == "*"]
        assert any(a["fnir"] > b["fnir"] for a, b in zip(overall, overall[1:]) if a["deployment"] == b["deployment"])
        assert all(r["fnir"] > 0 for r in overall)
    # the corrections matter: a corrected search (now non-mated, or mated without a named mate) moves
    assert sum(len(v) for v in rank_records(workload, *windows[0]).values()) > 500


def _event(event_id: str, minute: int, scores: list[float], subject: dict, list_length: int = 3) -> dict:
    threshold = 0.6
    top = scores[0] if scores else 0.1
    return {"event_id": event_id, "occurred_at": (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"),
            "deployment": "watch", "algorithm": "algo-1", "mode": "identification", "score": top,
            "threshold": threshold, "decision": "match" if top >= threshold else "non_match", "subject": subject,
            "candidates": [{"rank": r, "score": s, "candidate_id": f"face-{event_id}-{r}"}
                           for r, s in enumerate(scores, start=1)],
            "list_length": list_length, "gallery_size": 1000}


def _verdict(event_id: str, truth: str, mate_rank: int | None, revision: int = 0, prob: float = 1.0) -> dict:
    doc = {"event_id": event_id, "verified_at": (T0 + timedelta(hours=3 + revision)).isoformat().replace("+00:00", "Z"),
           "truth": truth, "reviewer": "rev-1", "revision": revision, "inclusion_prob": prob}
    return doc if mate_rank is None else {**doc, "mate_rank": mate_rank}


F, M = {"sex": "F", "race": "Black"}, {"sex": "M", "race": "White"}
HAND = [  # event, verdicts; identified rank by hand
    (_event("a", 1, [0.9, 0.5], F), [_verdict("a", "genuine", 1)]),  # rank 1
    (_event("b", 2, [0.95, 0.8, 0.3], F), [_verdict("b", "genuine", 2)]),  # rank 2: a rank-1 miss
    (_event("c", 3, [0.7, 0.4], M), [_verdict("c", "genuine", 2)]),  # listed below the threshold: missed
    (_event("d", 4, [0.8], M), [_verdict("d", "genuine", None)]),  # not listed: missed
    (_event("e", 5, [0.9], M, list_length=5), [_verdict("e", "genuine", 1, prob=0.5)]),  # rank 1, weight 2
    (_event("f", 6, [0.65, 0.62, 0.61], F),  # corrected: rank 3
     [_verdict("f", "genuine", 1), _verdict("f", "genuine", 3, revision=1)]),
    (_event("g", 7, [0.9], F), [_verdict("g", "impostor", None)]),  # non-mated: no FNIR
    ({**_event("h", 8, [0.9], F), "candidates": None}, [_verdict("h", "genuine", None)]),  # no list
]


@pytest.fixture
def hand_store(migrated_store):
    w = Workload()
    for event, verdicts in HAND:
        event = {k: v for k, v in event.items() if v is not None}
        if "candidates" not in event:
            event = {k: v for k, v in event.items() if k not in ("list_length", "gallery_size")}
        w.events[event["event_id"]] = event
        w.outcomes[event["event_id"]] = verdicts
        w.messages.append((MATCH_EVENTS, event["event_id"].encode(), json.dumps(event).encode()))
        w.messages += [(VERIFIED_OUTCOMES, v["event_id"].encode(), json.dumps(v).encode()) for v in verdicts]
    store_workload(migrated_store, w, CONFIG)
    return migrated_store


def test_a_small_case_computed_by_hand(hand_store):
    start, end = T0, T0 + timedelta(hours=1)
    tallies = read_rank_tallies(hand_store, start, end, CONFIG.intersections)
    overall = GroupKey("watch", "algo-1", "identification", "*", "*")
    # a: rank 1, b: 2, c: missed, d: missed, e: rank 1 weighing 2, f: rank 3 (its correction counts)
    assert tallies[overall] == RankTally.of([1, 2, 0, 0, 1, 3], [1, 1, 1, 1, 2, 1], longest=5)
    ranks = IdentificationRanks(tallies)
    assert ranks.max_rank[overall[:3]] == 5
    curve = ranks.curve(overall)
    np.testing.assert_allclose(curve.fnir, [4 / 7, 3 / 7, 2 / 7, 2 / 7, 2 / 7])  # b, c, d, f miss at rank 1
    np.testing.assert_allclose(curve.identification_rate, [3 / 7, 4 / 7, 5 / 7, 5 / 7, 5 / 7])
    female = ranks.curve(GroupKey("watch", "algo-1", "identification", "sex", "F"))  # a, b, f: unweighted
    np.testing.assert_allclose(female.fnir, [2 / 3, 1 / 3, 0, 0, 0])
    assert female.high[0] == pytest.approx(0.99159, abs=1e-5)  # Clopper-Pearson of 2 in 3
    headline = {(r["attribute"], r["group"]): r for r in ranks.headline()}
    assert headline[("sex", "M")]["rank_1_fnir"] == pytest.approx(2 / 4)  # c, d miss; e (weight 2) does not
    assert headline[("sex", "M")]["last_fnir"] == pytest.approx(2 / 4)
    # FNIR at the last rank is the FNIR the counts hold (mode identification)
    keys, rows = read_counts(hand_store, start, end)
    counted = dict(zip(keys, rows))[overall]
    assert counted[COL["genuine_w_err"]] / counted[COL["genuine_w"]] == pytest.approx(2 / 8)  # h counts there
    assert curve.sums[-1][3] / (curve.sums[-1][2] + 1) == pytest.approx(2 / 8)  # h: decision match, a hit
    # FNIR(t): the mate's own score; d has none and misses at every t from its cut (0.6)
    scores = read_verified_scores(hand_store, start, end, CONFIG.intersections)[overall]
    assert sorted(zip(scores.genuine_scores.tolist(), scores.genuine_weights.tolist())) == [
        (0.4, 1.0), (0.61, 1.0), (0.8, 1.0), (0.9, 1.0), (0.9, 1.0), (0.9, 2.0)]  # c, f, b, a, h, e
    assert scores.genuine_missed.tolist() == [1.0] and scores.missed_cut == 0.6
    curves = ScoreCurves({overall: scores})
    _, fnir = curves.curves(overall, [0.6, 0.85, 0.5])
    np.testing.assert_allclose(fnir.rate, [2 / 8, 4 / 8, 2 / 8])  # c and d; + f, b; below the cut: an upper bound
    points = curves.det_points({overall[:3]: [0.5, 0.6]})
    assert [(p["threshold"], p["fnmr_exact"]) for p in points] == [(0.5, False), (0.6, True)]
