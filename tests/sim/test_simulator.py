"""The simulator: valid records, determinism, calibrated rates, drift, weighting, scenario errors.

The statistical tests recompute everything by brute force from the written JSONL records and
compare with targets derived here from the scenario text, independently of ``fairwatch.sim.simulator``.
"""

from __future__ import annotations

import copy
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from fairwatch.cli.simulate import simulate_command
from fairwatch.contracts.records import (
    MatchEvent,
    Rejection,
    VerifiedOutcome,
    decode_match_event,
    decode_verified_outcome,
    parse_timestamp,
)
from fairwatch.sim.scenario import (
    ScenarioError,
    load_scenario,
    packaged_scenarios,
    parse_scenario,
)
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import publish, write_jsonl
from fairwatch.testing.oracles import expected_rate
from scipy.stats import chi2 as chi2_dist
from scipy.stats import norm
from typer.testing import CliRunner

# ---- the long run: one deployment, verification, one FMR drift at half time ------------------------

DRIFT_AT = "2026-11-25T12:00:00Z"
LONG = {
    "name": "long-run",
    "seed": 11,
    "start": "2026-11-25T00:00:00Z",
    "duration_hours": 24,
    "events": 1_000_000,
    "attributes": {
        "sex": {"F": 0.5, "M": 0.5},
        "race": {"White": 0.6, "Black": 0.15, "Asian": 0.15, "Indigenous": 0.1},
        "age": {"18-29": 0.3, "30-49": 0.45, "50+": 0.25},
    },
    "algorithms": {"algo-1": {
        "fmr": {"base": 1.0e-3, "factors": {"sex": {"F": 2.0}, "race": {"Black": 8.0, "Asian": 5.0, "Indigenous": 12.0},
                                             "age": {"18-29": 1.5, "50+": 1.3}}},
        "fnmr": {"base": 0.01, "factors": {"sex": {"F": 1.2}, "race": {"Black": 1.5, "Asian": 1.3, "Indigenous": 1.4},
                                            "age": {"18-29": 1.3, "50+": 1.1}}},
    }},
    "deployments": [{"name": "gate-a", "algorithm": "algo-1", "threshold": 3.2, "impostor_share": 0.5}],
    "verification": {"match_prob": 1.0, "non_match_prob": 0.1, "delay_hours": {"median": 6, "sigma": 1},
                     "error_prob": 0.01, "correction_delay_hours": {"median": 24, "sigma": 0.5}},
    "drifts": [{"name": "lighting", "kind": "rate", "at": DRIFT_AT, "metric": "fmr", "factor": 3.0,
                "group": {"race": "Black"}}],
}
GROUPS = [("*", "*")] + [(a, l) for a, labels in LONG["attributes"].items() for l in labels]
N_TESTS = 2 * 2 * len(GROUPS)  # segments x metrics x groups
Z = norm.isf(1e-3 / 2 / N_TESTS)  # two-sided, Bonferroni across every group and metric


def target(metric: str, segment: int, group: tuple[str, str]) -> float:
    boost = {("race", "Black"): 3.0} if metric == "fmr" and segment == 1 else {}
    return expected_rate(LONG["algorithms"]["algo-1"][metric], LONG["attributes"], group, boost)


def ht_variance(p: float, n: float, pi_error: float, pi_correct: float) -> float:
    """Variance of the weighted ratio sum(w e) / sum(w) over n comparisons (linearized).

    An error is verified with probability ``pi_error``, a correct decision with ``pi_correct``;
    each verified one weighs 1/pi.
    """
    return (p * (1 - p) ** 2 / pi_error + (1 - p) * p**2 / pi_correct) / n


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """Write the long run once, then brute-force the per-group counts from the records."""
    out = tmp_path_factory.mktemp("long")
    sim = simulate(parse_scenario(LONG))
    write_jsonl(sim, out)
    latest: dict[str, dict] = {}
    with open(out / "outcomes.jsonl", "rb") as handle:
        for line in handle:
            o = json.loads(line)
            if o["event_id"] not in latest or o["revision"] > latest[o["event_id"]]["revision"]:
                latest[o["event_id"]] = o
    drift_at = DRIFT_AT.replace("Z", "")
    # (segment, metric, attribute, label) -> [sum w, sum w*error, n, errors]; plus all-event counts
    acc: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    population: dict[tuple, int] = defaultdict(int)
    with open(out / "events.jsonl", "rb") as handle:
        for line in handle:
            ev = json.loads(line)
            segment = int(ev["occurred_at"][:-1] >= drift_at)
            groups = [("*", "*"), *ev["subject"].items()]
            for g in groups:
                population[(segment, *g)] += 1
            o = latest.get(ev["event_id"])
            if o is None:
                continue
            genuine, match = o["truth"] == "genuine", ev["decision"] == "match"
            metric, error = ("fnmr", not match) if genuine else ("fmr", match)
            w = 1.0 / o["inclusion_prob"]
            for g in groups:
                a = acc[(segment, metric, *g)]
                a[0] += w
                a[1] += w * error
                a[2] += 1
                a[3] += error
    truth = json.loads((out / "truth.json").read_text())
    return {"acc": acc, "population": population, "truth": truth, "out": out}


