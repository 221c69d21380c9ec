"""label_backlog: the per-bucket backlog counts of the store query against a brute-force count over
the same rows (ClickHouse 18.16 and chDB), and the alert lifecycle against a run-length oracle: it
fires, resolves when the late outcomes arrive, stays quiet below min_matches, and a rerun changes
nothing."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.detect.cycle import run_detection
from fairwatch.detect.policy import PolicyError, parse_policy
from fairwatch.detect.reads import read_alerts, read_backlog
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.testing.oracles import alert_validator
from scipy import stats

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)
EVENT_COLUMNS = ("event_id", "occurred_at", "occurred_at_us", "deployment", "algorithm", "mode", "score", "threshold",
                 "decision", "subject_keys", "subject_values", "reference_keys", "reference_values", "context",
                 "ingested_at")
OUTCOME_COLUMNS = ("event_id", "verified_at", "truth", "reviewer", "revision", "inclusion_prob", "ingested_at")


@pytest.fixture
def store(migrated_store):
    return migrated_store


def event(event_id: str, at: datetime, deployment: str = "gate-a", algorithm: str = "algo-1",
          decision: str = "match") -> tuple:
    return (event_id, at, 0, deployment, algorithm, "verification", 0.9, 0.5, decision, ["race"], ["Black"], [], [],
            "", at)


def outcome(event_id: str, at: datetime, revision: int = 0) -> tuple:
    return (event_id, at, "genuine", "reviewer-1", revision, 1.0, at)


def brute_force(events: list[tuple], outcomes: list[tuple], deployment: str, algorithm: str, ends: list[int],
                after: int, lookback: int) -> np.ndarray:
    """int[2, len(ends)]: (unverified, counted) at each end t, straight from the definition."""
    first = {}
    for event_id, verified_at, *_ in outcomes:
        first[event_id] = min(first.get(event_id, verified_at), verified_at)
    matches = {e[0]: e[1].timestamp() for e in events if e[3] == deployment and e[4] == algorithm and e[8] == "match"}
    out = np.zeros((2, len(ends)), int)
    for k, t in enumerate(ends):
        for event_id, occurred in matches.items():
            if t - lookback <= occurred <= t - after:
                out[1, k] += 1
                out[0, k] += not (event_id in first and first[event_id].timestamp() <= t)
    return out


def test_backlog_counts_equal_a_brute_force_count(store):
    rng = random.Random(11)
    events, outcomes = [], []
    for i in range(2500):
        at = T0 + timedelta(seconds=rng.randrange(0, 2 * 86400))
        events.append(event(f"e{i}", at, rng.choice(["gate-a", "gate-b"]), rng.choice(["algo-1", "algo-2"]),
                            rng.choice(["match", "match", "non_match"])))
        for revision in range(rng.choice([0, 0, 1, 1, 2])):  # none, one, or a revised outcome
            outcomes.append(outcome(f"e{i}", at + timedelta(seconds=rng.randrange(0, 40000)), revision))
    store.insert("match_events", EVENT_COLUMNS, events)
    store.insert("match_events", EVENT_COLUMNS, events[:300])  # a retried insert: replaced, not counted twice
    store.insert("verified_outcomes", OUTCOME_COLUMNS, outcomes)
    # durations that are not multiples of the bucket, so window edges fall inside buckets
    policy = parse_policy("deployment: gate-a\nattributes: [race]\nbaseline: {duration: 1h}\nlookback: 37913s\n"
                          "label_backlog: {after: 7777s, max_share: 0.1}\n")
    bucket, T = 600, 120
    mon_start = int((T0 + timedelta(hours=18)).timestamp())
    got = read_backlog(store, policy, mon_start, mon_start + T * bucket, bucket)
    ends = [mon_start + (k + 1) * bucket for k in range(T)]
    assert set(got) == {"algo-1", "algo-2"}
    for algorithm in got:
        want = brute_force(events, outcomes, "gate-a", algorithm, ends, 7777, 37913)
        assert want[0].min() > 0 and (want[0] < want[1]).any()  # both counts carry information
        np.testing.assert_array_equal(got[algorithm], want)
    only = parse_policy("deployment: gate-a\nattributes: [race]\nbaseline: {duration: 1h}\nalgorithms: [algo-2]\n"
                        "label_backlog: {after: 2h, max_share: 0.1}\n")
    assert set(read_backlog(store, only, mon_start, mon_start + T * bucket, bucket)) == {"algo-2"}


POLICY = """deployment: gate-a
attributes: [race]
baseline: {from: "2026-11-25T00:00:00Z", to: "2026-11-25T01:00:00Z"}
resolve_after: 30m
score_drift: false
label_backlog: {after: 2h, max_share: 0.1, min_matches: MIN}
"""


def scenario(every: timedelta) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Matches every ``every`` for 12 h, verified 30 min later, except those of 03:00-05:00 whose
    outcomes only come at 11:00. Returns (events, on-time outcomes, late outcomes)."""
    events, on_time, late = [], [], []
    at, i = T0, 0
    while at < T0 + timedelta(hours=12):
        events.append(event(f"m{i}", at))
        events.append(event(f"n{i}", at + every / 2, decision="non_match"))  # never verified, never backlog
        if T0 + timedelta(hours=3) <= at < T0 + timedelta(hours=5):
            late.append(outcome(f"m{i}", T0 + timedelta(hours=11)))
        else:
            on_time.append(outcome(f"m{i}", at + timedelta(minutes=30)))
        at, i = at + every, i + 1
    return events, on_time, late


