"""Two-person verification of acted-on identifications, read from the store (ClickHouse 18.16 and
chDB) and printed by ``fairwatch audit two-person``, against loops over the raw records: the counted
verdict of each identification search (the primary verdict of the highest revision), kept when it
records an action; confirmed when it names two distinct verifiers; the share's Clopper-Pearson
interval from scipy's beta quantiles."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
from fairwatch.core.two_person import two_person_compliance
from fairwatch.sim.scenario import load_scenario, parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.store.clickhouse import open_store
from fairwatch.store.two_person import read_acted_verdicts, searched_deployments
from fairwatch.stream.replay import replay
from fairwatch.testing.cli_runs import invoke, one_error
from fairwatch.testing.oracles import final_verdicts
from scipy import stats

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)
END = T0 + timedelta(hours=4)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def records(seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Searches at three deployments (one without any recorded action) and 1:1 comparisons with
    actions (never judged); verdicts naming 0-3 verifiers with repeats, actions true, false or
    absent, corrections that change them, independent reviews, and an event outside the window."""
    rng = random.Random(seed)
    events, outcomes = [], []
    for i in range(400):
        deployment = rng.choice(["precinct-1", "precinct-2", "quiet"])
        mode = "verification" if i % 7 == 0 else "identification"
        when = T0 + timedelta(seconds=rng.randrange(0, 5 * 3600))  # the last hour is outside the window
        events.append({"event_id": f"e-{i}", "occurred_at": _stamp(when), "deployment": deployment,
                       "algorithm": "algo-1", "mode": mode, "score": 0.9, "threshold": 0.5, "decision": "match",
                       "subject": {"sex": rng.choice("FM")}})
        if rng.random() < 0.1:
            continue  # not verified yet
        for revision in range(rng.choice([1, 1, 1, 2])):
            verdict = {"event_id": f"e-{i}", "verified_at": _stamp(when + timedelta(hours=1 + revision)),
                       "truth": rng.choice(["genuine", "genuine", "impostor"]), "reviewer": f"r{rng.randrange(5)}",
                       "revision": revision, "inclusion_prob": 1}
            if deployment != "quiet":
                names = [f"v{rng.randrange(4)}" for _ in range(rng.choice([0, 1, 2, 2, 3]))]
                if names:
                    verdict["verifiers"] = names
                action = rng.choice([True, True, False, None])
                if action is not None:
                    verdict["action_taken"] = action
            outcomes.append(verdict)
        if rng.random() < 0.2:
            outcomes.append({"event_id": f"e-{i}", "verified_at": _stamp(when + timedelta(hours=5)),
                             "truth": "genuine", "reviewer": "r9", "revision": 0, "inclusion_prob": 1,
                             "review": "independent"})
    return events, outcomes


def oracle(events: list[dict], outcomes: list[dict], start: datetime = T0, end: datetime = END) -> dict[str, dict]:
    """Per deployment with searches in [start, end): acted, confirmed, single, unrecorded, the
    exceptions' event ids, the share and its interval."""
    counted = final_verdicts([json.dumps(o) for o in outcomes])
    out: dict[str, dict] = {}
    for e in events:
        if e["mode"] != "identification" or not _stamp(start) <= e["occurred_at"] < _stamp(end):
            continue
        mine = out.setdefault(e["deployment"], {"acted": 0, "confirmed": 0, "single": 0, "unrecorded": 0,
                                                "exceptions": []})
        v = counted.get(e["event_id"])
        if v is None or v.get("action_taken") is not True:
            continue
        mine["acted"] += 1
        people = set(v.get("verifiers", []))
        kind = "confirmed" if len(people) >= 2 else "single" if people else "unrecorded"
        mine[kind] += 1
        if kind != "confirmed":
            mine["exceptions"].append(e["event_id"])
    for mine in out.values():
        x, n = mine["confirmed"], mine["acted"]
        mine["share"] = x / n if n else None
        mine["low"] = 0.0 if x == 0 else stats.beta.ppf(0.025, x, n - x + 1)
        mine["high"] = 1.0 if x == n else stats.beta.ppf(0.975, x + 1, n - x)
    return out


