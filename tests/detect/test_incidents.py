"""Incidents: dedup and hysteresis against a run-length oracle, the alert records against the
schema, and detection end to end: simulator (FMR x3 on one group) -> fairwatch replay -> alerts."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fairwatch.cli import app
from fairwatch.detect.incidents import Alert, IncidentTracker
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.testing.oracles import alert_validator
from fairwatch.testing.workload import race_drift_scenario
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)


def template(key: str = "c") -> Alert:
    return Alert(key, "error_rate_drift", "critical", "gate-a", "algo-v1", "race=Black", "fmr", 0.03, 0.02, 0.04,
                 0.01, "sr_band", {"n": 500.0, "e_value": None, "statistic": 6.1}, "firing", T0, None,
                 "https://runbook.example/x", "https://dashboard.example/d/1")


def expected_incidents(steps: list[tuple[bool, bool]], resolve_steps: int) -> int:
    """Oracle by run lengths: an incident per alarm that starts an episode; an episode ends after a
    run of >= resolve_steps consecutive clear, alarm-free observations (the resolving one included)."""
    incidents, open_, run = 0, False, 0
    for alarm, clear in steps:
        if alarm:
            incidents += not open_
            open_, run = True, 0
        elif open_:
            run = run + 1 if clear else 0
            if run > resolve_steps:  # clear_since + resolve_after <= now
                open_, run = False, 0
    return incidents


def test_flapping_conditions_keep_one_incident_each_and_match_the_oracle():
    rng = random.Random(4)
    resolve_steps = 5
    tracker = IncidentTracker(resolve_after=resolve_steps * 60)
    opened: dict[str, int] = {}
    sequences = {}
    for c in range(300):
        flap = rng.random() < 0.5  # half flap every step; half have random quiet spells
        steps = [((t % 2 == 0) if flap else rng.random() < 0.1, rng.random() < 0.9) for t in range(200)]
        sequences[f"c{c}"] = steps
    for t in range(200):
        for key, steps in sequences.items():
            alarm, clear = steps[t]
            for tr in tracker.observe(template(key), T0 + timedelta(minutes=t), alarm, clear and not alarm):
                if tr.kind == "opened":
                    opened[key] = opened.get(key, 0) + 1
    for key, steps in sequences.items():
        want = expected_incidents([(a, c and not a) for a, c in steps], resolve_steps)
        assert opened.get(key, 0) == want, key
    flapping = [k for k, s in sequences.items() if all(s[t][0] == (t % 2 == 0) for t in range(200))]
    assert flapping and all(opened[k] == 1 for k in flapping)


def test_resolution_time_and_reopen_with_the_same_id():
    tracker = IncidentTracker(resolve_after=600)
    [opened] = tracker.observe(template(), T0, True, False)
    assert opened.kind == "opened" and opened.alert.opened_at == T0
    assert tracker.observe(template(), T0 + timedelta(minutes=1), False, False) == []  # not clear: stays
    out = [tr for m in range(2, 20) for tr in tracker.observe(template(), T0 + timedelta(minutes=m), False, True)]
    assert [(tr.kind, tr.alert.resolved_at) for tr in out] == [("resolved", T0 + timedelta(minutes=12))]
    [again] = tracker.observe(template(), T0 + timedelta(minutes=30), True, False)
    assert again.kind == "opened" and again.alert.id == opened.alert.id
    assert again.alert.opened_at == T0 + timedelta(minutes=30)


def test_alert_record_and_row_round_trip():
    validator = alert_validator()
    firing = template()
    resolved = Alert(**{**firing.__dict__, "state": "resolved", "resolved_at": T0 + timedelta(hours=1),
                        "estimate": None, "low": None, "high": None})
    for a in (firing, resolved):
        validator.validate(a.to_record())
        assert Alert.from_row(a.to_row(1)).to_record() == a.to_record()
    example = json.loads((REPO / "schemas" / "examples" / "valid" / "alert.json").read_text())
    validator.validate(example)


SCENARIO = race_drift_scenario("drift-e2e", seed=5, delay_median_hours=0.05)

POLICY = """
deployment: gate-a
attributes: [race]
baseline: {duration: 90m}
min_evidence: 500
band: 1.25
resolve_after: 20m
false_alarms_per_day: 0.5
routing: {team: e2e}
"""


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-e2e")
    sim = simulate(parse_scenario(SCENARIO))
    files = write_jsonl(sim, root / "sim")
    (root / "policy.yaml").write_text(POLICY)
    store = f"chdb://{root / 'store'}"
    result = CliRunner().invoke(app, ["replay", str(files["events"]), str(files["outcomes"]), "--store", store,
                                      "--policy", str(root / "policy.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return root, store, summary, json.loads(files["truth"].read_text())


def test_replay_alerts_on_the_drifted_group_only(replayed):
    root, store, summary, truth = replayed
    validator = alert_validator()
    for record in summary["alerts"]:
        validator.validate(record)
    # the oracle: groups whose true FMR changed between the simulator's segments
    rates: dict[str, set] = {}
    for row in truth["groups"]:
        if row["attribute"] == "race":
            rates.setdefault(row["label"], set()).add(row["target_fmr"])
    drifted = {f"race={g}" for g, r in rates.items() if len(r) > 1}
    assert drifted == {"race=Black"}
    drift_at = datetime.fromisoformat(truth["drifts"][0]["at"].replace("Z", "+00:00"))
    rate_alerts = [a for a in summary["alerts"] if a["type"] == "error_rate_drift"]
    assert {(a["group"], a["metric"]) for a in rate_alerts} == {("race=Black", "fmr")}
    [black] = rate_alerts
    opened = datetime.fromisoformat(black["opened_at"].replace("Z", "+00:00"))
    assert drift_at < opened < drift_at + timedelta(hours=1.5)
    assert black["value"]["low"] > black["baseline"]  # the interval shown clears the baseline
    # no other group raises any drift alert (label-free score warnings included)
    assert all(a["group"] == "race=Black" for a in summary["alerts"] if a["type"] in ("error_rate_drift", "score_drift"))


def test_alerts_cli_lists_the_stored_incidents_and_a_rerun_changes_nothing(replayed):
    root, store, summary, _ = replayed
    runner = CliRunner()
    result = runner.invoke(app, ["alerts", "--store", store, "--from", "2026-11-25T00:00:00Z",
                                 "--to", "2026-11-26T00:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert sorted((a["id"], a["opened_at"]) for a in listed) == sorted((a["id"], a["opened_at"]) for a in summary["alerts"])
    firing = json.loads(runner.invoke(app, ["alerts", "--store", store, "--from", "2026-11-25T00:00:00Z",
                                            "--to", "2026-11-26T00:00:00Z", "--state", "firing", "--json"]).stdout)
    assert {a["state"] for a in firing} <= {"firing"} and len(firing) == sum(a["state"] == "firing" for a in listed)
    # a restarted cycle over the same store (same `now`) neither duplicates nor loses incidents
    from fairwatch.core.config import CoreConfig
    from fairwatch.detect.cycle import run_detection
    from fairwatch.detect.policy import parse_policy
    from fairwatch.detect.reads import read_alerts
    from fairwatch.store.clickhouse import open_store

    opened = open_store(store)
    now = max(datetime.fromisoformat(a["opened_at"].replace("Z", "+00:00")) for a in listed) + timedelta(hours=3)
    later = run_detection(opened, CoreConfig(), {"gate-a": parse_policy(POLICY)}, None, now)
    assert all(a.state == "resolved" for a in later)  # only resolutions of incidents already listed
    assert {a.id for a in later} <= {a["id"] for a in listed}
    again = run_detection(opened, CoreConfig(), {"gate-a": parse_policy(POLICY)}, None, now)
    assert again == []
    stored = read_alerts(opened)
    assert len({a.incident for a in stored}) == len(stored) == len(listed)
    audit = opened.query("SELECT count() FROM audit_log WHERE kind = 'alert'")[0][0]
    assert audit >= len(listed)
    opened.close()


class ThinBaseline:
    """A store whose race=Black FMR baseline is short of ``min_evidence`` until the late outcomes
    arrive (``load_late``). Oracle: the baseline's impostor comparisons counted from the workload
    documents."""

    def __init__(self, tmp_path, routing: str = ""):
        from fairwatch.core.config import CoreConfig
        from fairwatch.detect.policy import parse_policy
        from fairwatch.store.clickhouse import open_store
        from fairwatch.store.migrations import migrate
        from fairwatch.store.sink import ClickHouseSink
        from fairwatch.stream.processor import BatchProcessor
        from fairwatch.testing.workload import make_workload

        self.config = CoreConfig()
        workload = make_workload(4000, seed=41, hours=2, deployments=1, malformed_share=0.0, duplicate_share=0.0)
        is_early = lambda key: sum(key) % 2 == 0  # noqa: E731  (outcomes of these event ids come first)
        self.early = [m for m in workload.messages if m[0] == "match-events" or is_early(m[1])]
        self.late = [m for m in workload.messages if m[0] == "verified-outcomes" and not is_early(m[1])]

        def baseline_impostors(keys) -> int:  # race=Black's FMR comparisons in the baseline hour
            count = 0
            for event_id, doc in workload.events.items():
                if event_id.encode() in keys and doc["mode"] == "verification" \
                        and doc["occurred_at"] < "2026-11-25T07" and doc["subject"]["race"] == "Black":
                    latest = max(workload.outcomes[event_id], key=lambda o: o["revision"])
                    count += latest["truth"] == "impostor"
            return count

        with_outcomes = {k for k in (e.encode() for e in workload.outcomes)}
        self.before = baseline_impostors({k for k in with_outcomes if is_early(k)})
        self.after = baseline_impostors(with_outcomes)
        self.policy = parse_policy(f"""
