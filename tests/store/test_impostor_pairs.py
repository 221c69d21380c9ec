"""Impostor pairs by demographic pair, read from the store (chDB and ClickHouse 18.16), against a
brute-force recount written here from the raw records: the latest revision of each primary verdict
counts (corrections stored after the first verdicts replace them, independent reviews never count),
weights are 1 / inclusion_prob, the reference's labels are the event's, and a search's other side is
the rank-1 candidate it listed at or above the threshold. The identification rows must also add up
to each probe group's FPIR as the sink counted it (``group_counts``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.impostor_pairs import (
    NOT_LISTED,
    TOO_LITTLE_EVIDENCE,
    UNLABELED,
    UNLISTED,
    pair_matrices,
)
from fairwatch.core.layout import COL
from fairwatch.store.group_counts import read_counts
from fairwatch.store.impostor_pairs import read_pair_sums
from fairwatch.store.migrations import migrate
from fairwatch.testing.workload import (
    T0,
    contrary_reviews,
    make_workload,
    store_workload,
)

CONFIG = CoreConfig(intersections=(("sex", "race"),), min_comparisons=30)
WINDOWS = [(T0, T0 + timedelta(hours=2)), (T0 + timedelta(minutes=30), T0 + timedelta(minutes=91))]


@pytest.fixture(scope="module")
def workload():
    return make_workload(3_000, seed=26, hours=2, revision_share=0.08, sampled_share=0.4, duplicate_share=0.02,
                         reference_share=0.9)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _label(labels: dict | None, parts: list[str]) -> str:
    if labels is None or not all(p in labels for p in parts):
        return ""
    return "&".join(labels[p] for p in parts)


def brute_force(w, start: datetime, end: datetime, sets: list[str], pick=max) -> dict[tuple, list[float]]:
    """(deployment, algorithm, mode, attribute, subject label, pair label) -> the six sums (n, errors, w,
    w_err, w2, w2_err) of the verified impostor comparisons of events that occurred in [start, end);
    ``pick=min``: the first primary verdict counts instead of the latest."""
    out: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 6)
    for event_id, event in w.events.items():
        primary = [o for o in w.outcomes.get(event_id, []) if o.get("review", "primary") == "primary"]
        if not primary or not start <= _time(event["occurred_at"]) < end:
            continue
        verdict = pick(primary, key=lambda o: o["revision"])
        if verdict["truth"] != "impostor":
            continue
        # a search with its list: a false positive when it listed anyone at or above the threshold
        listed = [c for c in event.get("candidates", []) if c["score"] >= event["threshold"]]
        error = bool(listed) if "candidates" in event else event["decision"] == "match"
        weight = 1 / verdict["inclusion_prob"]
        for attribute in sets:
            parts = attribute.split("&")
            subject = _label(event["subject"], parts)
            if event["mode"] == "verification":
                pair = _label(event.get("reference"), parts) or UNLABELED
            elif not error:
                pair = NOT_LISTED
            elif "candidates" not in event:
                pair = UNLISTED
            else:
                pair = _label(listed[0].get("groups"), parts) or UNLABELED
            sums = out[(event["deployment"], event["algorithm"], event["mode"], attribute, subject, pair)]
            for i, value in enumerate((1, error, weight, weight * error, weight * weight, weight * weight * error)):
                sums[i] += value
    return dict(out)


SETS = ["age", "race", "sex", "sex&race"]


def test_pair_sums_and_matrices_equal_a_recount_of_the_raw_records(migrated_store, workload):
    reviews = contrary_reviews(workload, 2)
    store_workload(migrated_store, workload, CONFIG, reviews)
    (reviewed,), = migrated_store.query("SELECT count() FROM independent_reviews FINAL")
    assert reviewed == len(reviews) > 50
    for start, end in WINDOWS:
        want = brute_force(workload, start, end, SETS)
        rows = read_pair_sums(migrated_store, start, end, CONFIG.intersections)
        got = {tuple(r[:6]): list(r[6:]) for r in rows}
        assert set(got) == set(want)
        for key, sums in want.items():
            assert got[key] == pytest.approx(sums, rel=1e-12), key
        # what the cases cover: labelled pairs both ways, references and candidates without a label,
        # searches without a list, and false positives with a labelled rank-1 candidate
        pairs = {(k[2], k[5]) for k in want}
        assert {("verification", UNLABELED), ("identification", UNLABELED), ("identification", UNLISTED),
                ("identification", NOT_LISTED), ("identification", "Black")} <= pairs
        assert any(k[2] == "verification" and k[5] not in (UNLABELED, k[4]) for k in want)  # cross-group

        matrices = {tuple(m.scope): m for m in pair_matrices(rows, CONFIG)}
        keys, counts = read_counts(migrated_store, start, end)
        counted = {tuple(k): row for k, row in zip(keys, counts)}
        assert {s[3] for s in matrices} == set(SETS)
        for scope, m in matrices.items():
            for g in m.groups:
                mine = {k[5]: v for k, v in want.items() if k[:4] == scope and k[4] == g}
                row_w = sum(v[2] for v in mine.values())
                group = counted[(*scope, g)]  # the sink's counts of g's impostor comparisons
                assert (sum(v[0] for v in mine.values()), row_w) == pytest.approx(
                    (group[COL["impostor_n"]], group[COL["impostor_w"]]), rel=1e-12)
                for h in m.references:
                    cell, sums = m.cells[g, h], mine.get(h, [0.0] * 6)
                    denominator = row_w if m.identification else sums[2]
                    n = sum(v[0] for v in mine.values()) if m.identification else sums[0]
                    assert m.cell_sums(g, h)[0] == n
                    if n == 0:
                        assert cell.rate is None
                        continue
                    assert cell.rate == pytest.approx(sums[3] / denominator, rel=1e-12), (scope, g, h)
                    assert cell.low <= cell.rate <= cell.high
                    assert (m.status(g, h) == TOO_LITTLE_EVIDENCE) == (n < CONFIG.min_comparisons)
                if m.identification:
                    # the row adds up to g's FPIR: labelled candidates, unlabelled ones, searches without list
                    parts = sum(m.cells[g, h].rate for h in m.references)
                    parts += (m.unlabeled.get(g, np.zeros(6))[3] + m.unlisted.get(g, np.zeros(6))[3]) / row_w
                    assert parts == pytest.approx(group[COL["impostor_w_err"]] / group[COL["impostor_w"]],
                                                  rel=1e-9, abs=1e-15)
                else:
                    assert m.unlabeled.get(g, np.zeros(6))[0] == mine.get(UNLABELED, [0.0])[0]
    # the corrections matter: first verdicts instead would count other comparisons as impostors
    assert brute_force(workload, *WINDOWS[-1], SETS, pick=min) != want
    # a scope narrows the read
    scoped = read_pair_sums(migrated_store, *WINDOWS[0], (), deployment="site-1", algorithm="algo-1")
    assert scoped and {r[:2] for r in scoped} == {("site-1", "algo-1")} and {r[3] for r in scoped} == {
        "age", "race", "sex"}
    assert read_pair_sums(migrated_store, *WINDOWS[0], (), algorithm="algo-other") == []


def test_an_empty_window_reads_nothing(migrated_store):
    migrate(migrated_store)
    assert read_pair_sums(migrated_store, T0, T0 + timedelta(hours=1), CONFIG.intersections) == []
