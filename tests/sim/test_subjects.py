"""Returning subjects in the simulator: pseudonymous keys that follow one subject, errors that
cluster by subject, and marginal rates that stay the scenario's (recounted from the events)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest
from fairwatch.contracts.records import CLUSTER_ID_RE, parse_match_event
from fairwatch.sim.scenario import ScenarioError, Subjects, load_scenario, parse_scenario
from fairwatch.sim.simulator import simulate
from scipy import stats

DEMO = "streams/fairwatch/sim/scenarios/demo.yaml"


def _events(sim) -> list:
    return [parse_match_event(json.loads(line)) for line in sim.event_lines(range(sim.n_events))]


def _errors_per_key(sim, events) -> Counter:
    """False matches per cluster_id (impostor comparisons decided match), from the events and the truth."""
    return Counter(e.cluster_id for e, genuine in zip(events, sim.genuine.tolist())
                   if not genuine and e.decision == "match")


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
    # errors cluster by key with correlation, not without (sum c^2 / sum c: 1 for independent errors
    # spread over many keys, up to the cluster sizes' dispersion)
    phi = {}
    for name, sim, evs in (("clustered", clustered, events), ("plain", plain, _events(plain))):
        sizes = np.array(list(_errors_per_key(sim, evs).values()), float)
        phi[name] = (sizes**2).sum() / sizes.sum()
    assert phi["clustered"] > 1.5 * phi["plain"], phi
    # the marginal FMR of each race group is the scenario's: recounted, within a 1e-4 binomial interval
    targets = {g["label"]: g["target_fmr"] for g in clustered.truth()["groups"]
               if g["attribute"] == "race" and g.get("segment", 0) == 0 and g.get("deployment", "gate-a") == "gate-a"}
    assert len(targets) == 4
    first_hour = [(e, genuine) for e, genuine in zip(events, clustered.genuine.tolist())
                  if not genuine and e.occurred_at < base.drifts[0].at]
    for race, target in targets.items():
        impostors = [e for e, _ in first_hour if e.subject["race"] == race]
        errors = sum(e.decision == "match" for e in impostors)
        low, high = stats.binom.interval(1 - 1e-4, len(impostors), target)
        assert low <= errors <= high, (race, errors, len(impostors), target)


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