deployment: site-0
attributes: [race]
metrics: [fmr]
baseline: {{from: "2026-11-25T06:00:00Z", to: "2026-11-25T07:00:00Z"}}
min_evidence: {self.after}
{routing}
""")
        self.store = open_store(f"chdb://{tmp_path}/chdb")
        migrate(self.store)
        self._processor, self._sink, self._state = BatchProcessor(self.config), ClickHouseSink(self.store, self.config), {}
        self._offset = 0

    def _load(self, batch) -> None:
        from fairwatch.stream.processor import RawMessage

        result = self._processor.process([RawMessage(k, k, 0, self._offset + i, key, value)
                                          for i, (k, key, value) in enumerate(batch)], lambda e, p: self._state.get(e))
        self._offset += len(batch)
        self._sink.write(result.sink)
        for event_id, (_, value) in result.state_changes.items():
            self._state.pop(event_id, None) if value is None else self._state.__setitem__(event_id, value)

    def load_early(self) -> None:
        self._load(self.early)

    def load_late(self) -> None:
        self._load(self.late)

    def cycle(self, now: datetime, delivery=None) -> list[Alert]:
        from fairwatch.detect.cycle import run_detection

        return self.notices(run_detection(self.store, self.config, [self.policy], delivery, now))

    @staticmethod
    def notices(alerts) -> list[Alert]:
        return [a for a in alerts if a.type == "insufficient_evidence" and a.group == "race=Black" and a.metric == "fmr"]


def test_an_insufficient_evidence_notice_resolves_once_late_outcomes_fill_the_baseline(tmp_path):
    """Found by the demo: a cycle before the baseline's outcomes arrived opened the notice, and it
    stayed firing after the stream became a tested one."""
    from fairwatch.detect.reads import read_alerts

    thin = ThinBaseline(tmp_path)
    assert 0 < thin.before < thin.after
    try:
        thin.load_early()
        now = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
        [opened] = thin.cycle(now)
        assert opened.state == "firing"  # the baseline has `before` < min_evidence comparisons
        thin.load_late()  # the late outcomes arrive: the baseline now has `after` comparisons
        [resolved] = thin.cycle(now + timedelta(minutes=5))
        assert (resolved.id, resolved.opened_at) == (opened.id, opened.opened_at)
        assert resolved.state == "resolved" and resolved.resolved_at == now + timedelta(minutes=5)
        assert not thin.notices(read_alerts(thin.store, state="firing"))
        assert not thin.cycle(now + timedelta(minutes=10))  # settled
    finally:
        thin.store.close()


class Recorder:
    """A delivery that keeps what each cycle submits."""

    def __init__(self):
        self.changed, self.standing = [], []

    def submit(self, changed, standing, *, taking_over=False) -> None:
        self.changed, self.standing = list(changed), list(standing)


def test_a_resolution_a_stopped_worker_never_delivered_is_sent_by_the_next_cycle_with_the_policys_labels(tmp_path):
    thin = ThinBaseline(tmp_path, routing="routing: {team: oncall}")
    now = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
    try:
        thin.load_early()
        first = Recorder()
        [opened] = thin.cycle(now, first)
        assert [a.routing for a in thin.notices(first.changed)] == [{"team": "oncall"}]
        thin.load_late()
        [resolved] = thin.cycle(now + timedelta(minutes=5))  # written, never delivered: the worker stopped
        restarted = Recorder()
        assert thin.cycle(now + timedelta(minutes=6), restarted) == []  # nothing changes in the store...
        [resent] = thin.notices(restarted.standing)  # ...but Alertmanager is told again, as the same alert
        assert (resent.id, resent.opened_at, resent.state, resent.resolved_at) == \
               (opened.id, opened.opened_at, "resolved", now + timedelta(minutes=5))
        assert resent.routing == {"team": "oncall"}  # the labels of the alert Alertmanager holds
        later = Recorder()  # past the resend horizon Alertmanager has resolved it by itself
        thin.cycle(now + timedelta(minutes=5) + timedelta(hours=1, minutes=1), later)
        assert thin.notices(later.standing) == []
    finally:
        thin.store.close()


def test_firing_incidents_are_resent_with_the_numbers_the_store_holds(tmp_path):
    """The issue saw 0.0747 (n=172) in `fairwatch alerts` and 0.0536 (n=872) in Alertmanager for one
    incident: the re-sends carried the detector's newer evidence. Oracle: the stored records."""
    from fairwatch.core.config import CoreConfig
    from fairwatch.detect.cycle import run_detection
    from fairwatch.detect.policy import parse_policy
    from fairwatch.detect.reads import read_alerts
    from fairwatch.store.clickhouse import open_store

    files = write_jsonl(simulate(parse_scenario(SCENARIO)), tmp_path / "sim")  # the drift of `replayed`, unshared
    url = f"chdb://{tmp_path / 'store'}"
    assert CliRunner().invoke(app, ["replay", str(files["events"]), str(files["outcomes"]), "--store", url]).exit_code == 0
    store = open_store(url)
    try:
        policy = {"gate-a": parse_policy(POLICY)}
        # the drift starts at 07:30 and lasts to the end (09:00): its incident opens, then gathers evidence
        opened = run_detection(store, CoreConfig(), policy, None, datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc))
        assert any(a.state == "firing" and a.group == "race=Black" for a in opened)
        now = datetime(2026, 11, 25, 8, 50, tzinfo=timezone.utc)
        run_detection(store, CoreConfig(), policy, None, now)  # settles what this `now` changes
        recorder = Recorder()
        assert run_detection(store, CoreConfig(), policy, recorder, now) == []
        stored = {a.incident: a for a in read_alerts(store, state="firing")}
        sent = [a for a in recorder.standing if a.state == "firing"]
        assert sent and {a.incident for a in sent} == set(stored)
        for alert in sent:
            record = stored[alert.incident]
            assert (alert.estimate, alert.low, alert.high, alert.baseline, alert.evidence["n"]) == \
                   (record.estimate, record.low, record.high, record.baseline, record.evidence["n"])
    finally:
        store.close()