def expected_lifecycle(counts: np.ndarray, ends: list[int], policy) -> tuple[int | None, int | None, int | None]:
    """(opened_at, last alarm, resolved_at) in seconds from the definition: an alarm at t when the
    share exceeds max_share with >= min_matches counted; clear when the share is <= max_share; the
    incident resolves resolve_after after the start of a clear run that lasts that long."""
    spec = policy.label_backlog
    opened = last_alarm = resolved = clear_since = None
    for (unverified, counted), t in zip(counts.T, ends):
        over = unverified > spec.max_share * counted
        if counted >= spec.min_matches and over:
            assert resolved is None, "the scenarios hold one incident"
            opened = t if opened is None else opened
            last_alarm, clear_since = t, None
        elif opened is not None and resolved is None:
            if over:
                clear_since = None
            else:
                clear_since = t if clear_since is None else clear_since
                if t - clear_since >= policy.resolve_after:
                    resolved = clear_since + policy.resolve_after
    return opened, last_alarm, resolved


def test_backlog_fires_then_resolves_when_late_outcomes_arrive_and_reruns_change_nothing(store):
    config = CoreConfig()
    policy = parse_policy(POLICY.replace("MIN", "50"))
    events, on_time, late = scenario(timedelta(minutes=2))
    now1, now2 = T0 + timedelta(hours=10), T0 + timedelta(hours=14)
    store.insert("match_events", EVENT_COLUMNS, [e for e in events if e[1] <= now1])
    store.insert("verified_outcomes", OUTCOME_COLUMNS, [o for o in on_time if o[1] <= now1])
    bucket = config.bucket_seconds
    start = int((T0 + timedelta(hours=1)).timestamp())  # monitoring starts when the baseline ends

    first = run_detection(store, config, {"gate-a": policy}, None, now1)
    ends1 = list(range(start + bucket, int(now1.timestamp()) + 1, bucket))
    counts1 = brute_force(events, on_time, "gate-a", "algo-1", ends1, policy.label_backlog.after, policy.lookback)
    opened, last_alarm, resolved = expected_lifecycle(counts1, ends1, policy)
    assert opened is not None and resolved is None
    [alert] = first
    k = ends1.index(last_alarm)
    unverified, counted = counts1[:, k]
    assert (alert.id, alert.type, alert.severity, alert.group, alert.metric, alert.state) == (
        "gate-a/algo-1/label_backlog/label_backlog/*", "label_backlog", "warning", "*", "label_backlog", "firing")
    assert alert.opened_at.timestamp() == opened
    assert alert.estimate == pytest.approx(unverified / counted) and alert.evidence["n"] == counted
    assert alert.low == pytest.approx(stats.beta.ppf(0.025, unverified, counted - unverified + 1))
    assert alert.high == pytest.approx(stats.beta.ppf(0.975, unverified + 1, counted - unverified))
    assert alert.baseline == policy.label_backlog.max_share
    alert_validator().validate(alert.to_record())
    assert run_detection(store, config, {"gate-a": policy}, None, now1) == []  # rerun: nothing new

    # the rest of the traffic and the late outcomes arrive
    store.insert("match_events", EVENT_COLUMNS, [e for e in events if now1 < e[1] <= now2])
    store.insert("verified_outcomes", OUTCOME_COLUMNS, [o for o in on_time if now1 < o[1] <= now2] + late)
    second = run_detection(store, config, {"gate-a": policy}, None, now2)
    ends2 = list(range(start + bucket, int(now2.timestamp()) + 1, bucket))
    counts2 = brute_force(events, on_time + late, "gate-a", "algo-1", ends2, policy.label_backlog.after,
                          policy.lookback)
    np.testing.assert_array_equal(counts2[:, :len(ends1)], counts1)  # event time: history unchanged
    opened2, last_alarm2, resolved2 = expected_lifecycle(counts2, ends2, policy)
    assert opened2 == opened and resolved2 is not None
    assert resolved2 >= (T0 + timedelta(hours=11, minutes=30)).timestamp()  # not before the late outcomes + 30m
    [done] = second
    assert (done.id, done.state, done.opened_at) == (alert.id, "resolved", alert.opened_at)
    assert done.resolved_at.timestamp() == resolved2
    unverified, counted = counts2[:, ends2.index(last_alarm2)]
    assert done.estimate == pytest.approx(unverified / counted)
    assert run_detection(store, config, {"gate-a": policy}, None, now2) == []
    stored = read_alerts(store, deployment="gate-a")
    assert [(a.id, a.state, a.opened_at, a.resolved_at) for a in stored] == [
        (done.id, "resolved", done.opened_at, done.resolved_at)]