@pytest.mark.parametrize("metric", ["fmr", "fnmr"])
def test_realized_rates_match_targets(long_run, metric):
    pi_match, pi_non_match = LONG["verification"]["match_prob"], LONG["verification"]["non_match_prob"]
    pi_error, pi_correct = (pi_match, pi_non_match) if metric == "fmr" else (pi_non_match, pi_match)
    failures = []
    for segment in (0, 1):
        for group in GROUPS:
            total_w, error_w, _, errors = long_run["acc"][(segment, metric, *group)]
            p, realized = target(metric, segment, group), error_w / total_w
            z = (realized - p) / math.sqrt(ht_variance(p, total_w, pi_error, pi_correct))
            assert errors >= 30, (segment, group, errors)  # enough errors for the normal approximation
            if abs(z) > Z:
                failures.append((segment, group, realized, p, round(z, 2)))
    assert not failures, f"|z| > {Z:.2f}: {failures}"


def test_every_event_calibrated_per_cell(long_run):
    """Over all generated comparisons (truth.json counts, verified or not) each cell hits its rate.

    One chi-square over every (segment, cell, metric): a 10% miscalibration anywhere fails it.
    """
    attributes, chi2, k = LONG["attributes"], 0.0, 0
    for row in long_run["truth"]["cells"]:
        cell = row["subject"]
        for metric, n, errors in (("fmr", row["impostors"], row["false_matches"]),
                                  ("fnmr", row["genuines"], row["false_non_matches"])):
            boost = 3.0 if metric == "fmr" and row["segment"] == 1 and cell["race"] == "Black" else 1.0
            spec = LONG["algorithms"]["algo-1"][metric]
            p = boost * spec["base"] * math.prod(spec["factors"].get(a, {}).get(cell[a], 1.0) for a in attributes)
            assert row[f"target_{metric}"] == pytest.approx(p, rel=1e-9)
            chi2 += (errors - n * p) ** 2 / (n * p * (1 - p))
            k += 1
    assert k == 2 * 2 * 24
    assert chi2 < chi2_dist.isf(1e-3, k), (chi2, k)


def test_truth_file_agrees_with_targets_and_records(long_run):
    truth = long_run["truth"]
    assert truth["seed"] == 11 and truth["events"] == 1_000_000
    assert [d["at"] for d in truth["drifts"]] == [DRIFT_AT]
    assert [(s["start"], s["end"]) for s in truth["segments"]] == [
        ("2026-11-25T00:00:00Z", DRIFT_AT), (DRIFT_AT, "2026-11-26T00:00:00Z")]
    for row in truth["groups"]:
        group, s = (row["attribute"], row["label"]), row["segment"]
        assert row["target_fmr"] == pytest.approx(target("fmr", s, group), rel=1e-9)
        assert row["target_fnmr"] == pytest.approx(target("fnmr", s, group), rel=1e-9)
        # every match is verified (inclusion_prob 1), so the records hold every false match
        assert row["false_matches"] == long_run["acc"][(s, "fmr", *group)][3]
        assert row["impostors"] + row["genuines"] == long_run["population"][(s, *group)]
    effects = {(e["attribute"], e["label"]): e["ratio"] for e in truth["drifts"][0]["effects"]}
    assert effects[("race", "Black")] == pytest.approx(3.0)
    assert not {g for g in effects if g[0] == "race" and g[1] != "Black"}


