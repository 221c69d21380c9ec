"""detector_state: every stream's state at the last bucket of a detection cycle, as the Overview's
"what is wrong now" reads it. The classification on its own (alarm / near / quiet / insufficient,
and what "near" costs under no drift), then a real cycle over hand-made counts on ClickHouse 18.16
and chDB checked against brute-force expectations, and the board's queries over what it wrote."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from fairwatch.audit import boards as fd
from fairwatch.core.config import DAY_SECONDS, CoreConfig
from fairwatch.core.layout import COLUMNS
from fairwatch.detect.cycle import run_detection
from fairwatch.detect.detectors import RateDriftDetector, threshold_for_budget
from fairwatch.detect.incidents import utc
from fairwatch.detect.policy import parse_policy
from fairwatch.detect.reads import read_alerts
from fairwatch.detect.states import NEAR_DECADES, STATE_COLUMNS, stream_states
from fairwatch.detect.streams import Stream

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)
BUCKET = 60
KEY = ("deployment", "algorithm", "mode", "attribute", "group_label", "bucket", "kafka_partition")


def _policy(extra: str = "") -> object:
    return parse_policy("deployment: gate-a\nattributes: [race]\nmetrics: [fmr]\nbaseline: {duration: 1h}\n"
                        "resolve_after: 10m\n" + extra)


def _rate_stream(group: str, n: float, T: int) -> Stream:
    return Stream("error_rate_drift", "algo-1", "verification", "race", group, "fmr", "sr_band", 0.01, 0.02,
                  x=np.zeros(T), n=np.full(T, n))


def test_states_at_the_last_bucket_from_the_statistic_and_the_threshold():
    policy = _policy("label_backlog: {after: 1h, max_share: 0.05, min_matches: 50}\n")
    T, threshold = 30, 1e6  # log10 A = 6
    tested = [_rate_stream(g, 100.0, T) for g in ("A", "B", "C", "D")]
    thin = Stream("insufficient_evidence", "algo-1", "verification", "race", "E", "fmr", "baseline_count", None,
                  None, x=np.full(T, 321.0), n=np.full(T, 1000.0))
    backlogs = [Stream("label_backlog", algorithm, "", "*", "*", "label_backlog", "backlog_share", 0.05, None,
                       x=np.full(T, float(x)), n=np.full(T, float(n)))
                for algorithm, x, n in (("late", 6, 100), ("fine", 5, 100), ("few", 40, 49))]
    alarms = np.zeros((T, 4), bool)
    alarms[-1, 0] = True  # A alarmed at the last bucket
    alarms[-3, 1] = True  # B alarmed earlier and restarted
    log10 = np.full((T, 4), 2.0)
    log10[-1] = [6.3, 4.99, 5.0, -np.inf]  # C exactly a decade below A: near; D's R is 0
    states = stream_states(policy, [*tested, thin, *backlogs], tested, alarms, log10 * math.log(10), threshold,
                           mon_start=0, bucket=BUCKET)
    found = {(s.group, s.algorithm): s for s in states}
    assert [found["race=" + g, "algo-1"].state for g in "ABCDE"] == ["alarm", "quiet", "near", "quiet", "insufficient"]
    assert found["race=C", "algo-1"].statistic == pytest.approx(5.0) and found["race=C", "algo-1"].threshold == 6.0
    assert found["race=D", "algo-1"].statistic is None  # never -inf in the table
    assert found["race=A", "algo-1"].evidence_n == 100.0 * 10  # the trailing resolve_after (10 buckets)
    e = found["race=E", "algo-1"]
    assert (e.evidence_n, e.needed, e.statistic, e.threshold) == (321.0, 1000.0, None, None)
    assert [found["*", a].state for a in ("late", "fine", "few")] == ["alarm", "quiet", "insufficient"]
    assert (found["*", "late"].statistic, found["*", "late"].threshold) == (0.06, 0.05)
    assert {s.evaluated_at for s in states} == {utc(T * BUCKET)}
    assert {s.id for s in states} == {f"gate-a/algo-1/error_rate_drift/fmr/race={g}" for g in "ABCD"} | {
        "gate-a/algo-1/insufficient_evidence/fmr/race=E"} | {
        f"gate-a/{a}/label_backlog/label_backlog/*" for a in ("late", "fine", "few")}
    assert stream_states(policy, [_rate_stream("A", 1.0, 0)], [], None, None, threshold, 0, BUCKET) == []


def test_near_costs_at_most_ten_times_the_false_alarm_budget_when_nothing_drifts():
    """The docs' bound: S null streams at their edge for a day, A = S x buckets/day / budget; the
    streams near at the day's end are at most 10 x budget on average (Markov on R_t - t)."""
    rng = np.random.default_rng(7)
    streams, steps, budget, n, edge = 400, DAY_SECONDS // BUCKET, 0.1, 300, 1e-3
    threshold = threshold_for_budget(streams, steps, budget)
    near = alarms = 0
    for _ in range(3):
        detector = RateDriftDetector(np.full(streams, edge), threshold)
        for _ in range(steps):
            alarms += detector.update(rng.binomial(n, edge, streams), n).drift_detected.sum()
        near += (detector.statistic / math.log(10) >= math.log10(threshold) - NEAR_DECADES).sum()
    assert near / 3 <= 10 * budget * 1  # one day monitored
    assert alarms / 3 <= 1  # and the budget itself holds here (expected 0.1 a day)


# --------------------------------------------------------------------- a real cycle, two servers


def _counts(group: str, minute: int, n: float, errors: float) -> tuple:
    values = [0.0] * len(COLUMNS)
    values[0:6] = [n, errors, n, errors, n, errors]  # impostor block, weight 1
    return ("gate-a", "algo-1", "verification", "race", group, T0 + timedelta(minutes=minute), 0, *values, 1)


