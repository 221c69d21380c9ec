"""The verified scores per group, read from the store, against the raw records: the latest revision
of each primary verdict counts (a correction that arrives after the first was stored replaces it),
an independent review never counts, weights are 1 / inclusion_prob, and the groups are those the
sink counts (overall, each attribute, the intersection)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from fairwatch.contracts.topics import VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import ClickHouseSink
from fairwatch.store.verified_scores import read_verified_scores, verified_thresholds
from fairwatch.stream.processor import BatchProcessor, RawMessage
from fairwatch.testing.workload import T0, make_workload

CONFIG = CoreConfig(intersections=(("sex", "race"),))


def reviews_of(workload, seed: int) -> list[dict]:
    """Independent reviews of a third of the verified events, each saying the opposite of the verdict
    that counts, with a higher revision number than any primary one: none of it may count."""
    rng = random.Random(seed)
    out = []
    for event_id, docs in sorted(workload.outcomes.items()):
        if event_id in workload.events and rng.random() < 0.3:
            latest = max(docs, key=lambda d: d["revision"])
            out.append({**latest, "truth": "genuine" if latest["truth"] == "impostor" else "impostor",
                        "reviewer": "rev-second", "revision": 9, "inclusion_prob": 1.0, "review": "independent"})
    return out


def seed(store, workload, reviews) -> None:
    """Events and first verdicts in one batch; corrections (revision 1) and the reviews in a second,
    after the first labels were stored."""
    migrate(store)
    first, second = [], []
    for kind, key, value in workload.messages:
        (second if kind == VERIFIED_OUTCOMES and b'"revision": 1' in value else first).append((kind, key, value))
    assert sum(1 for _, _, v in second if b'"revision": 1' in v) > 20
    second += [(VERIFIED_OUTCOMES, r["event_id"].encode(), json.dumps(r).encode()) for r in reviews]
    processor, sink, state = BatchProcessor(CONFIG), ClickHouseSink(store, CONFIG), {}
    offset = 0
    for batch in (first, second):
        messages = [RawMessage(k, k, 0, offset + i, key, value) for i, (k, key, value) in enumerate(batch)]
        offset += len(batch)
        result = processor.process(messages, lambda event_id, partition: state.get(event_id))
        sink.write(result.sink)
        for event_id, (_, value) in result.state_changes.items():
            state.pop(event_id, None) if value is None else state.__setitem__(event_id, value)
    (reviewed,), = store.query("SELECT count() FROM independent_reviews FINAL")
    assert reviewed == len(reviews) > 50


def oracle(workload, start, end, pick=max) -> dict[tuple, list[tuple[float, float]]]:
    """(deployment, algorithm, mode, attribute, group, truth) -> sorted (score, weight), by loops over
    the raw documents: the highest revision of each event's primary verdicts (``pick=min``: the first)."""
    out = defaultdict(list)
    for event_id, event in workload.events.items():
        at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        if event_id not in workload.outcomes or not start <= at < end:
            continue
        latest = pick(workload.outcomes[event_id], key=lambda d: d["revision"])
        subject = event["subject"]
        groups = [("*", "*"), *subject.items(), ("sex&race", f"{subject['sex']}&{subject['race']}")]
        for attribute, group in groups:
            key = (event["deployment"], event["algorithm"], event["mode"], attribute, group, latest["truth"])
            out[key].append((event["score"], 1 / latest["inclusion_prob"]))
    return {key: sorted(rows) for key, rows in out.items()}


@pytest.fixture(scope="module")
def workload():
    return make_workload(2_500, seed=26, hours=2, revision_share=0.08, sampled_share=0.4, duplicate_share=0.02)


def test_verified_scores_equal_the_raw_records(migrated_store, workload):
    reviews = reviews_of(workload, 1)
    seed(migrated_store, workload, reviews)
    windows = [(T0, T0 + timedelta(hours=2)), (T0 + timedelta(minutes=30), T0 + timedelta(minutes=91))]
    for start, end in windows:
        want = oracle(workload, start, end)
        found = read_verified_scores(migrated_store, start, end, CONFIG.intersections)
        got = {}
        for key, group in found.items():
            got[(*key, "impostor")] = sorted(zip(group.impostor_scores.tolist(), group.impostor_weights.tolist()))
            if key.mode == "identification":
                assert group.genuine_scores is None  # FNIR(t) needs the mate's score
                continue
            got[(*key, "genuine")] = sorted(zip(group.genuine_scores.tolist(), group.genuine_weights.tolist()))
        want = {k: v for k, v in want.items() if not (k[2] == "identification" and k[5] == "genuine")}
        got = {k: v for k, v in got.items() if v}
        assert got == want
    # the corrections matter: counting first verdicts instead would read other scores per truth
    assert oracle(workload, *windows[0], pick=min) != oracle(workload, *windows[0])
    # a scope narrows the read to one deployment and algorithm
    scoped = read_verified_scores(migrated_store, *windows[0], (), deployment="site-1", algorithm="algo-1")
    assert scoped and {k[:2] for k in scoped} == {("site-1", "algo-1")}
    assert {k.attribute for k in scoped} == {"*", "sex", "race", "age"}
    assert read_verified_scores(migrated_store, *windows[0], (), algorithm="algo-other") == {}
    thresholds = verified_thresholds(migrated_store, *windows[0])
    assert thresholds == {scope: [0.6] for scope in {k[:3] for k in found}}


def test_an_empty_window_reads_nothing(migrated_store):
    migrate(migrated_store)
    assert read_verified_scores(migrated_store, T0, T0 + timedelta(hours=1), CONFIG.intersections) == {}
