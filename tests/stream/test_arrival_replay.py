"""Replay as of arrival: lines in the live store's ingestion order, cycles on its clock, and every
incident that differs from the live run's named."""

import json
import math
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest
from fairwatch.cli import app
from fairwatch.cli.boundary import run
from fairwatch.detect.incidents import Alert
from fairwatch.stream.arrival_replay import CYCLE_PHASE, NOT_REPRODUCED, ONLY_HERE, compare_incidents

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def _alert(alert_id: str, minutes: int) -> Alert:
    return Alert(alert_id, "error_rate_drift", "critical", "gate-a", "algo-v1", alert_id, "fmr", 0.03, 0.02, 0.04,
                 0.01, "sr_band", {"n": 100.0}, "firing", T0 + timedelta(minutes=minutes), None, "", "")


def test_incidents_are_paired_by_alert_and_opening_and_every_other_one_is_named():
    live = [_alert("sex=F", 18), _alert("race=Black", 5), _alert("race=Black", 40), _alert("age=50+", 7)]
    replayed = [_alert("sex=F", 27), _alert("race=Black", 5), _alert("race=Black", 41), _alert("race=Asian", 3)]
    same, differences = compare_incidents(live, replayed, cycle_seconds=10)
    assert [(a.id, a.opened_at) for a in same] == [("race=Black", T0 + timedelta(minutes=5))]
    assert [(d.alert_id, d.live_opened_at, d.replay_opened_at, d.cause) for d in differences] == [
        ("age=50+", T0 + timedelta(minutes=7), None, NOT_REPRODUCED),
        ("race=Asian", None, T0 + timedelta(minutes=3), ONLY_HERE),
        ("race=Black", T0 + timedelta(minutes=40), T0 + timedelta(minutes=41), CYCLE_PHASE.format(cycle=10)),
        ("sex=F", T0 + timedelta(minutes=18), T0 + timedelta(minutes=27), CYCLE_PHASE.format(cycle=10)),
    ]
    assert str(differences[3]).startswith("sex=F: opened live 2026-11-25 12:18:00, here 2026-11-25 12:27:00: ")


def _live_store(tmp_path, files, policy, delays: dict[str, float]) -> str:
    """A "live" store: the files replayed, then each record's ingested_at set as a live worker
    would have stamped it (the event's time plus a delay per kind)."""
    from fairwatch.store.clickhouse import open_store

    url = f"chdb://{tmp_path / 'live'}"
    assert run(app, ["replay", str(files["events"]), str(files["outcomes"]), "--store", url, "--policy", str(policy),
                     "--json"]) == 0
    with closing(open_store(url)) as store:  # ingested_at is the tables' version: rewritten, not updated
        for table, stamp in (("match_events", f"occurred_at + {delays['events']}"),
                             ("verified_outcomes", f"verified_at + {delays['outcomes']}")):
            store.execute(f"CREATE TABLE {table}_copy AS {table}")
            store.execute(f"INSERT INTO {table}_copy SELECT * FROM {table}")
            store.execute(f"TRUNCATE TABLE {table}")
            store.execute(f"INSERT INTO {table} SELECT * REPLACE ({stamp} AS ingested_at) FROM {table}_copy")
            store.execute(f"DROP TABLE {table}_copy")
    return url


@pytest.fixture
def drifted(tmp_path):
    from fairwatch.sim.scenario import parse_scenario
    from fairwatch.sim.simulator import simulate
    from fairwatch.sim.writers import write_jsonl
    from fairwatch.testing.workload import race_drift_scenario

    scenario = parse_scenario(race_drift_scenario("arrival", seed=7, delay_median_hours=0.5))
    files = write_jsonl(simulate(scenario), tmp_path / "sim")
    policy = tmp_path / "policy.yaml"
    policy.write_text("deployment: gate-a\nattributes: [race]\nmetrics: [fmr]\nbaseline: {duration: 90m}\n"
                      "min_evidence: 500\nband: 1.25\nresolve_after: 20m\nfalse_alarms_per_day: 0.5\n")
    return files, policy


def test_every_incident_of_the_live_run_and_of_the_replay_is_paired_or_named(drifted, tmp_path, capsys):
    files, policy = drifted
    live = _live_store(tmp_path, files, policy, {"events": 0, "outcomes": 0})
    capsys.readouterr()
    code = run(app, ["replay", str(files["events"]), str(files["outcomes"]), "--store", f"chdb://{tmp_path / 'again'}",
                     "--policy", str(policy), "--as-of-arrival", live, "--cycle-seconds", "300", "--json"])
    out, err = capsys.readouterr()
    assert out, err
    document = json.loads(out.splitlines()[-1])
    arrival = document["as_of_arrival"]
    assert arrival["lines_without_arrival"] == 0
    # cycles every 5 min of arrival time, from the first arrival to the first instant past the last
    first, last = (datetime.fromisoformat(arrival[k]) for k in ("first_arrival", "last_arrival"))
    assert arrival["cycles"] == math.ceil((last - first).total_seconds() / 300) + 1
    # every incident of both runs is accounted for: the same opening on both sides, or a named
    # difference; the oracle is the set arithmetic on the two stores' incidents
    from fairwatch.detect.reads import read_alerts
    from fairwatch.store.clickhouse import open_store

    incidents = {}
    for name, url in (("live", live), ("here", f"chdb://{tmp_path / 'again'}")):
        with closing(open_store(url)) as store:
            incidents[name] = {(a.id, a.opened_at.isoformat()) for a in read_alerts(store)}
    assert any("race=Black" in i and "error_rate_drift" in i for i, _ in incidents["live"])
    same = {(a["id"], a["opened_at"]) for a in arrival["same"]}
    assert same == incidents["live"] & incidents["here"]
    assert {(d["id"], d["live_opened_at"]) for d in arrival["differences"] if d["live_opened_at"]} == \
           incidents["live"] - same
    assert {(d["id"], d["replay_opened_at"]) for d in arrival["differences"] if d["replay_opened_at"]} == \
           incidents["here"] - same
    assert all(d["cause"] for d in arrival["differences"])
    assert code == (1 if arrival["differences"] else 0)


def test_the_live_store_must_be_another_store_and_needs_a_policy(drifted, tmp_path, capsys):
    files, policy = drifted
    url = f"chdb://{tmp_path / 'x'}"
    assert run(app, ["replay", str(files["events"]), str(files["outcomes"]), "--store", url,
                     "--as-of-arrival", url, "--policy", str(policy)]) == 2
    assert "names the store being written" in capsys.readouterr().err
    assert run(app, ["replay", str(files["events"]), str(files["outcomes"]), "--store", url,
                     "--as-of-arrival", f"chdb://{tmp_path / 'live'}"]) == 2
    assert capsys.readouterr().err == "error: --as-of-arrival reproduces alerts: give the live run's --policy too\n"
