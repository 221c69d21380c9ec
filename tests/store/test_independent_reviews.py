"""Independent reviews: stored apart, never counted, and their disagreements correct the rates."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import numpy as np
import pytest
from fairwatch.audit.estimates import window_metrics
from fairwatch.audit.window import Window
from fairwatch.contracts.records import parse_verified_outcome
from fairwatch.contracts.topics import VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame, decision_inclusions
from fairwatch.core.layout import GroupKey
from fairwatch.core.misclassification import ReviewerError, corrected_rates
from fairwatch.core.monitor import Monitor
from fairwatch.store.independent_reviews import read_review_agreement
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.processor import BatchProcessor, RawMessage
from fairwatch.testing.workload import T0, make_workload, oracle_counts

CONFIG = CoreConfig(intersections=(("sex", "race"),))


def with_reviews(workload, share: float, error: float, seed: int) -> list[dict]:
    """Independent reviews of a share of the labelled events: the first verdict's truth, flipped
    with probability ``error`` (drawn with random, not with fairwatch); a tenth of them by a third
    reviewer too, and some reviewers review an event twice (the later review counts)."""
    rng = random.Random(seed)
    reviews = []
    for event_id, docs in sorted(workload.outcomes.items()):
        if event_id not in workload.events or rng.random() >= share:
            continue
        first = next(d for d in docs if d["revision"] == 0)
        first = {k: v for k, v in first.items() if k != "mate_rank"}  # a review's verdict may differ: no mate
        for reviewer in ("rev-second", "rev-third")[: 1 + (rng.random() < 0.1)]:
            truth = first["truth"]
            if rng.random() < error:
                truth = "genuine" if truth == "impostor" else "impostor"
            if rng.random() < 0.05:  # an earlier review of the same reviewer, replaced by the one below
                reviews.append({**first, "truth": "impostor", "reviewer": reviewer, "review": "independent",
                                "verified_at": "2026-11-25T05:59:00Z", "superseded": True})
            reviews.append({**first, "truth": truth, "reviewer": reviewer, "review": "independent"})
    return reviews


def sent(reviews: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "superseded"} for r in reviews]


def messages(workload, reviews: list[dict]) -> list[RawMessage]:
    raw = [(kind, key, value) for kind, key, value in workload.messages]
    # half of the reviews single, half inside a batch envelope mixed with primary verdicts
    singles, batched = reviews[::2], reviews[1::2]
    raw += [(VERIFIED_OUTCOMES, r["event_id"].encode(), json.dumps(r).encode()) for r in sent(singles)]
    primaries = [max(docs, key=lambda d: d["revision"]) for _, docs in sorted(workload.outcomes.items())][:len(batched)]
    envelope = {"batch_version": 1, "bucket": 0, "partitions": 1, "records": [*sent(batched), *primaries]}
    raw.append((VERIFIED_OUTCOMES, b"bucket-0", json.dumps(envelope).encode()))
    # the envelope takes the fast path, where the processor takes it apart
    from fairwatch.contracts.envelopes import decode_valid_batch

    fast = decode_valid_batch(raw[-1][2], "verified_outcome")
    assert fast is not None and {r.review for r in fast.records} == {"primary", "independent"}
    return [RawMessage(kind, kind, 0, i, key, value) for i, (kind, key, value) in enumerate(raw)]


def brute_force(workload, reviews) -> dict:
    """(deployment, algorithm, mode) -> {decision: [pairs, disagreements]} by plain loops: each
    reviewer's latest review against the event's first verdict."""
    found: dict = {}
    for review in reviews:
        if review.get("superseded"):
            continue
        event = workload.events[review["event_id"]]
        first = next(d for d in workload.outcomes[review["event_id"]] if d["revision"] == 0)
        cell = found.setdefault((event["deployment"], event["algorithm"], event["mode"]), {}).setdefault(
            event["decision"], [0, 0])
        cell[0] += 1
        cell[1] += review["truth"] != first["truth"]
    return found


def test_an_independent_review_parses_and_a_bad_one_is_refused():
    doc = {"event_id": "e1", "verified_at": "2026-11-25T07:00:00Z", "truth": "genuine", "reviewer": "r2",
           "revision": 0, "inclusion_prob": 1, "review": "independent"}
    review = parse_verified_outcome(doc)
    assert review.review == "independent" and review.to_dict()["review"] == "independent"
    assert "review" not in parse_verified_outcome({**doc, "review": "primary"}).to_dict()
    from fairwatch.contracts.records import ContractError

    with pytest.raises(ContractError, match="review"):
        parse_verified_outcome({**doc, "review": "second"})


def test_reviews_are_stored_apart_never_counted_and_read_as_a_brute_force_recount(migrated_store):
    workload = make_workload(1_500, seed=61, hours=2, revision_share=0.05, sampled_share=0.0)
    reviews = with_reviews(workload, 0.3, 0.05, seed=1)
    result = BatchProcessor(CONFIG).process(messages(workload, reviews), lambda event_id, partition: None)
    ClickHouseSink(migrated_store, CONFIG).write(result.sink)
    (stored,), = migrated_store.query("SELECT count() FROM independent_reviews FINAL")
    assert stored == len(reviews) > 100  # every review, superseded ones too, is kept
    # the counts are those of the primary verdicts alone
    keys, rows = [], []
    for (*key, _bucket), row in oracle_counts(workload).items():
        keys.append(GroupKey(*key))
        rows.append(row)
    want = GroupFrame.from_counts(keys, np.array(rows), CONFIG).to_records()
    window = Window(T0, T0 + timedelta(hours=2))
    frame, document = window_metrics(migrated_store, window, CONFIG)
    assert [(g["group"], g["impostor"], g["false_match"], g["genuine"], g["false_non_match"]) for g in frame.to_records()] \
        == [(g["group"], g["impostor"], g["false_match"], g["genuine"], g["false_non_match"]) for g in want]
    # the agreement equals a recount
    found = read_review_agreement(migrated_store, window.start, window.end)
    oracle = brute_force(workload, reviews)
    assert set(found) == set(oracle)
    corrected_scopes = {(e["deployment"], e["algorithm"], e["mode"]) for event_id, e in workload.events.items()
                        if any(d["revision"] > 0 for d in workload.outcomes.get(event_id, []))}
    for scope, (matches, non_matches, corrected_labels) in found.items():
        assert corrected_labels is (scope in corrected_scopes)
        assert (matches.pairs, matches.disagreements) == tuple(oracle[scope].get("match", [0, 0]))
        assert (non_matches.pairs, non_matches.disagreements) == tuple(oracle[scope].get("non_match", [0, 0]))
    # and every group's corrected rates are corrected_rates over its counts and its scope's reviews
    assert document["labels"]["double_review"] is True
    assert document["labels"]["independent_reviews"] == sum(not r.get("superseded") for r in reviews)
    corrected = {(c["deployment"], c["mode"], c["attribute"], c["group"]): c for c in document["corrected"]}
    keys_sum = {}
    for key, row in zip(keys, rows):
        keys_sum[key] = keys_sum.get(key, 0) + np.array(row)
    checked = 0
    for key, row in keys_sum.items():
        scope = oracle.get(key[:3])
        if scope is None:
            continue
        m_pi, n_pi = decision_inclusions(row[None, :])
        if not (0 < m_pi[0] <= 1 and 0 < n_pi[0] <= 1):
            continue
        want = corrected_rates(row, m_pi[0], n_pi[0], ReviewerError(*scope.get("match", [0, 0])),
                               ReviewerError(*scope.get("non_match", [0, 0])),
                               corrected_labels=key[:3] in corrected_scopes)
        got = corrected[key.deployment, key.mode, key.attribute, key.group]
        assert (got["fmr_low"], got["fmr_high"]) == pytest.approx((want.fmr_low, want.fmr_high), rel=1e-9)
        assert (got["fnmr_low"], got["fnmr_high"]) == pytest.approx((want.fnmr_low, want.fnmr_high), rel=1e-9)
        checked += 1
    assert checked > 10


def test_the_monitor_leaves_independent_reviews_out():
    workload = make_workload(300, seed=62, hours=1)
    reviews = with_reviews(workload, 1.0, 1.0, seed=2)  # every review disagrees
    from fairwatch.contracts.records import parse_match_event

    events = [parse_match_event(e) for e in workload.events.values()]
    primaries = [parse_verified_outcome(d) for docs in workload.outcomes.values() for d in docs]
    plain, mixed = Monitor(CONFIG), Monitor(CONFIG)
    plain.update(events + primaries)
    mixed.update(events + [parse_verified_outcome(r) for r in sent(reviews)] + primaries)
    assert plain.snapshot().to_records() == mixed.snapshot().to_records()