def test_drift_triples_one_group_only(long_run):
    acc, pi = long_run["acc"], LONG["verification"]["non_match_prob"]
    for label in LONG["attributes"]["race"]:
        rates, var_log = [], 0.0
        for segment in (0, 1):
            total_w, error_w, _, _ = acc[(segment, "fmr", "race", label)]
            rates.append(error_w / total_w)
            p = target("fmr", segment, ("race", label))
            var_log += ht_variance(p, total_w, 1.0, pi) / p**2
        expected = 3.0 if label == "Black" else 1.0
        z = (math.log(rates[1] / rates[0]) - math.log(expected)) / math.sqrt(var_log)
        assert abs(z) < Z, (label, rates, z)


def test_inclusion_weights_recover_fnmr(long_run):
    """Unweighted, the audit sample hides most false non-matches; weighted by 1/inclusion_prob it does not."""
    for group in GROUPS:
        total_w, error_w, n, errors = long_run["acc"][(0, "fnmr", *group)]
        p = target("fnmr", 0, group)
        assert abs(error_w / total_w - p) < Z * math.sqrt(ht_variance(p, total_w, 0.1, 1.0))
        assert errors / n < 0.2 * p  # ~ p * 0.1: a naive count is off by an order of magnitude



# Identification mode has its own rates (FPIR / FNIR), at another threshold and with verification
# probabilities of its own; the long run above is verification only. A simulator that used the
# verification rates here, or calibrated at the wrong threshold, is far off these targets.
IDENT = copy.deepcopy(LONG) | {
    "name": "ident-run", "seed": 13, "events": 300_000, "drifts": [],
    "algorithms": {"algo-1": {
        "fmr": 1.0e-4, "fnmr": 0.005,  # must not be used: every search is in identification mode
        "fpir": {"base": 2.0e-3, "factors": {"race": {"Black": 4.0, "Indigenous": 6.0}, "age": {"50+": 1.5}}},
        "fnir": {"base": 0.03, "factors": {"sex": {"F": 1.5}, "race": {"Asian": 1.4}}},
    }},
    "deployments": [{"name": "watch-c", "algorithm": "algo-1", "threshold": 0.7, "identification_share": 1.0,
                     "impostor_share": 0.7}],
    "verification": {"match_prob": 1.0, "non_match_prob": 0.2, "delay_hours": {"median": 1, "sigma": 1}},
}


def test_identification_rates_match_their_own_targets(tmp_path):
    write_jsonl(simulate(parse_scenario(IDENT)), tmp_path)
    latest: dict[str, dict] = {}
    for line in read_lines(tmp_path / "outcomes.jsonl"):
        o = json.loads(line)
        if o["event_id"] not in latest or o["revision"] > latest[o["event_id"]]["revision"]:
            latest[o["event_id"]] = o
    acc: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for line in read_lines(tmp_path / "events.jsonl"):
        ev = json.loads(line)
        assert ev["mode"] == "identification" and ev["threshold"] == 0.7
        o = latest.get(ev["event_id"])
        if o is None:
            continue
        genuine, match = o["truth"] == "genuine", ev["decision"] == "match"
        metric, error = ("fnir", not match) if genuine else ("fpir", match)
        for g in [("*", "*"), *ev["subject"].items()]:
            a = acc[(metric, *g)]
            a[0] += 1.0 / o["inclusion_prob"]
            a[1] += error / o["inclusion_prob"]
            a[2] += error
    groups = [("*", "*")] + [(a, l) for a, labels in IDENT["attributes"].items() for l in labels]
    z_max = norm.isf(1e-3 / 2 / (2 * len(groups)))
    failures = []
    for metric in ("fpir", "fnir"):
        pi_error, pi_correct = (1.0, 0.2) if metric == "fpir" else (0.2, 1.0)
        for group in groups:
            total_w, error_w, errors = acc[(metric, *group)]
            p = expected_rate(IDENT["algorithms"]["algo-1"][metric], IDENT["attributes"], group, {})
            z = (error_w / total_w - p) / math.sqrt(ht_variance(p, total_w, pi_error, pi_correct))
            assert errors >= 30, (metric, group, errors)
            if abs(z) > z_max:
                failures.append((metric, group, error_w / total_w, p, round(z, 2)))
    assert not failures, f"|z| > {z_max:.2f}: {failures}"

# ---- records -------------------------------------------------------------------------------------

