"""Identification searches end to end: simulated candidate lists -> replay -> stored FPIR/FNIR per
group, against a brute-force recount written here from the raw JSON lines (the candidate lists,
the threshold and the named mate), and against the simulator's own ground truth."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

import numpy as np
import pytest

from fairwatch.core.layout import COL, GroupKey
from fairwatch.sim.scenario import ScenarioError, parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.store.clickhouse import open_store
from fairwatch.store.group_counts import read_counts
from fairwatch.testing.oracles import final_verdicts
from fairwatch.stream.replay import replay

SCENARIO = """
start: "2026-11-25T06:00:00Z"
duration_hours: 2
events: 6000
attributes: {race: {Black: 0.4, White: 0.6}, sex: {F: 0.5, M: 0.5}}
algorithms:
  algo-1:
    fmr: 0.01
    fnmr: 0.02
    fpir: {base: 0.03, factors: {race: {Black: 3}}}
    fnir: {base: 0.05, factors: {sex: {F: 2}}}
deployments:
  - {name: watch, algorithm: algo-1, threshold: 3.0, identification_share: 0.8, impostor_share: 0.5,
     list_length: 5, gallery_size: 250000}
verification: {match_prob: 1.0, non_match_prob: 0.5, error_prob: 0.02, reviewers: 5}
"""


def brute_force(event_lines: list[bytes], outcome_lines: list[bytes]) -> dict[tuple, list[float]]:
    """(mode, attribute, label) -> [non-mated/impostors, false positives, mated/genuines, misses],
    each weighted 1/inclusion_prob, from the final primary verdict of each event."""
    sums: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 4)
    for e, o in _final_pairs(event_lines, outcome_lines):
        listed = e.get("candidates")
        at_or_above = [c for c in listed or [] if c["score"] >= e["threshold"]]
        if o["truth"] == "impostor":
            error = bool(at_or_above) if listed is not None else e["decision"] == "match"
        elif listed is not None:  # mated: the named mate must be listed at or above the threshold
            rank = o.get("mate_rank")
            error = not (rank is not None and any(c["rank"] == rank for c in at_or_above))
        else:
            error = e["decision"] == "non_match"
        w = 1.0 / o["inclusion_prob"]
        base = 0 if o["truth"] == "impostor" else 2
        for attribute, label in [("*", "*"), *e["subject"].items()]:
            cell = sums[(e["mode"], attribute, label)]
            cell[base] += w
            cell[base + 1] += w * error
    return dict(sums)


@pytest.fixture(scope="module")
def simulation():
    return simulate(parse_scenario(SCENARIO), seed=11)


def test_replayed_fpir_and_fnir_per_group_equal_a_recount_from_the_candidate_lists(simulation, tmp_path):
    events = simulation.event_lines(range(simulation.n_events))
    outcomes = simulation.outcome_lines(range(simulation.n_outcomes))
    assert sum(b'"candidates"' in line for line in events) > 4000
    assert sum(b'"mate_rank"' in line for line in outcomes) > 1000
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    (tmp_path / "outcomes.jsonl").write_bytes(b"\n".join(outcomes) + b"\n")
    store = open_store(f"chdb://{tmp_path}/store")
    replay(store, tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl")
    keys, rows = read_counts(store, simulation.scenario.start, simulation.scenario.end)
    found = {(k.mode, k.attribute, k.group): [r[COL["impostor_w"]], r[COL["impostor_w_err"]], r[COL["genuine_w"]],
                                               r[COL["genuine_w_err"]]] for k, r in zip(keys, rows)}
    expected = brute_force(events, outcomes)
    assert found.keys() == expected.keys()
    for key, sums in expected.items():
        np.testing.assert_allclose(found[key], sums, rtol=1e-12, err_msg=str(key))
    # the case the list changes: mated searches judged "match" on someone else are misses
    misses_on_match = sum(1 for e, o in _final_pairs(events, outcomes)
                          if o["truth"] == "genuine" and e["decision"] == "match" and "candidates" in e
                          and o.get("mate_rank") is None)
    assert misses_on_match > 0
    assert isinstance(keys[0], GroupKey)


def _final_pairs(event_lines, outcome_lines) -> list[tuple[dict, dict]]:
    """(event, the verdict that counts) of every verified event."""
    events = {e["event_id"]: e for e in map(json.loads, event_lines)}
    return [(events[i], o) for i, o in final_verdicts(outcome_lines).items()]


def test_the_simulated_lists_carry_the_configured_rates(simulation):
    """Every search verified without error: the recount of all searches is the simulator's truth,
    and the realized FPIR per race is near its target (3% White, 9% Black)."""
    truth = {(g["attribute"], g["label"]): g for g in simulation.truth()["groups"] if g["mode"] == "identification"}
    events = [json.loads(line) for line in simulation.event_lines(range(simulation.n_events))]
    for attribute, label in [("*", "*"), ("race", "Black"), ("race", "White"), ("sex", "F")]:
        mine = [i for i, e in enumerate(events) if e["mode"] == "identification"
                and (attribute == "*" or e["subject"][attribute] == label)]
        impostors = [i for i in mine if not simulation.genuine[i]]
        false_positives = sum(any(c["score"] >= events[i]["threshold"] for c in events[i]["candidates"])
                              for i in impostors)
        assert truth[(attribute, label)]["impostors"] == len(impostors)
        assert truth[(attribute, label)]["false_matches"] == false_positives
        genuines = [i for i in mine if simulation.genuine[i]]
        assert truth[(attribute, label)]["genuines"] == len(genuines)
    black = truth[("race", "Black")]
    assert abs(black["false_matches"] / black["impostors"] - 0.09) < 0.03


def test_a_gallery_size_without_a_list_length_is_refused():
    with pytest.raises(ScenarioError, match="list_length"):
        parse_scenario(SCENARIO.replace("list_length: 5, ", ""))


def test_the_packaged_identification_scenario_raises_one_groups_fpir():
    """`fairwatch simulate --scenario identification`: every event a search with its list, and the
    drift multiplies race=Black's true FPIR by 4 (from the scenario text: 2e-3 x 5 x the sex and
    age mix, before and after), no other race's."""
    from fairwatch.sim.scenario import load_scenario

    sim = simulate(load_scenario("identification"), events=4000)
    lines = [json.loads(line) for line in sim.event_lines(range(sim.n_events))]
    assert all(e["mode"] == "identification" and "candidates" in e and e["list_length"] == 10 for e in lines)
    [drift] = sim.truth()["drifts"]
    effects = {(e["attribute"], e["label"]): e["ratio"] for e in drift["effects"] if e["mode"] == "identification"}
    assert effects[("race", "Black")] == pytest.approx(4.0)
    assert not [key for key in effects if key[0] == "race" and key[1] != "Black"]