def test_compliance_equals_the_raw_records(migrated_store, tmp_path):
    events, outcomes = records()
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "outcomes.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outcomes))
    report = replay(migrated_store, tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl")
    assert not report.rejected
    want = oracle(events, outcomes)
    got = two_person_compliance(read_acted_verdicts(migrated_store, T0, END),
                                searched_deployments(migrated_store, T0, END))
    assert [r.deployment for r in got] == sorted(want) == ["precinct-1", "precinct-2", "quiet"]
    for r in got:
        w = want[r.deployment]
        assert (r.acted, r.confirmed, r.single, r.unrecorded) == (w["acted"], w["confirmed"], w["single"],
                                                                 w["unrecorded"])
        assert sorted(v.event_id for v in r.exceptions) == sorted(w["exceptions"])
        if w["share"] is None:
            assert r.share is None and r.status == "no_actions"
        else:
            assert abs(r.share - w["share"]) < 1e-12
            assert abs(r.low - w["low"]) < 1e-9 and abs(r.high - w["high"]) < 1e-9
    busy = [r for r in got if r.acted]
    assert len(busy) == 2 and all(r.single and r.unrecorded and r.confirmed for r in busy)  # every case occurs


def test_the_command_prints_the_same(tmp_path):
    events, outcomes = records(seed=11)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "outcomes.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outcomes))
    store = f"chdb://{tmp_path}/store"
    assert invoke("replay", tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl", "--store", store).exit_code == 0
    window = ["--from", _stamp(T0), "--to", _stamp(END), "--store", store]
    result = invoke("audit", "two-person", *window, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    want = oracle(events, outcomes)
    by_deployment = defaultdict(dict)
    for row in document["deployments"]:
        by_deployment[row["deployment"]] = row
    assert set(by_deployment) == set(want)
    for deployment, w in want.items():
        row = by_deployment[deployment]
        assert (row["acted"], row["confirmed"], row["single"], row["unrecorded"]) == (
            w["acted"], w["confirmed"], w["single"], w["unrecorded"])
        assert sorted(x["event_id"] for x in row["exceptions"]) == sorted(w["exceptions"])
    text = invoke("audit", "two-person", *window)
    assert text.exit_code == 0
    for deployment, w in want.items():
        for event_id in w["exceptions"]:
            assert f"not confirmed by two people: {deployment} {event_id} " in text.stdout
    assert "no action recorded: nothing to judge" in text.stdout  # the quiet deployment
    empty = invoke("audit", "two-person", "--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z",
                   "--store", store)
    one_error(empty, 1, "no identification searches", "nothing to judge")


def test_a_simulated_deployment_with_single_verifier_actions(tmp_path):
    """The simulator's actions (a share of the verified searches that returned a match; a share of
    those confirmed by one verifier) come out as the simulator drew them."""
    scenario = load_scenario("identification").to_dict()
    scenario["events"] = 6_000
    scenario["verification"].update(action_prob=0.3, single_verifier_prob=0.1)
    sim = simulate(parse_scenario(scenario), seed=4)
    event_lines = sim.event_lines(np.arange(sim.n_events))
    outcome_lines = sim.outcome_lines(np.arange(sim.n_outcomes))
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(event_lines) + b"\n")
    (tmp_path / "outcomes.jsonl").write_bytes(b"\n".join(outcome_lines) + b"\n")
    store = open_store(f"chdb://{tmp_path}/store")
    try:
        assert not replay(store, tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl").rejected
        start, end = sim.scenario.start, sim.scenario.end
        got = two_person_compliance(read_acted_verdicts(store, start, end), searched_deployments(store, start, end))
    finally:
        store.close()
    want = oracle([json.loads(line) for line in event_lines], [json.loads(line) for line in outcome_lines], start, end)
    verified = np.zeros(sim.n_events, bool)
    verified[sim.o_event[~sim.o_independent]] = True
    assert {r.deployment: (r.acted, r.single, r.unrecorded) for r in got} == {
        d: (w["acted"], w["single"], w["unrecorded"]) for d, w in want.items()}
    assert sum(r.acted for r in got) == int((sim.acted & verified).sum()) > 100
    assert sum(r.single for r in got) == int((sim.single & verified).sum()) > 5
