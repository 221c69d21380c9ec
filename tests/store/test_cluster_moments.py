"""Clustered comparisons (returning subjects with a ``cluster_id``): the per-group intervals that
``fairwatch metrics`` reads from the store, and the in-memory Monitor's, against plain loops over the
raw JSON lines: the final primary verdict of each event, its error (for a mated search with a
candidate list, its mate not listed at or above the threshold), weight 1 / inclusion_prob; per group
and population the with-replacement variance of the weighted rate with the clusters as units and with
each comparison its own, their ratio (at least the overall row's intra-cluster correlation carried to
the group's mean cluster size), the Korn-Graubard t factor, and a Clopper-Pearson interval (scipy's
beta quantiles) on the effective counts divided by it. The same for FNIR at rank <= R of the mated
searches (their mate listed at or above the threshold at a rank <= R)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta

import numpy as np
import pytest
from fairwatch.audit.estimates import window_metrics
from fairwatch.audit.window import Window
from fairwatch.contracts.envelopes import decode_message
from fairwatch.core.config import CoreConfig
from fairwatch.core.identification_ranks import IdentificationRanks
from fairwatch.core.layout import INTERSECTION_SEP, OVERALL
from fairwatch.core.monitor import Monitor
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.store.identification_ranks import read_rank_tallies
from fairwatch.stream.replay import replay
from fairwatch.testing.oracles import cluster_roh, clustered_interval, final_verdicts, group_cells, verified_error

CONFIG = CoreConfig(intersections=(("sex", "race"),))
SCENARIO = """
start: "2026-11-25T06:00:00Z"
duration_hours: 6
events: 6000
attributes: {sex: {F: 0.5, M: 0.5}, race: {White: 0.6, Black: 0.4}}
algorithms:
  algo-1: {fmr: 0.03, fnmr: 0.05, fpir: 0.03, fnir: 0.05}
deployments:
  - {name: gate, algorithm: algo-1, threshold: 3.0, identification_share: 0.5, impostor_share: 0.6,
     list_length: 5, gallery_size: 1000}
verification: {match_prob: 1.0, non_match_prob: 0.5, error_prob: 0.0, reviewers: 5,
  delay_hours: {median: 1, sigma: 0.5}, correction_delay_hours: {median: 2, sigma: 0.5}}