RICH = copy.deepcopy(LONG) | {
    "name": "rich", "seed": 5, "events": 30_000, "duration_hours": 6,
    "algorithms": {**LONG["algorithms"], "algo-2": {"fmr": 5.0e-4, "fnmr": 0.02, "fpir": 2.0e-3}},
    "deployments": [
        {"name": "gate-a", "share": 0.7, "algorithm": "algo-1", "threshold": 3.2, "impostor_share": 0.4},
        {"name": "watch-b", "share": 0.3, "algorithm": "algo-1", "threshold": 0.5, "identification_share": 1.0,
         "impostor_share": 0.9},
    ],
    "verification": {"non_match_prob": 0.2, "error_prob": 0.05, "reviewers": 7},
    "drifts": [
        {"name": "lighting", "kind": "rate", "at": 1, "until": 4, "metric": "fnmr", "factor": 2,
         "group": {"sex": "F", "age": "50+"}, "deployments": ["gate-a"]},
        {"name": "v2", "kind": "rollout", "at": 3, "from": "algo-1", "to": "algo-2", "ramp_hours": 1,
         "deployments": ["gate-a"]},
    ],
}


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


@pytest.mark.parametrize("name", ["rich", "default", "demo"])
def test_every_line_decodes(tmp_path, name):
    scenario = parse_scenario(RICH) if name == "rich" else load_scenario(name)
    paths = write_jsonl(simulate(scenario, events=None if name == "rich" else 20_000), tmp_path)
    events = [decode_match_event(line) for line in read_lines(paths["events"])]
    outcomes = [decode_verified_outcome(line) for line in read_lines(paths["outcomes"])]
    assert not [r for r in events + outcomes if isinstance(r, Rejection)]
    assert all(isinstance(e, MatchEvent) for e in events) and all(isinstance(o, VerifiedOutcome) for o in outcomes)
    by_id = {e.event_id: e for e in events}
    assert len(by_id) == len(events) and all(i.startswith(f"sim-{scenario.seed}-") for i in by_id)
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    assert [o.verified_at for o in outcomes] == sorted(o.verified_at for o in outcomes)  # arrival order
    for e in events:
        assert (e.decision == "match") == (e.score >= e.threshold)
        for attribute, label in e.subject.items():
            assert label in scenario.attributes[attribute]
        assert scenario.start <= e.occurred_at < scenario.end
    revisions = defaultdict(list)
    for o in outcomes:
        e = by_id[o.event_id]
        assert o.verified_at > e.occurred_at
        assert o.inclusion_prob == (scenario.verification.match_prob if e.decision == "match"
                                    else scenario.verification.non_match_prob)
        revisions[o.event_id].append(o)
    for chain in revisions.values():  # a reviewer error is corrected once, later, with the other truth
        assert [o.revision for o in chain] in ([0], [0, 1])
        if len(chain) == 2:
            assert chain[0].truth != chain[1].truth and chain[0].verified_at < chain[1].verified_at
            assert chain[1].reviewer.startswith("rev-")


def test_rich_scenario_features(tmp_path):
    scenario = parse_scenario(RICH)
    sim = simulate(scenario)
    paths = write_jsonl(sim, tmp_path)
    events = [json.loads(line) for line in read_lines(paths["events"])]
    outcomes = [json.loads(line) for line in read_lines(paths["outcomes"])]
    t = lambda h: f"2026-11-25T{h:02d}:00:00"  # noqa: E731
    gate = [e for e in events if e["deployment"] == "gate-a"]
    assert {e["algorithm"] for e in gate if e["occurred_at"] < t(3)} == {"algo-1"}
    assert {e["algorithm"] for e in gate if e["occurred_at"] >= t(4)} == {"algo-2"}
    assert {e["algorithm"] for e in gate if t(3) <= e["occurred_at"] < t(4)} == {"algo-1", "algo-2"}  # the ramp
    assert {e["algorithm"] for e in events if e["deployment"] == "watch-b"} == {"algo-1"}
    assert {e["mode"] for e in events if e["deployment"] == "watch-b"} == {"identification"}
    assert 0 < sum(o["revision"] for o in outcomes) == sim.n_corrections
    final = {}
    for o in outcomes:
        if o["event_id"] not in final or o["revision"] > final[o["event_id"]]["revision"]:
            final[o["event_id"]] = o
    genuine_refs = [e for e in events if e["event_id"] in final and final[e["event_id"]]["truth"] == "genuine"]
    assert genuine_refs and all(e["reference"] == e["subject"] for e in genuine_refs)
    truth = json.loads(paths["truth"].read_text())
    assert [d["name"] for d in truth["drifts"]] == ["lighting", "v2"]
    assert len(truth["segments"]) == 4  # hours 0-1, 1-3, 3-4 (the drift and the ramp end at 4), 4-6
    rollout = truth["drifts"][1]
    assert rollout["from"] == "algo-1" and rollout["to"] == "algo-2" and rollout["effects"]
    algos = {(r["segment"], r["algorithm"]) for r in truth["groups"] if r["deployment"] == "gate-a"}
    assert algos == {(0, "algo-1"), (1, "algo-1"), (2, "algo-1"), (2, "algo-2"), (3, "algo-2")}
    ident = [r for r in truth["groups"] if r["mode"] == "identification" and r["attribute"] == "*"]
    assert ident and all(r["target_fmr"] == pytest.approx(target("fmr", 0, ("*", "*"))) for r in ident)
    assert sum(r["impostors"] + r["genuines"] for r in truth["groups"] if r["attribute"] == "*") == len(events)