def test_below_min_matches_the_backlog_does_not_fire(tmp_path):
    store = open_store(f"chdb://{tmp_path}/chdb")
    migrate(store)
    try:
        config = CoreConfig()
        events, on_time, _ = scenario(timedelta(minutes=20))  # 36 matches in 12 h; the late ones never verified
        store.insert("match_events", EVENT_COLUMNS, events)
        store.insert("verified_outcomes", OUTCOME_COLUMNS, on_time)
        now = T0 + timedelta(hours=12)
        policy = parse_policy(POLICY.replace("MIN", "50"))
        start = int((T0 + timedelta(hours=1)).timestamp())
        ends = list(range(start + config.bucket_seconds, int(now.timestamp()) + 1, config.bucket_seconds))
        counts = brute_force(events, on_time, "gate-a", "algo-1", ends, policy.label_backlog.after, policy.lookback)
        assert (counts[0] > 0.1 * counts[1]).any() and counts[1].max() < 50  # over the share, under min_matches
        assert run_detection(store, config, {"gate-a": policy}, None, now) == []
        # min_matches exactly the most ever counted: fires (at least min_matches), where the oracle
        # says, at the mapped severity
        most = int(counts[1].max())
        lower = parse_policy(POLICY.replace("MIN", str(most)) + "severity: {label_backlog: critical}\n")
        opened, _, _ = expected_lifecycle(counts, ends, lower)
        assert opened is not None and counts[1, ends.index(opened)] == most
        [alert] = run_detection(store, config, {"gate-a": lower}, None, now)
        assert alert.opened_at.timestamp() == opened and alert.severity == "critical"
    finally:
        store.close()


def test_bad_label_backlog_values_are_refused_with_line_and_reason():
    head = "deployment: gate-a\nattributes: [race]\nbaseline: {duration: 1h}\n"
    with pytest.raises(PolicyError) as bad_share:
        parse_policy(head + "label_backlog:\n  after: 2h\n  max_share: 1.5\n", "gate-a.yaml")
    assert (bad_share.value.line, bad_share.value.reason) == (
        6, "label_backlog.max_share: 1.5 is greater than or equal to the maximum of 1")
    assert str(bad_share.value).startswith("gate-a.yaml:6: ")
    with pytest.raises(PolicyError) as too_late:
        parse_policy(head + "lookback: 12h\nlabel_backlog:\n  max_share: 0.1\n  after: 12h\n")
    assert (too_late.value.line, too_late.value.reason) == (
        7, "label_backlog.after: 12h is not shorter than lookback (12h)")
    with pytest.raises(PolicyError) as missing:
        parse_policy(head + "label_backlog: {after: 2h}\n")
    assert (missing.value.line, missing.value.reason) == (4, "label_backlog: 'max_share' is a required property")
    spec = parse_policy(head + "label_backlog: {after: 90m, max_share: 0.02}\n").label_backlog
    assert (spec.after, spec.max_share, spec.min_matches) == (5400, 0.02, 50)


def test_a_deployment_with_no_verified_outcome_at_all_fires(tmp_path):
    """No outcome means no group_counts row: the baseline period then starts at the first match."""
    store = open_store(f"chdb://{tmp_path}/chdb")
    migrate(store)
    try:
        config = CoreConfig()
        events, _, _ = scenario(timedelta(minutes=2))
        store.insert("match_events", EVENT_COLUMNS, events)
        policy = parse_policy(POLICY.replace("MIN", "50").replace(
            'baseline: {from: "2026-11-25T00:00:00Z", to: "2026-11-25T01:00:00Z"}', "baseline: {duration: 1h}"))
        now = T0 + timedelta(hours=6)
        start = int((T0 + timedelta(hours=1)).timestamp())
        ends = list(range(start + config.bucket_seconds, int(now.timestamp()) + 1, config.bucket_seconds))
        counts = brute_force(events, [], "gate-a", "algo-1", ends, policy.label_backlog.after, policy.lookback)
        opened, _, _ = expected_lifecycle(counts, ends, policy)
        [alert] = run_detection(store, config, {"gate-a": policy}, None, now)
        assert alert.opened_at.timestamp() == opened and alert.estimate == 1.0
    finally:
        store.close()