subjects: {per_group: 12, correlation: 0.6}
"""


def comparisons(events: list[dict], verdicts: dict[str, dict], start: str, end: str
                ) -> dict[tuple, list[tuple[str, bool, float]]]:
    """(mode, attribute, group, population) -> [(cluster, error, weight)] of the verified events
    that occurred in ``[start, end)`` (RFC 3339 UTC strings of whole seconds compare as text)."""
    out = defaultdict(list)
    for e in events:
        v = verdicts.get(e["event_id"])
        if v is None or not start <= e["occurred_at"] < end:
            continue
        error = verified_error(e, v)
        groups = group_cells(e["subject"], CONFIG.intersections)
        for attribute, group in groups:
            out[e["mode"], attribute, group, v["truth"]].append((e.get("cluster_id", ""), error, 1 / v["inclusion_prob"]))
    return out


@pytest.fixture(scope="module")
def simulation():
    return simulate(parse_scenario(SCENARIO), seed=5)


def test_clustered_intervals_equal_the_raw_records(migrated_store, simulation, tmp_path):
    import json

    event_lines = simulation.event_lines(np.arange(simulation.n_events))
    outcome_lines = simulation.outcome_lines(np.arange(simulation.n_outcomes))
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(event_lines) + b"\n")
    (tmp_path / "outcomes.jsonl").write_bytes(b"\n".join(outcome_lines) + b"\n")
    replay(migrated_store, tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl", config=CONFIG)
    monitor = Monitor(CONFIG)
    for lines, kind in ((event_lines, "match_event"), (outcome_lines, "verified_outcome")):
        monitor.update([item.record for line in lines for item in decode_message(line, kind)[1]])
    events = [json.loads(line) for line in event_lines]
    assert sum("cluster_id" in e for e in events) == len(events)
    verdicts = final_verdicts(outcome_lines)
    start = simulation.scenario.start
    for start, end in ((start, simulation.scenario.end), (start + timedelta(hours=1), start + timedelta(hours=4))):
        stored, _ = window_metrics(migrated_store, Window(start, end), CONFIG, with_labels=False, with_reviews=False)
        in_memory = monitor.snapshot(start, end)
        rows = comparisons(events, verdicts, *(t.strftime("%Y-%m-%dT%H:%M:%S") for t in (start, end)))
        check(stored, in_memory, rows)
        check_ranks(IdentificationRanks(read_rank_tallies(migrated_store, start, end, CONFIG.intersections)),
                    events, verdicts, *(t.strftime("%Y-%m-%dT%H:%M:%S") for t in (start, end)))


def check_ranks(ranks: IdentificationRanks, events, verdicts, start: str, end: str) -> None:
    """FNIR at rank <= R of each group against the mated searches' identified ranks, by loops."""
    identified = defaultdict(list)  # (attribute, group) -> [(cluster, rank, weight)]
    for e in events:
        v = verdicts.get(e["event_id"])
        if (v is None or v["truth"] != "genuine" or "candidates" not in e or not start <= e["occurred_at"] < end):
            continue
        mate = v.get("mate_rank")
        listed = mate is not None and mate <= len(e["candidates"]) and e["candidates"][mate - 1]["score"] >= e["threshold"]
        subject = e["subject"]
        groups = [(OVERALL, OVERALL), *subject.items()]
        groups += [(INTERSECTION_SEP.join(c), INTERSECTION_SEP.join(subject[a] for a in c)) for c in CONFIG.intersections]
        for group in groups:
            identified[group].append((e["cluster_id"], mate if listed else 0, 1 / v["inclusion_prob"]))
    rows = ranks.records()
    assert {(r["attribute"], r["group"]) for r in rows} == set(identified)
    widened = 0
    for row in rows:
        def at_rank(searches):
            return [(c, r == 0 or r > row["rank"], w) for c, r, w in searches]
        overall = cluster_roh(at_rank(identified[OVERALL, OVERALL]))
        deff, p, low, high = clustered_interval(at_rank(identified[row["attribute"], row["group"]]), overall)
        assert math.isclose(row["fnir"], p, rel_tol=1e-12)
        assert math.isclose(row["fnir_low"], low, rel_tol=1e-7, abs_tol=1e-12)
        assert math.isclose(row["fnir_high"], high, rel_tol=1e-7, abs_tol=1e-12)
        widened += deff > 1.5
    assert widened > len(rows) / 2


def check(stored, in_memory, rows) -> None:
    population = {"fmr": "impostor", "fnmr": "genuine"}
    checked = clustered = 0
    for frame in (stored, in_memory):
        estimates = [*((k, OVERALL, OVERALL, g) for k, g in frame.overall.items()),
                     *((k[:3], k.attribute, k.group, g) for k, g in frame.by_group.items())]
        assert len(estimates) == 2 * (1 + 2 + 2 + 4)  # two modes x (overall, sex, race, sex&race)
        for (_, _, mode), attribute, group, estimate in estimates:
            for rate, truth in population.items():
                got = getattr(estimate, rate)
                raw = rows[mode, attribute, group, truth]
                deff, p, low, high = clustered_interval(raw, cluster_roh(rows[mode, OVERALL, OVERALL, truth]))
                assert got.n == len(raw)
                assert math.isclose(got.design_effect, deff, rel_tol=1e-9)
                assert math.isclose(got.rate, p, rel_tol=1e-12)
                assert math.isclose(got.low, low, rel_tol=1e-7, abs_tol=1e-12)
                assert math.isclose(got.high, high, rel_tol=1e-7, abs_tol=1e-12)
                checked += 1
                clustered += deff > 1.5
    assert checked == 2 * 2 * 18
    assert clustered > checked / 2  # the subjects' errors do cluster: most intervals widen