def _seed(store) -> dict[str, float]:
    """Three hours of counts: White steady at 1%, Black 1% then 6% from 02:00, Asian thin (300
    impostor comparisons in the baseline hour, below min_evidence). Returns the baseline
    comparisons per group (the brute force for the insufficient one)."""
    rows, baseline = [], {}
    for minute in range(180):
        for group, n, errors in (("White", 100.0, 1.0), ("Black", 100.0, 6.0 if minute >= 120 else 1.0),
                                 ("Asian", 5.0, 0.0)):
            rows.append(_counts(group, minute, n, errors))
            if minute < 60:
                baseline[group] = baseline.get(group, 0.0) + n
    store.insert("group_counts", KEY + COLUMNS + ("version",), rows)
    return baseline


POLICY = ("policy_ratio: 10\nreference: {race: White}\nscore_drift: false\n"
          "baseline: {from: '2026-11-25T00:00:00Z', to: '2026-11-25T01:00:00Z'}\nmin_evidence: 1000\n")


def _board_rows(store, sql: str) -> list[dict]:
    values = {"deployment": "gate-a"}
    sql = fd.expand_macros(fd.interpolate(sql, values), T0, T0 + timedelta(hours=4), 60)
    if hasattr(store, "_client"):
        rows, columns = store._client.execute(sql, with_column_types=True)
        return [dict(zip([c[0] for c in columns], row)) for row in rows]
    import json
    document = json.loads(store._run(sql, "JSONCompact").bytes() or b'{"meta": [], "data": []}')
    return [dict(zip([m["name"] for m in document["meta"]], row)) for row in document["data"]]


@pytest.mark.services
def test_a_cycle_writes_every_streams_state_and_the_board_reads_the_newest_cycle(migrated_store):
    store = migrated_store
    baseline = _seed(store)
    now = T0 + timedelta(hours=3)
    both = parse_policy("deployment: gate-a\nattributes: [race]\nmetrics: [fmr, fnmr]\n" + POLICY)
    only_fmr = parse_policy("deployment: gate-a\nattributes: [race]\nmetrics: [fmr]\n" + POLICY)
    run_detection(store, CoreConfig(), [both], now=now - timedelta(minutes=5))
    changed = run_detection(store, CoreConfig(), [only_fmr], now=now)  # fnmr no longer run: stale rows
    columns = ", ".join(f"toString({c})" if c in ("type", "severity", "state") else c for c in STATE_COLUMNS)
    rows = store.query(f"SELECT {columns} FROM detector_state FINAL")
    newest = max(r[-1] for r in rows)
    current = {r[1]: dict(zip(STATE_COLUMNS, r)) for r in rows if r[-1] == newest}

    # brute force: groups with min_evidence baseline comparisons are tested (rate streams, and the
    # disparity pair against the reference); the others are insufficient, with their count
    tested = {g for g, n in baseline.items() if n >= 1000}
    expected = {f"gate-a/algo-1/error_rate_drift/fmr/race={g}" for g in tested}
    expected |= {f"gate-a/algo-1/disparity_breach/fmr/race={g}" for g in tested - {"White"}}
    thin = {f"gate-a/algo-1/insufficient_evidence/fmr/race={g}": n for g, n in baseline.items() if n < 1000}
    assert set(current) == expected | set(thin)
    assert {r[1] for r in rows if r[-1] < newest} == {f"gate-a/algo-1/insufficient_evidence/fnmr/race={g}"
                                                       for g in baseline}  # no genuine comparison at all
    log10_a = math.log10(threshold_for_budget(len(expected), DAY_SECONDS / BUCKET, only_fmr.false_alarms_per_day))
    for cid, row in current.items():
        assert row["evaluated_at"].replace(tzinfo=timezone.utc) == now
        assert row["cycle_at"].replace(tzinfo=timezone.utc) == now
        if cid in thin:
            assert (row["state"], row["evidence_n"], row["needed"], row["statistic"]) == (
                "insufficient", thin[cid], 1000.0, None)
            continue
        assert row["threshold"] == pytest.approx(log10_a)
        near = row["statistic"] >= row["threshold"] - NEAR_DECADES
        assert row["state"] == ("alarm" if row["statistic"] >= row["threshold"] else "near" if near else "quiet")
    # White never moved: far below; Black's drift opened an incident
    assert current["gate-a/algo-1/error_rate_drift/fmr/race=White"]["state"] == "quiet"
    drift = "gate-a/algo-1/error_rate_drift/fmr/race=Black"
    firing = {a.id for a in read_alerts(store, state="firing")}
    assert drift in firing and drift not in {a.id for a in changed if a.state == "resolved"}

    # the Overview over what the cycles wrote: the newest cycle only, drifting first, thin last
    [coverage] = _board_rows(store, fd.COVERAGE_SQL)
    assert (coverage["tested"], coverage["not tested: too little evidence"]) == (len(expected), len(thin))
    assert coverage["last cycle"] == now.timestamp() * 1000
    wrong = _board_rows(store, fd.WRONG_NOW_SQL)
    assert wrong[0]["id"] == drift and wrong[0]["state"] == "drifting" and wrong[0]["severity"] == "critical"
    assert [r["id"] for r in wrong if r["state"] == "not tested: too little evidence"] == sorted(thin)
    assert all("fnmr" not in r["id"] for r in wrong)
    assert {r["id"] for r in wrong if r["state"] == "drifting"} == {
        cid for cid in firing if not cid.startswith("gate-a/algo-1/insufficient_evidence/")} | {
        cid for cid, row in current.items() if row["state"] == "alarm"}