@pytest.mark.services
def test_alertmanager_sees_the_resolution_a_stopped_worker_wrote_but_never_sent(stack, tmp_path):
    """The issue: resolved in ClickHouse, active in Alertmanager for an hour. Open (delivered),
    resolve in the store without delivery (the worker stopped), then a restarted worker's cycle."""
    import time
    import uuid

    from fairwatch.detect.delivery import AlertDelivery, AlertmanagerSink, alertmanager_client
    from fairwatch.detect.reads import read_alerts

    test_id = uuid.uuid4().hex
    thin = ThinBaseline(tmp_path, routing=f"routing: {{team: oncall, test_id: {test_id}}}")
    now = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)

    def ours(client) -> list[dict]:
        got = client.get("/api/v2/alerts", params={"filter": [f'test_id="{test_id}"', 'group="race=Black"',
                                                         'metric="fmr"']})
        got.raise_for_status()
        live = datetime.now(timezone.utc)
        return [a for a in got.json() if a["status"]["state"] == "active"
                and datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) > live]

    def deliver(at: datetime) -> None:
        delivery = AlertDelivery([AlertmanagerSink(stack["FAIRWATCH_ALERTMANAGER"], environ=stack)], backoff=0.05)
        thin.cycle(at, delivery)
        delivery.close(timeout=30)
        assert delivery.stats["alertmanager_failed"] == 0

    def wait(predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline
            time.sleep(0.2)

    try:
        thin.load_early()
        with alertmanager_client(stack["FAIRWATCH_ALERTMANAGER"], 10, stack) as client:
            deliver(now)
            [record] = thin.notices(read_alerts(thin.store, state="firing"))
            wait(lambda: len(ours(client)) == 1)
            [active] = ours(client)
            assert active["annotations"]["incident_id"] == record.id
            assert active["annotations"]["evidence_n"] == f"{record.evidence['n']:g}"  # the store's number
            assert active["labels"]["team"] == "oncall"
            thin.load_late()
            thin.cycle(now + timedelta(minutes=5))  # resolved in the store; the worker stops before sending
            assert not thin.notices(read_alerts(thin.store, state="firing"))
            assert len(ours(client)) == 1  # Alertmanager still holds it active
            deliver(now + timedelta(minutes=6))  # a restarted worker's first cycle
            wait(lambda: ours(client) == [])
    finally:
        thin.store.close()
