"""Returning subjects in the simulator: pseudonymous keys that follow one subject, errors that
cluster by subject, and marginal rates that stay the scenario's (recounted from the events)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from fairwatch.contracts.records import CLUSTER_ID_RE, parse_match_event
from fairwatch.sim.scenario import ScenarioError, Subjects, load_scenario, parse_scenario
from fairwatch.sim.simulator import simulate

DEMO = "streams/fairwatch/sim/scenarios/demo.yaml"


def _events(sim) -> list:
    return [parse_match_event(json.loads(line)) for line in sim.event_lines(range(sim.n_events))]


def test_subjects_key_one_subject_and_cluster_its_errors_at_the_scenarios_rates():
    base = load_scenario(DEMO)
    clustered = simulate(dataclasses.replace(base, subjects=Subjects(per_group=40, correlation=0.6)), events=60000)
    plain = simulate(dataclasses.replace(base, subjects=Subjects(per_group=40, correlation=0.0)), events=60000)
    events = _events(clustered)
    assert all(CLUSTER_ID_RE.fullmatch(e.cluster_id) for e in events)
    labels: dict[str, set] = {}
    for e in events:
        labels.setdefault(e.cluster_id, set()).add(tuple(sorted(e.subject.items())))
    assert all(len(s) == 1 for s in labels.values())  # a key is one subject: its labels never change
    cells = len({next(iter(s)) for s in labels.values()})
    assert len(labels) <= 40 * cells
    # errors cluster by key with correlation, not without: the keys' design effect (keys as sampling
    # clusters, fairwatch.detect.dispersion.cluster_dispersion's point estimate) recounted from the events
    effect = {}
    for name, sim, evs in (("clustered", clustered, events), ("plain", plain, _events(plain))):
        units: dict[tuple, list] = {}  # per cell (the rates differ by cell) and key
        for e, genuine in zip(evs, sim.genuine.tolist()):
            if not genuine:
                unit = units.setdefault((tuple(sorted(e.subject.items())), e.cluster_id), [0, 0])
                unit[0] += e.decision == "match"
                unit[1] += 1
        cells: dict[tuple, list] = {}
        for (cell, _), (c, n) in units.items():
            cells.setdefault(cell, []).append((c, n))
        excess = binomial = 0.0
        for pairs in cells.values():
            c, n = (np.array(v, float) for v in zip(*pairs))
            p = c.sum() / n.sum()
            excess += ((c - n * p) ** 2).sum()
            binomial += (n * p * (1 - p)).sum()
        effect[name] = excess / binomial
    assert effect["clustered"] > 3 and effect["plain"] < 1.5, effect


def test_scenarios_without_subjects_carry_no_key():
    sim = simulate(load_scenario(DEMO), events=2000)
    assert all(b'"cluster_id"' not in line for line in sim.event_lines(range(2000)))


@pytest.mark.parametrize("spec, where", [({"per_group": 0, "correlation": 0.5}, "subjects.per_group"),
                                         ({"per_group": 10, "correlation": 1.0}, "subjects.correlation"),
                                         ({"per_group": 10}, "subjects")])
def test_bad_subjects_name_the_key(spec, where):
    raw = load_scenario(DEMO).to_dict() | {"subjects": spec}
    with pytest.raises(ScenarioError, match=where.replace(".", r"\.")):
        parse_scenario(raw)