def test_an_fpir_drift_of_searches_with_lists_is_alerted_on_its_group_only(tmp_path):
    """Detection as for verification: race=Black's FPIR tripled at 1.5 h (every comparison a search
    with its list) opens one error_rate_drift incident, metric fpir, on race=Black only, after
    the drift; the oracle is the simulator's truth (the groups whose true FPIR changed)."""
    from typer.testing import CliRunner

    from fairwatch.cli import app
    from fairwatch.sim.writers import write_jsonl
    from fairwatch.testing.workload import race_drift_scenario

    sim = simulate(parse_scenario(race_drift_scenario("search-drift", seed=5, delay_median_hours=0.05,
                                                      searches=True)), events=60_000)
    files = write_jsonl(sim, tmp_path / "sim")
    assert b'"candidates"' in files["events"].read_bytes()[:2000]
    (tmp_path / "policy.yaml").write_text("deployment: gate-a\nattributes: [race]\nbaseline: {duration: 90m}\n"
                                          "min_evidence: 500\nband: 1.25\nresolve_after: 20m\n"
                                          "false_alarms_per_day: 0.5\n")
    result = CliRunner().invoke(app, ["replay", str(files["events"]), str(files["outcomes"]), "--store",
                                      f"chdb://{tmp_path / 'store'}", "--policy", str(tmp_path / "policy.yaml"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    alerts = json.loads(result.stdout.strip().splitlines()[-1])["alerts"]
    truth = json.loads(files["truth"].read_text())
    changed = {f"race={row['label']}" for row in truth["groups"] if row["attribute"] == "race"
               and row["mode"] == "identification"
               and len({r["target_fmr"] for r in truth["groups"] if r["attribute"] == "race"
                        and r["label"] == row["label"]}) > 1}
    assert changed == {"race=Black"}
    drifts = [a for a in alerts if a["type"] == "error_rate_drift"]
    assert {(a["group"], a["metric"]) for a in drifts} == {("race=Black", "fpir")}, alerts
    drift_at = datetime.fromisoformat(truth["drifts"][0]["at"].replace("Z", "+00:00"))
    assert all(datetime.fromisoformat(a["opened_at"].replace("Z", "+00:00")) > drift_at for a in drifts)