def test_truth_records_a_rerunnable_scenario(tmp_path):
    scenario = parse_scenario(RICH)
    write_jsonl(simulate(scenario, events=3_000), tmp_path)
    again = parse_scenario(json.loads((tmp_path / "truth.json").read_text())["scenario_spec"])
    assert again == parse_scenario(RICH | {"events": 3_000})


def test_same_seed_same_bytes(tmp_path):
    scenario = parse_scenario(RICH)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_jsonl(simulate(scenario, seed=seed, events=5_000), tmp_path / name)
    for file in ("events.jsonl", "outcomes.jsonl", "truth.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
        assert (tmp_path / "a" / file).read_bytes() != (tmp_path / "c" / file).read_bytes()


def test_publish_interleaves_in_time_order():
    sim = simulate(parse_scenario(RICH), events=2_000)
    sent = []

    class Fake:
        def send(self, topic, key, value):
            sent.append((topic, key, value))

        def close(self):
            sent.append("closed")

    now = [0.0]
    counts = publish(sim, Fake(), prefix="t.", rate=1000.0, clock=lambda: now[0],
                     sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert sent.pop() == "closed"
    assert counts == {"events": sim.n_events, "outcomes": sim.n_outcomes} and len(sent) == sim.n_events + sim.n_outcomes
    assert now[0] == pytest.approx((sim.n_events - 50) / 1000.0)  # paced to 1000 events/s of (fake) wall time
    seen = set()
    for topic, key, value in sent:
        record = json.loads(value)
        assert key.decode() == record["event_id"]
        if topic == "t.match-events":
            seen.add(record["event_id"])
        else:
            assert topic == "t.verified-outcomes" and record["event_id"] in seen  # outcome after its event



def test_acquisition_tries_stop_at_the_cap_and_fail_at_the_true_rate():
    """Each encounter's failed tries are fewer than ``max_attempts``, and per race group their mean
    is the truncated geometric's under the Beta (the oracle's closed form, integrated against the
    density) within 4 standard errors; ``true_fta`` agrees with the oracle."""
    from fairwatch.sim.acquisitions import simulate_acquisitions, true_fta
    from fairwatch.testing.oracles import capped_beta_fta

    base, factor, rho, cap = 0.05, 3.0, 0.3, 4
    scenario = parse_scenario(RICH | {"acquisition": {"fta": {"base": base, "factors": {"race": {"Black": factor}}},
                                                      "encounter_correlation": rho, "max_attempts": cap}})
    sim = simulate(scenario)
    failures = simulate_acquisitions(sim).failures
    assert failures.min() >= 0 and failures.max() == cap - 1  # the cap binds, and is never passed
    truth = true_fta(sim.model, scenario.acquisition)
    expected = {}
    for label in RICH["attributes"]["race"]:
        fta = capped_beta_fta(base * (factor if label == "Black" else 1.0), rho, cap)
        assert truth[("race", label)] == pytest.approx(fta, rel=1e-7), label
        expected[label] = fta / (1 - fta)  # E[F] of the group's encounters
        group = sim.model.cell_mask({"race": label})[sim.cell]
        drawn = failures[group]
        assert abs(drawn.mean() - expected[label]) < 4 * drawn.std() / np.sqrt(len(drawn)), label
    shares = RICH["attributes"]["race"]
    pooled = sum(shares[g] * expected[g] for g in shares)
    assert truth[("*", "*")] == pytest.approx(pooled / (pooled + 1), rel=1e-7)


def test_publish_sends_acquisition_attempts_in_time_order_before_their_event():
    from fairwatch.sim.acquisitions import simulate_acquisitions

    scenario = parse_scenario(RICH | {"acquisition": {"fta": {"base": 0.2}, "encounter_correlation": 0.1}})
    sim = simulate(scenario, events=2_000)
    attempts = simulate_acquisitions(sim)
    lines = attempts.lines()
    sent = []

    class Fake:
        def send(self, topic, key, value):
            sent.append((topic, key, value))

        def close(self):
            pass

    now = [0.0]
    counts = publish(sim, Fake(), prefix="t.", rate=1000.0, clock=lambda: now[0],
                     sleep=lambda s: now.__setitem__(0, now[0] + s),
                     acquisitions=(attempts.occurred_us(), [i.encode() for i in attempts.attempt_ids()], lines))
    assert counts == {"events": sim.n_events, "outcomes": sim.n_outcomes, "acquisitions": len(lines)}
    assert now[0] == pytest.approx((sim.n_events - 50) / 1000.0)  # pacing still counts match events only
    tried = [(key, value) for topic, key, value in sent if topic == "t.acquisitions"]
    assert sorted(value for _, value in tried) == sorted(lines) and len(lines) > sim.n_events
    last, events = None, set()
    for topic, key, value in sent:
        record = json.loads(value)
        if topic not in ("t.acquisitions", "t.match-events"):
            continue
        at = parse_timestamp(record["occurred_at"], "occurred_at")
        assert last is None or at >= last  # time order across both topics
        last = at
        if topic == "t.acquisitions":
            assert key.decode() == record["attempt_id"]
            assert record["attempt_id"].rsplit("-t", 1)[0] not in events  # before its event
        else:
            events.add(record["event_id"])

# ---- scenarios and the command ---------------------------------------------------------------------


def mutate(path: str, value=None, *, delete: bool = False) -> dict:
    doc = copy.deepcopy(LONG)
    node = doc
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if delete:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("doc, key, reason", [
    (mutate("attributes.race.White", 0.5), "attributes.race", "sum to 1"),
    (mutate("deployments.0.threshold", "high"), "deployments[0].threshold", "number"),
    (mutate("deployments.0.algorithm", "algo-9"), "deployments[0].algorithm", "unknown algorithm"),
    (mutate("deployments.0.thresold", 3.0), "deployments[0].thresold", "did you mean 'threshold'"),
    (mutate("duration_hours", delete=True), "duration_hours", "required"),
    (mutate("start", "2026-11-25T00:00:00"), "start", "offset"),
    (mutate("algorithms.algo-1.fmr.factors.race.Blak", 2.0), "algorithms.algo-1.fmr.factors.race.Blak", "unknown label"),
    (mutate("algorithms.algo-1.fnmr.base", 0.7), "algorithms.algo-1.fnmr.base", "< 0.5"),
    (mutate("drifts.0.at", "2026-11-27T00:00:00Z"), "drifts[0].at", "outside the run"),
    (mutate("drifts.0.group", {"race": "Green"}), "drifts[0].group.race", "unknown label"),
    (mutate("drifts.0.factor", 400), "algorithms.algo-1.fmr", "below 0.5"),
    (mutate("verification.non_match_prob", 0), "verification.non_match_prob", "> 0"),
    (mutate("attributes.race", {"White": 0.5, "NO": 0.5}) | {"drifts": []}, "attributes.race", "quote it"),
    (mutate("drifts.0.kind", "ramp"), "drifts[0].kind", "'rate' or 'rollout'"),
    (mutate("drifts.0", {"name": "v2", "kind": "rollout", "at": 3, "from": "algo-1", "to": "algo-1"}),
     "drifts[0].to", "must differ"),
    (mutate("algorithms.algo-2", {"fmr": 1.0e-4, "fnmr": 0.01})
     | {"drifts": [{"name": "v2", "kind": "rollout", "at": 3, "from": "algo-2", "to": "algo-1"}]},
     "drifts[0].from", "no deployment runs 'algo-2'"),
    (RICH | {"acquisition": {"fta": {"base": 0.02}, "max_attempts": 0}}, "acquisition.max_attempts", "between 1"),
    (RICH | {"acquisition": {"fta": {"base": 0.02}, "max_attempts": 2.5}}, "acquisition.max_attempts", "whole number"),
])
def test_invalid_scenario_names_the_key(doc, key, reason):
    text = yaml.safe_dump(doc).replace("'NO'", "NO")  # YAML 1.1 reads a bare NO as false
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    assert info.value.key == key and reason in str(info.value), str(info.value)
    assert str(info.value).startswith(key)


def test_command_writes_files_and_json_summary(tmp_path):
    app = typer.Typer()
    app.command()(simulate_command)
    result = CliRunner().invoke(app, ["--scenario", "demo", "--events", "3000", "--seed", "9",
                                      "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["events"] == 3000 and summary["seed"] == 9 and summary["scenario"] == "demo"
    assert len(read_lines(tmp_path / "events.jsonl")) == 3000
    assert len(read_lines(tmp_path / "outcomes.jsonl")) == summary["outcomes"]
    assert {(g["attribute"], g["label"]) for g in summary["groups"]} >= {("race", "Black"), ("*", "*")}

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("deployments.0.share", 2)))
    result = CliRunner().invoke(app, ["--scenario", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "deployments[0].share" in result.output
    assert "demo" in packaged_scenarios() and "default" in packaged_scenarios()


def test_independent_reviews_reach_the_metrics_as_corrected_rates(tmp_path):
    import json as _json

    from typer.testing import CliRunner

    from fairwatch.cli import app
    import importlib.resources

    text = (importlib.resources.files("fairwatch.sim") / "scenarios" / "default.yaml").read_text().replace("independent_review_prob: 0.0", "independent_review_prob: 0.3")
    assert "independent_review_prob: 0.3" in text
    scenario = tmp_path / "noisy.yaml"
    scenario.write_text(text.replace("error_prob: 0.002", "error_prob: 0.01"))
    runner = CliRunner()
    out = tmp_path / "sim"
    made = runner.invoke(app, ["simulate", "--scenario", str(scenario), "--events", "20000", "--out", str(out)])
    assert made.exit_code == 0, made.output
    lines = [_json.loads(line) for line in (out / "outcomes.jsonl").read_text().splitlines()]
    independent = [d for d in lines if d.get("review") == "independent"]
    assert independent and all(d["revision"] == 0 for d in independent)
    store = f"chdb://{tmp_path}/store"
    replayed = runner.invoke(app, ["replay", str(out / "events.jsonl"), str(out / "outcomes.jsonl"), "--store", store])
    assert replayed.exit_code == 0, replayed.output
    metrics = runner.invoke(app, ["metrics", "--store", store, "--from", "2026-11-25T06:00:00Z",
                                  "--to", "2026-11-26T06:00:00Z", "--json"])
    assert metrics.exit_code == 0, metrics.output
    document = _json.loads(metrics.stdout)
    labelled_ids = {d["event_id"] for d in lines if d.get("review") != "independent"}
    assert document["labels"]["double_review"] is True
    assert document["labels"]["independent_reviews"] == sum(d["event_id"] in labelled_ids for d in independent)
    assert document["corrected"] and all(c["error_matches"] is not None for c in document["corrected"])
    # and they hold the simulator's true rates (comparison-weighted over its segments)
    truth = _json.loads((out / "truth.json").read_text())
    sums: dict = {}
    for g in truth["groups"]:
        cell = sums.setdefault((g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["label"]), [0.0] * 4)
        cell[0] += g["target_fmr"] * g["impostors"]
        cell[1] += g["impostors"]
        cell[2] += g["target_fnmr"] * g["genuines"]
        cell[3] += g["genuines"]
    held = judged = 0
    for c in document["corrected"]:
        cell = sums[c["deployment"], c["algorithm"], c["mode"], c["attribute"], c["group"]]
        for rate, (total, n) in (("fmr", cell[:2]), ("fnmr", cell[2:])):
            if n:
                judged += 1
                held += c[f"{rate}_low"] <= total / n <= c[f"{rate}_high"]
                assert c[f"{rate}_high"] > c[f"{rate}_low"]  # never a zero-width interval
    assert judged > 20 and held >= 0.95 * judged, (held, judged)
