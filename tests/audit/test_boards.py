"""Grafana boards: committed == generated, structure, every query on ClickHouse 18.16 and chDB, push.

Every panel's SQL is expanded the way grafana-clickhouse-datasource does it (macros: the plugin's
pkg/macros/macros.go; variables: Grafana's singlequote format) and run against a store seeded by
the real core: a simulated deployment replayed through the worker's batch step, snapshots written
by ``metrics.write_snapshots`` and ``write_differential_snapshots`` at several times, worker
health from a real ``WorkerMetrics`` registry, and alert rows in the alerts table's shape.
Values are checked against oracles computed here from the simulated JSONL and from plain reads.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from fairwatch.audit import boards as fd
from fairwatch.audit.grafana_push import PushError, datasource_settings, push
from fairwatch.audit.snapshots import DIFFERENTIAL_COLUMNS, write_differential_snapshots, write_snapshots
from fairwatch.cli import app
from fairwatch.core.config import CoreConfig
from fairwatch.detect.incidents import ALERT_COLUMNS, alert_id
from fairwatch.detect.policy import parse_policy
from fairwatch.detect.states import STATE_COLUMNS, StreamState
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.clickhouse import open_store
from fairwatch.stream.health import health_rows, write_health
from fairwatch.stream.replay import replay
from fairwatch.testing.stack import server_url
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 25, 6, tzinfo=timezone.utc)
SNAPSHOTS = [START + timedelta(minutes=10 * k) for k in range(1, 13)]  # 06:10 .. 08:00
CONFIG = CoreConfig(target_fmr=0.02, min_comparisons=30)
SCENARIO = {
    "name": "dashboards", "seed": 5, "start": "2026-11-25T06:00:00Z", "duration_hours": 2, "events": 6000,
    "impostor_same_demographics": 0.8,
    "attributes": {"sex": {"F": 0.5, "M": 0.5}, "race": {"White": 0.7, "Black": 0.3}},
    "algorithms": {"algo-v1": {"fmr": {"base": 0.01, "factors": {"race": {"Black": 3.0}}},
                               "fnmr": {"base": 0.03, "factors": {"sex": {"F": 1.5}}}}},
    "deployments": [{"name": "gate-a", "share": 1.0, "algorithm": "algo-v1", "threshold": 3.0,
                     "impostor_share": 0.6}],
    "verification": {"match_prob": 1.0, "non_match_prob": 0.5, "delay_hours": {"median": 0.05, "sigma": 0.5},
                     "reviewers": 4, "error_prob": 0.0},
    "drifts": [{"name": "lighting", "kind": "rate", "at": "2026-11-25T07:00:00Z", "metric": "fmr", "factor": 3.0,
                "group": {"race": "Black"}}],
}
BAD_EVENT_LINES = [b'{"event_id": "broken"', b'{"event_id": "x", "occurred_at": "yesterday"}']
NUMERIC = ("Float", "Int", "UInt", "Decimal")


# ---------------------------------------------------------------------------------- seeding


def _seed(store, tmp: Path) -> dict:
    sim = simulate(parse_scenario(SCENARIO))
    paths = write_jsonl(sim, tmp)
    with paths["events"].open("ab") as handle:
        handle.write(b"\n".join(BAD_EVENT_LINES) + b"\n")
    report = replay(store, paths["events"], paths["outcomes"], CONFIG)
    for now in SNAPSHOTS:
        write_snapshots(store, CONFIG, now=now)
        write_differential_snapshots(store, CONFIG, now=now)

    from fairwatch.stream.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics()
    previous = None
    for k, at in enumerate(SNAPSHOTS):
        for partition in (0, 1):
            metrics.lag.labels("fairwatch.match-events", str(partition)).set(100 * k + partition)
        metrics.pending.set(50 + k)
        metrics.orphans.set(k % 3)
        metrics.sink_seconds.observe(0.1 * (k + 1))
        metrics.sink_seconds.observe(0.2)
        metrics.committed_at.set(at.timestamp() - 10 * (k + 1))  # commits fall behind: 10 s more each time
        rows = health_rows(metrics.registry, "worker-1", at, previous)
        write_health(store, rows)
        previous = rows

    store.insert("differential_snapshots", DIFFERENTIAL_COLUMNS, _hand_rows())  # deployment gate-h
    store.insert("alerts", ALERT_COLUMNS, SEEDED_ALERTS)
    store.insert("detector_state", STATE_COLUMNS, [state.to_row(at, version) for state, at, version in SEEDED_STATES])
    return {"paths": paths, "report": report}


def _cid(type_: str, metric: str, group: str, deployment: str = "gate-a") -> str:
    return alert_id(deployment, "algo-v1", type_, metric, group)


A1 = _cid("error_rate_drift", "fmr", "race=Black")
A2 = _cid("disparity_breach", "fmr", "race=Black")


def _alert(id_, type_, severity, group, metric, state, opened_min, resolved_min=None, version=1, deployment="gate-a"):
    resolved = None if resolved_min is None else START + timedelta(minutes=resolved_min)
    return (id_, type_, severity, deployment, "algo-v1", group, metric, 0.09, 0.07, 0.11, 0.03, "sr_band", 800.0,
            None, 6.5, state, START + timedelta(minutes=opened_min), resolved, "", "", version)


# rows of the alerts table: firing incidents of every severity, opened at different times, so that
# text order and rank order differ
SEEDED_ALERTS = [
    _alert(A1, "error_rate_drift", "critical", "race=Black", "fmr", "firing", 75),
    _alert(A2, "disparity_breach", "warning", "race=Black", "fmr", "firing", 20),
    _alert(A2, "disparity_breach", "warning", "race=Black", "fmr", "resolved", 20, 50, version=2),
    _alert(_cid("score_drift", "score", "race=White"), "score_drift", "warning", "race=White", "score", "firing", 100),
    _alert(_cid("insufficient_evidence", "fmr", "sex&race=F&Black"), "insufficient_evidence", "info",
           "sex&race=F&Black", "fmr", "firing", 60),
    _alert(_cid("error_rate_drift", "fnmr", "sex=F"), "error_rate_drift", "critical", "sex=F", "fnmr", "firing", 30),
    _alert(_cid("error_rate_drift", "fmr", "race=Black", "gate-b"), "error_rate_drift", "critical", "race=Black",
           "fmr", "firing", 90, deployment="gate-b"),
]


CYCLE_1, CYCLE_2 = START + timedelta(minutes=110), START + timedelta(minutes=115)
FRESH = datetime.now(timezone.utc).replace(microsecond=0)  # a cycle that runs as the tests do: see _stamp_fresh


def _state(type_, metric, group, state, statistic=None, threshold=6.5, n=900.0, needed=None, severity="critical",
           deployment="gate-a"):
    return StreamState(deployment, _cid(type_, metric, group, deployment), "algo-v1", "verification", type_, metric,
                       group, "sr_band", severity, state, statistic, threshold, n, needed, CYCLE_2)


# rows of detector_state as two cycles wrote them: (state, cycle_at, version). The newest cycle of
# gate-a is version 2; version 1 rows are replaced (same id) or stale (a stream no longer run).
SEEDED_STATES = [
    (_state("error_rate_drift", "fmr", "race=Black", "quiet", 2.0), CYCLE_2, 2),  # restarted after A1's alarm
    (_state("error_rate_drift", "fmr", "race=White", "alarm", 6.9), CYCLE_1, 1),  # replaced by version 2
    (_state("error_rate_drift", "fmr", "race=White", "near", 5.6), CYCLE_2, 2),
    (_state("error_rate_drift", "fnmr", "race=Black", "near", 6.1), CYCLE_2, 2),
    (_state("disparity_breach", "fnmr", "race=Black", "near", 5.9, severity="warning"), CYCLE_2, 2),
    (_state("error_rate_drift", "fmr", "sex=M", "quiet", 5.4), CYCLE_2, 2),  # 10^1.1 below: not near
    (_state("error_rate_drift", "fnmr", "sex=F", "quiet", 0.3), CYCLE_2, 2),  # an open incident (A5)
    (_state("score_drift", "score", "race=White", "near", 5.8, severity="warning"), CYCLE_2, 2),  # open too
    (_state("insufficient_evidence", "fmr", "sex&race=F&Black", "insufficient", None, None, 120.0, 1000.0,
            severity="info"), CYCLE_2, 2),
    (_state("insufficient_evidence", "fnmr", "sex&race=M&Black", "insufficient", None, None, 80.0, 1000.0,
            severity="info"), CYCLE_2, 2),
    (_state("label_backlog", "label_backlog", "*", "insufficient", None, 0.05, 12.0, 50.0, severity="warning"),
     CYCLE_2, 2),
    (_state("error_rate_drift", "fmr", "age=30-49", "near", 6.0), CYCLE_1, 1),  # stale: not in the newest cycle
    # tested, but no comparison in the trailing resolve_after: listed, never counted as quiet
    (_state("error_rate_drift", "fnmr", "sex=M", "no_recent_evidence", 1.2, n=0.0), CYCLE_2, 2),
    (_state("disparity_breach", "fmr", "sex=F", "no_recent_evidence", 0.4, n=0.0, severity="warning"), CYCLE_2, 2),
    (_state("error_rate_drift", "fmr", "race=Black", "near", 6.2, deployment="gate-b"), CYCLE_2, 3),
    # gate-d's newest cycle ran just now (the others ran in November: stale by the wall clock)
    (_state("error_rate_drift", "fmr", "race=Black", "near", 6.0, deployment="gate-d"), FRESH, 4),
    (_state("error_rate_drift", "fmr", "race=White", "no_recent_evidence", 0.1, n=0.0, deployment="gate-d"),
     FRESH, 4),
    (_state("error_rate_drift", "fnmr", "race=White", "quiet", 0.1, deployment="gate-d"), FRESH, 4),
]


def _firing(deployments=("gate-a",)) -> list[tuple]:
    """The seeded incidents still firing (newest version of each), as dicts."""
    newest = {}
    for row in SEEDED_ALERTS:
        a = dict(zip(ALERT_COLUMNS, row))
        key = (a["id"], a["opened_at"])
        if key not in newest or a["version"] > newest[key]["version"]:
            newest[key] = a
    return [a for a in newest.values() if a["state"] == "firing" and a["deployment"] in deployments]


class Backend:
    """A seeded store and how to run a query on it with column types."""

    def __init__(self, store, cleanup):
        self.store, self.cleanup = store, cleanup

    def typed(self, sql: str) -> tuple[list[str], list[str], list[tuple]]:
        if hasattr(self.store, "_client"):
            rows, columns = self.store._client.execute(sql, with_column_types=True)
            return [c[0] for c in columns], [c[1] for c in columns], rows
        result = self.store._run(sql, "JSONCompact")
        document = json.loads(result.bytes() or b'{"meta": [], "data": []}')
        return ([m["name"] for m in document["meta"]], [m["type"] for m in document["meta"]],
                [tuple(row) for row in document["data"]])


def _stamp_fresh() -> None:
    """gate-d's newest cycle runs as the tests do: stamped when a backend is seeded, not when the
    module was imported (a worker may start this module more than STALE_AFTER after collection)."""
    global FRESH
    FRESH = datetime.now(timezone.utc).replace(microsecond=0)
    SEEDED_STATES[:] = [(state, FRESH if state.deployment == "gate-d" else at, version)
                        for state, at, version in SEEDED_STATES]


@pytest.fixture(scope="module", params=[pytest.param("clickhouse-18.16", marks=pytest.mark.services), "chdb"])
def backend(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    _stamp_fresh()
    if request.param == "chdb":
        store = open_store(f"chdb://{tmp}/store")
        cleanup = store.close
    else:
        stack = request.getfixturevalue("stack")
        database = f"fw_dashboards_{uuid.uuid4().hex[:8]}"
        store = open_store(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], database))

        def cleanup():
            store.execute(f"DROP DATABASE IF EXISTS {database}")
            store.close()
    seeded = _seed(store, tmp)
    b = Backend(store, cleanup)
    b.seeded = seeded
    yield b
    cleanup()


# Grafana's request for "2026-11-25 05:00 .. now + 1h" at ~1000 points (maxDataPoints) asks for
# intervalMs = range / 1000, rounded by Grafana to a nice step; any integer >= 1 works here.
RANGE_FROM = START - timedelta(hours=1)


def _range():
    end = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    interval = max(60, int((end - RANGE_FROM).total_seconds() / 1000) // 60 * 60)
    return RANGE_FROM, end, interval


def _choose(name: str, options: list[str]) -> str:
    # the attribute with the drifting group, so that the boards show the interesting case
    if name == "attribute" and "race" in options:
        return "race"
    if name == "group" and "Black" in options:
        return "Black"
    return options[0]


def _board_runs(backend, policy: fd.BoardPolicy = fd.BoardPolicy()):
    start, end, interval = _range()

    def expand(sql):
        return fd.expand_macros(sql, start, end, interval)

    runs = []
    for name, board in fd.generate(policy).items():
        values = fd.resolve_variables(board, backend.store.query, expand, _choose)
        for q in fd.panel_queries(board):
            runs.append((q, expand(fd.interpolate(q.sql, values)), values))
    return runs, interval


def _is_numeric(type_name: str) -> bool:
    inner = type_name.replace("Nullable(", "")
    return inner.startswith(NUMERIC)


# ------------------------------------------------------------------------- every query, two servers


def test_every_panel_query_runs_and_has_the_columns_its_panel_expects(backend):
    runs, _ = _board_runs(backend)
    assert {q.panel_type for q, _, _ in runs} >= {"timeseries", "stat", "table", "heatmap", "state-timeline",
                                                  "annotation", "variable"}
    for q, sql, _ in runs:
        assert "$" not in sql.replace("$$", ""), f"{q.board} / {q.title}: unexpanded {sql}"
        names, types, rows = backend.typed(sql)
        where = f"{q.board} / {q.title} ({q.ref_id})"
        assert rows, f"{where}: no rows\n{sql}"
        if q.panel_type in ("timeseries", "heatmap", "state-timeline"):
            assert q.fmt == fd.FORMAT_TIMESERIES, where
            assert names[0] == "time" and types[0].startswith("DateTime"), f"{where}: {names} {types}"
            assert any(_is_numeric(t) for t in types[1:]), f"{where}: no numeric column in {types}"
            assert all(_is_numeric(t) or t.startswith("String") for t in types[1:]), f"{where}: {types}"
            times = [row[0] for row in rows]
            assert times == sorted(times), f"{where}: a time series must be sorted by time"
        elif q.panel_type == "stat":
            assert len(rows) == 1 and all(_is_numeric(t) for t in types), f"{where}: {types} {rows}"
        elif q.panel_type == "annotation":
            assert names[:2] == ["time", "timeEnd"] and {"title", "text", "tags"} <= set(names), where
            assert types[0].startswith("DateTime") and types[1].startswith("DateTime"), where
        elif q.panel_type == "variable":
            assert len(names) == 1, where


def test_no_query_uses_what_clickhouse_18_16_lacks():
    for board in fd.generate().values():
        for q in fd.panel_queries(board):
            for banned in ("toStartOfInterval", "$__timeInterval", "OVER (", "JSONExtract", "DateTime64"):
                assert banned not in q.sql, f"{q.board} / {q.title} uses {banned}"


# ------------------------------------------------------------------------------ values vs oracles


def _panel(runs, board: str, title_start: str, ref_id: str = "A"):
    [(q, sql, values)] = [r for r in runs if r[0].board == board and r[0].title.startswith(title_start)
                          and r[0].ref_id == ref_id]
    return q, sql, values


def _brute_force_counts(paths, lo: datetime, hi: datetime, attribute: str) -> dict[str, list[int]]:
    """impostor, false_match, genuine, false_non_match per group, from the JSONL (latest revision wins)."""
    events = {}
    for line in paths["events"].read_bytes().splitlines():
        try:
            e = json.loads(line)
            at = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
        except (ValueError, KeyError):
            continue  # the deliberately broken lines
        if lo <= at < hi:
            events[e["event_id"]] = e
    truth = {}
    for line in paths["outcomes"].read_bytes().splitlines():
        o = json.loads(line)
        if o["event_id"] in events and o["revision"] >= truth.get(o["event_id"], (-1, ""))[0]:
            truth[o["event_id"]] = (o["revision"], o["truth"])
    counts = defaultdict(lambda: [0, 0, 0, 0])
    for event_id, (_, t) in truth.items():
        e = events[event_id]
        c = counts[e["subject"][attribute]]
        if t == "impostor":
            c[0] += 1
            c[1] += e["decision"] == "match"
        else:
            c[2] += 1
            c[3] += e["decision"] == "non_match"
    return dict(counts)


def test_current_estimates_table_counts_equal_a_brute_force_join_of_the_simulated_records(backend):
    runs, _ = _board_runs(backend)
    q, sql, values = _panel(runs, "fairwatch-overview", "Current estimates")
    names, _, rows = backend.typed(sql)
    latest = max(SNAPSHOTS)
    window = timedelta(seconds=int(values["window"]))
    expected = _brute_force_counts(backend.seeded["paths"], latest - window, latest, values["attribute"])
    found = {r[names.index("group")]: [int(r[names.index(c)]) for c in
                                       ("impostor", "false_match", "genuine", "false_non_match")] for r in rows}
    assert found == expected
    for r in rows:
        row = dict(zip(names, r))
        for rate in ("fmr", "fnmr"):
            if row[rate] is not None:
                assert row[f"{rate}_low"] <= row[rate] <= row[f"{rate}_high"]
        assert row["status"] in ("ok", "insufficient", "above_target", "no_target")


def _brute_force_scores(paths, attribute: str) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """group of ``attribute`` (``sex&race``: an intersection) -> truth -> (score, weight) of the verified
    events, from the JSONL: the latest revision of each primary verdict, weight 1 / inclusion_prob."""
    events = {}
    for line in paths["events"].read_bytes().splitlines():
        try:
            e = json.loads(line)
            events[e["event_id"]] = e if "score" in e else None
        except (ValueError, KeyError):
            continue  # the deliberately broken lines
    counted = {}
    for line in paths["outcomes"].read_bytes().splitlines():
        o = json.loads(line)
        if events.get(o["event_id"]) and o.get("review", "primary") == "primary" and \
                o["revision"] >= counted.get(o["event_id"], {"revision": -1})["revision"]:
            counted[o["event_id"]] = o
    found: dict = defaultdict(lambda: {"impostor": [], "genuine": []})
    for event_id, o in counted.items():
        subject = events[event_id]["subject"]
        group = "&".join(subject[a] for a in attribute.split("&"))
        found[group][o["truth"]].append((events[event_id]["score"], 1 / o["inclusion_prob"]))
    return found


def test_score_panels_equal_a_brute_force_sweep_of_the_simulated_records(backend):
    runs, interval = _board_runs(backend)
    start, end, _ = _range()
    q, _, values = _panel(runs, "fairwatch-disparity", "FMR(t) and FNMR(t) by group")
    for attribute in ("race", "sex&race"):  # a single attribute and an intersection
        def run(sql):
            return backend.typed(fd.expand_macros(fd.interpolate(sql, {**values, "attribute": attribute}), start,
                                                  end, interval))

        names, _, rows = run(q.sql)
        assert names == ["group", "threshold", "verified impostor", "FMR", "verified genuine", "FNMR"]
        records = _brute_force_scores(backend.seeded["paths"], attribute)
        assert {r[0] for r in rows} == set(records)
        scores = {s for group in records.values() for side in group.values() for s, _ in side}
        thresholds = sorted({r[1] for r in rows})
        assert len(thresholds) >= 8 and set(thresholds) <= scores  # quantiles of the verified scores, one grid
        assert len(rows) == len(records) * len(thresholds)
        for group, threshold, impostors, fmr, genuine, fnmr in rows:
            imp, gen = records[group]["impostor"], records[group]["genuine"]
            assert (impostors, genuine) == (len(imp), len(gen))
            fm = sum(w for s, w in imp if s >= threshold)
            fnm = sum(w for s, w in gen if s < threshold)
            assert fmr is None if fm == 0 or len(imp) < fd.SCORE_MIN_COMPARISONS else \
                math.isclose(fmr, fm / sum(w for _, w in imp), rel_tol=1e-9)
            assert fnmr is None if fnm == 0 or len(gen) < fd.SCORE_MIN_COMPARISONS else \
                math.isclose(fnmr, fnm / sum(w for _, w in gen), rel_tol=1e-9)
        assert any(r[3] is not None for r in rows) and any(r[5] is not None for r in rows)
        # the two charts carry one rate each, partitioned by group, with the same numbers
        for rate, column in (("FMR", 3), ("FNMR", 5)):
            chart, _, _ = _panel(runs, "fairwatch-disparity", f"{rate}(t) by group")
            chart_names, _, chart_rows = run(chart.sql)
            assert chart_names == ["group", "threshold", rate]
            assert [tuple(r) for r in chart_rows] == [(r[0], r[1], r[column]) for r in rows]


def test_rate_band_is_the_newest_snapshot_per_bucket_and_blank_while_insufficient(backend):
    runs, interval = _board_runs(backend)
    q, sql, values = _panel(runs, "fairwatch-overview", "False match rate")
    _, _, rows = backend.typed(sql)
    plain = backend.store.query(
        "SELECT snapshot_at, fmr, fmr_low, fmr_high, status FROM estimate_snapshots"
        " WHERE window_seconds = %(w)s AND attribute = %(a)s AND group_label = %(g)s",
        {"w": int(values["window"]), "a": values["attribute"], "g": values["group"]})
    newest = {}
    for at, fmr, low, high, status in plain:
        bucket = int(at.timestamp()) // interval * interval
        if bucket not in newest or at > newest[bucket][0]:
            newest[bucket] = (at, None if status == "insufficient" else fmr, low, high)
    expected = [(b, *v[1:]) for b, v in sorted(newest.items())]
    found = [(int(_ts(r[0])), _num(r[1]), _num(r[2]), _num(r[3])) for r in rows]
    assert found == pytest.approx(expected) if all(e[1] is not None for e in expected) else found == expected
    statuses = {s for *_, s in plain}
    assert "insufficient" in statuses or any(e[1] is not None for e in expected)


def _ts(value) -> float:
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp()
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def _num(value):
    return None if value is None else float(value)


def test_status_timeline_says_insufficient_for_insufficient_groups(backend):
    runs, interval = _board_runs(backend)
    q, sql, values = _panel(runs, "fairwatch-overview", "Status by group")
    _, _, rows = backend.typed(sql)
    plain = backend.store.query(
        "SELECT snapshot_at, group_label, status FROM estimate_snapshots WHERE window_seconds = %(w)s"
        " AND attribute = %(a)s", {"w": int(values["window"]), "a": values["attribute"]})
    newest = {}
    for at, group, status in plain:
        key = (int(at.timestamp()) // interval * interval, group)
        if key not in newest or at > newest[key][0]:
            newest[key] = (at, status)
    code = {"ok": 0, "insufficient": 1, "above_target": 2, "no_target": 3}
    assert {(int(_ts(t)), g, int(c)) for t, g, c in rows} == {(k[0], k[1], code[v[1]]) for k, v in newest.items()}
    mapping = {m["options"][str(c)]["text"] for m in fd.STATUS_CODE_MAPPINGS for c in range(5)}
    assert {"ok", "insufficient", "above target", "no target"} <= mapping


def test_inequity_rate_equals_the_plug_in_value_of_the_snapshot_rates(backend):
    latest = max(SNAPSHOTS)
    resolved = 0
    for attribute in ("race", "sex"):
        for window in (3600, 86400):
            value = _differentials(backend, None, "gate-a", attribute, window)["Inequity rate (IR)"]["value"]
            params = {"t": latest, "w": window, "a": attribute}
            rates = backend.store.query(
                "SELECT fmr, fnmr, impostor, genuine FROM estimate_snapshots WHERE snapshot_at = %(t)s"
                " AND window_seconds = %(w)s AND attribute = %(a)s", params)
            [(status,)] = backend.store.query(
                "SELECT status FROM differential_snapshots WHERE snapshot_at = %(t)s AND window_seconds = %(w)s"
                " AND attribute = %(a)s AND metric = 'ir' AND deployment = 'gate-a'", params)
            fmr = [r[0] for r in rates if r[2] > 0]
            fnmr = [r[1] for r in rates if r[3] > 0]
            if status == "ok":
                plug_in = math.sqrt(max(fmr) / min(fmr)) * math.sqrt(max(fnmr) / min(fnmr))
                assert float(value) == pytest.approx(plug_in)
                resolved += 1
            elif status == "insufficient":
                assert value is None, (attribute, window, value)  # shown as "insufficient", never a number
            else:
                assert value is not None and math.isnan(float(value))
    assert resolved >= 1, "the seed should resolve IR for at least one attribute and window"


def test_ingest_rate_and_dead_letters_add_up_to_what_was_replayed(backend):
    runs, interval = _board_runs(backend)
    _, sql, _ = _panel(runs, "fairwatch-pipeline", "Ingest rate", "A")
    rows = backend.typed(sql)[2]
    n_events = sum(1 for line in backend.seeded["paths"]["events"].read_bytes().splitlines()
                   if line.strip()) - len(BAD_EVENT_LINES)
    assert round(sum(float(r[1]) for r in rows) * interval) == n_events
    _, sql, _ = _panel(runs, "fairwatch-pipeline", "Dead letters by reason")
    rows = backend.typed(sql)[2]
    assert sum(float(r[2]) for r in rows) == len(backend.seeded["report"].rejected) == len(BAD_EVENT_LINES)


def test_worker_health_panels_follow_the_registry(backend):
    runs, interval = _board_runs(backend)
    _, sql, _ = _panel(runs, "fairwatch-pipeline", "Consumer lag")
    rows = backend.typed(sql)[2]
    # newest sample per bucket: at snapshot k the two partitions lag 100k and 100k + 1
    by_bucket = {}
    for k, at in enumerate(SNAPSHOTS):
        by_bucket[int(at.timestamp()) // interval * interval] = 200 * k + 1
    assert {int(_ts(r[0])): float(r[2]) for r in rows} == by_bucket
    _, sql, _ = _panel(runs, "fairwatch-pipeline", "Sink latency")
    # between samples k-1 and k the worker wrote two batches of 0.1 (k + 1) s and 0.2 s
    expected = {int(at.timestamp()) // interval * interval: (0.1 * (k + 1) + 0.2) / 2
                for k, at in enumerate(SNAPSHOTS) if k > 0}
    found = {int(_ts(r[0])): float(r[1]) for r in backend.typed(sql)[2]}
    assert found == pytest.approx(expected)
    _, sql, _ = _panel(runs, "fairwatch-pipeline", "Seconds since each worker's last offset commit")
    # the newest sample per bucket: at snapshot k the last commit was 10 (k + 1) s before it
    expected = {}
    for k, at in enumerate(SNAPSHOTS):
        expected[int(at.timestamp()) // interval * interval] = 10.0 * (k + 1)
    rows = backend.typed(sql)[2]
    assert {r[1] for r in rows} == {"worker-1"}
    assert {int(_ts(r[0])): float(r[2]) for r in rows} == expected


def test_alert_tables_and_annotations(backend):
    runs, _ = _board_runs(backend)
    _, sql, _ = _panel(runs, "fairwatch-alerts", "Firing now")
    names, _, rows = backend.typed(sql)
    # A2 was resolved by a newer version; gate-b is not the deployment chosen
    assert {r[names.index("id")] for r in rows} == {a["id"] for a in _firing()}
    assert A2 not in {r[names.index("id")] for r in rows}
    _, sql, _ = _panel(runs, "fairwatch-alerts", "Resolved in range")
    names, _, rows = backend.typed(sql)
    assert [r[names.index("id")] for r in rows] == [A2]
    annotations = [r for r in runs if r[0].panel_type == "annotation" and r[0].board == "fairwatch-alerts"]
    names, _, rows = backend.typed(annotations[0][1])
    ends = {r[names.index("title")].split(":")[0]: r[names.index("timeEnd")] for r in rows}
    assert _ts(ends["warning disparity_breach"]) == (START + timedelta(minutes=50)).timestamp()


def test_firing_now_ranks_severity_critical_first(backend):
    """Issue #27 item 5: "Firing now" sorted severity as text (warning, info, critical). Oracle: the
    seeded firing incidents by rank (critical > warning > info), newest first within a rank."""
    runs, _ = _board_runs(backend)
    _, sql, _ = _panel(runs, "fairwatch-alerts", "Firing now")
    names, _, rows = backend.typed(sql)
    rank = {"critical": 3, "warning": 2, "info": 1}
    expected = [a["id"] for a in sorted(_firing(), key=lambda a: (-rank[a["severity"]], -a["opened_at"].timestamp()))]
    assert [r[names.index("id")] for r in rows] == expected
    assert [r[names.index("severity")] for r in rows] == ["critical", "critical", "warning", "info"]


STALE_AFTER = fd.STALE_AFTER_DEFAULT


def _freshness(cycle_at: datetime | None, now: datetime) -> str | None:
    """Stale when the cycle ran more than stale_after seconds before now (the wall clock)."""
    return None if cycle_at is None else "stale" if (now - cycle_at).total_seconds() > STALE_AFTER else "current"


def _expected_wrong_now(deployment: str = "gate-a", now: datetime | None = None) -> list[dict]:
    """Brute force over the seeded rows: the newest cycle's state of each stream beside the open
    incidents; drifting (open incident or alarm), near, no recent evidence, not tested
    (insufficient); worst first; each with its cycle's age at ``now`` and whether it is stale."""
    now = now or datetime.now(timezone.utc)
    newest = {}
    for state, at, version in SEEDED_STATES:
        if state.deployment == deployment and (state.id not in newest or version > newest[state.id][1]):
            newest[state.id] = (state, version, at)
    top = max(version for _, version, _ in newest.values())
    current = {cid: (state, at) for cid, (state, version, at) in newest.items() if version == top}
    firing = {a["id"]: a for a in _firing((deployment,))}
    rank = {"critical": 3, "warning": 2, "info": 1}
    rows = []
    for cid in set(current) | set(firing):
        state, at = current.get(cid, (None, None))
        alert = firing.get(cid)
        type_ = state.type if state else alert["type"]
        if type_ == "insufficient_evidence" or (alert is None and state.state == "insufficient"):
            shown = "not tested: too little evidence"
        elif alert is not None or state.state == "alarm":
            shown = "drifting"
        elif state.state == "near":
            shown = "near threshold"
        elif state.state == "no_recent_evidence":
            shown = "no recent evidence"
        else:
            continue  # tested and quiet, with recent comparisons
        severity = max([x for x in (state and state.severity, alert and alert["severity"]) if x], key=rank.get)
        gap = None if state is None or state.statistic is None else state.statistic - state.threshold
        rows.append({"state": shown, "severity": severity, "group": state.group if state else alert["group_label"],
                     "metric": state.metric if state else alert["metric"], "type": type_, "algorithm": "algo-v1",
                     "id": cid,
                     "statistic": state and state.statistic, "threshold": state and state.threshold,
                     "evidence_n": state and state.evidence_n, "needed": state and state.needed,
                     "open since": alert and alert["opened_at"], "evaluated": at,
                     "cycle age": None if at is None else (now - at).total_seconds(),
                     "freshness": _freshness(at, now), "_gap": gap})
    order = {"drifting": 0, "near threshold": 1, "no recent evidence": 2, "not tested: too little evidence": 3}
    rows.sort(key=lambda r: (order[r["state"]], -rank[r["severity"]], r["_gap"] is None, -(r["_gap"] or 0),
                             r["group"], r["metric"]))
    return [{k: v for k, v in r.items() if k != "_gap"} for r in rows]


def _wrong_now_rows(backend, sql: str) -> tuple[list[dict], datetime]:
    names, _, rows = backend.typed(sql)
    now = datetime.now(timezone.utc)
    found = [dict(zip(names, row)) for row in rows]
    for row in found:
        for column in ("open since", "evaluated"):
            row[column] = None if row[column] is None else datetime.fromtimestamp(_ts(row[column]), timezone.utc)
    return found, now


def _same_rows(found: list[dict], expected: list[dict]) -> None:
    """Equal, but for the cycle's age: the server's now() and ours are a moment apart."""
    assert [r["id"] for r in found] == [r["id"] for r in expected]
    for row, want in zip(found, expected):
        assert (row["cycle age"] is None) == (want["cycle age"] is None), row["id"]
        if want["cycle age"] is not None:
            assert abs(float(row["cycle age"]) - want["cycle age"]) <= 5, row["id"]
            assert abs(want["cycle age"] - STALE_AFTER) > 5, "too close to the boundary to judge"
        assert {k: v for k, v in row.items() if k != "cycle age"} == {
            k: want[k] for k in row if k != "cycle age"}


def test_what_is_wrong_now_lists_drifting_near_and_untested_conditions_worst_first(backend):
    """Issue #27 item 5: the Overview could not say which group is drifting now (its status knew
    only ok / insufficient / above target). Oracle: a brute force over the seeded incidents and
    detector states (two cycles, another deployment, stale and replaced streams)."""
    runs, _ = _board_runs(backend)
    _, sql, values = _panel(runs, "fairwatch-overview", "What is wrong now")
    assert values["deployment"] == "gate-a" and values["stale_after"] == str(STALE_AFTER)
    found, now = _wrong_now_rows(backend, sql)
    _same_rows(found, _expected_wrong_now(now=now))
    # what the operator is asked: which group is drifting now, which are close, which are not tested
    assert [(r["state"], r["group"], r["metric"]) for r in found][:3] == [
        ("drifting", "race=Black", "fmr"), ("drifting", "sex=F", "fnmr"), ("drifting", "race=White", "score")]
    assert {r["group"] for r in found if r["state"] == "not tested: too little evidence"} == {
        "sex&race=F&Black", "sex&race=M&Black", "*"}
    assert "sex=M" not in {r["group"] for r in found if r["metric"] == "fmr"}
    assert "age=30-49" not in {r["group"] for r in found}


def test_streams_without_recent_comparisons_are_listed_and_never_counted_as_tested_and_quiet(backend):
    """Review, item 2: after a replay every tested stream had evidence_n = 0 at the evaluated
    bucket, yet "what is wrong now" left them out as quiet and coverage said "tested 34". Oracle:
    the seeded states with evidence_n == 0 that neither alarmed nor were near."""
    runs, _ = _board_runs(backend)
    _, sql, _ = _panel(runs, "fairwatch-overview", "What is wrong now")
    found, _ = _wrong_now_rows(backend, sql)
    unseen = {s.id for s, _, version in SEEDED_STATES if s.deployment == "gate-a" and version == 2
              and s.evidence_n == 0 and s.state not in ("alarm", "near")}
    assert unseen and {r["id"] for r in found if r["state"] == "no recent evidence"} == unseen
    states = [r["state"] for r in found]
    assert states == sorted(states, key=fd.WRONG_NOW_STATES.index)  # after near, before not tested
    [mappings] = fd.WRONG_NOW_MAPPINGS
    assert set(mappings["options"]) == set(fd.WRONG_NOW_STATES)
    assert mappings["options"]["no recent evidence"]["color"] == "text"  # grey: unknown, never green


def test_states_of_a_cycle_older_than_stale_after_are_marked_stale(backend):
    """Review, item 2: a cycle that stops early (no baseline yet, horizon not reached) writes no
    states, so an older cycle passed for "now". Oracle: the wall clock against each deployment's
    newest cycle_at: gate-a's ran in November (stale), gate-d's as the tests started (current)."""
    runs, _ = _board_runs(backend)
    _, sql, _ = _panel(runs, "fairwatch-overview", "What is wrong now")
    _, coverage, _ = _panel(runs, "fairwatch-overview", "Detection coverage")
    for deployment, expected in (("gate-a", "stale"), ("gate-d", "current")):
        found, now = _wrong_now_rows(backend, sql.replace("'gate-a'", f"'{deployment}'"))
        _same_rows(found, _expected_wrong_now(deployment, now))
        assert {r["freshness"] for r in found if r["evaluated"] is not None} == {expected}
        names, _, [row] = backend.typed(coverage.replace("'gate-a'", f"'{deployment}'"))
        assert float(dict(zip(names, row))["cycle"]) == {"stale": 1.0, "current": 0.0}[expected]
    # the threshold is the board's variable: at 0 seconds every cycle is stale
    found, _ = _wrong_now_rows(backend, sql.replace("'gate-a'", "'gate-d'").replace(
        f"toInt64OrZero(decodeURLComponent('{STALE_AFTER}'))", "toInt64OrZero(decodeURLComponent('0'))"))
    assert {r["freshness"] for r in found} == {"stale"}
    [panel] = [p for p in fd.generate()["fairwatch-overview.json"]["panels"] if p.get("title") == "Detection coverage"]
    [override] = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "cycle"]
    [mapping, _] = override["properties"][0]["value"]
    assert (mapping["options"]["1"]["text"], mapping["options"]["0"]["text"]) == ("stale", "current")


def test_detection_coverage_counts_the_newest_cycle_and_says_when_nothing_is_watched(backend):
    runs, _ = _board_runs(backend)
    _, sql, _ = _panel(runs, "fairwatch-overview", "Detection coverage")
    names, _, [row] = backend.typed(sql)
    newest = {s.id: s for s, _, version in SEEDED_STATES if s.deployment == "gate-a" and version == 2}
    thin = sum(s.state == "insufficient" for s in newest.values())
    unseen = sum(s.state == "no_recent_evidence" for s in newest.values())
    assert thin and unseen
    assert dict(zip(names, map(float, row))) == {
        "tested": len(newest) - thin - unseen, "no recent evidence": unseen, "not tested: too little evidence": thin,
        "last cycle": CYCLE_2.timestamp() * 1000, "cycle": 1.0}
    # a deployment no cycle has run for is "not watched" (NULL), never zero streams in trouble
    [row] = backend.typed(sql.replace("'gate-a'", "'gate-c'"))[2]
    assert list(row) == [None] * 5


ABOVE, UNDECIDED, WITHIN, BELOW, THIN = ("above policy", "not distinguishable", "within policy",
                                         "below the ratio (no max / min verdict)", "insufficient")
UNBOUNDED, NO_POLICY = "not judged: no policy value bounds it", "not judged: exported without a policy"
HAND_RATIO = 10.0
# differential_snapshots rows of deployment gate-h at START + 30 min (window 1 h), one attribute per
# case set: (attribute, metric, rate, value, low, high, status, the verdict at policy_ratio 10
# worked out by hand from the interval)
HAND_CASES = [
    ("demo", "max_min_ratio", "fmr", 10.8, 7.48, 15.9, "ok", UNDECIDED),  # above 10, but the interval holds it: not "exceeded"
    ("demo", "max_min_ratio", "fnmr", 12.5, 10.2, 15.0, "ok", ABOVE),  # the whole interval is above 10
    ("demo", "max_geomean", "fmr", 6.0, 4.0, 9.0, "ok", BELOW),  # below 10 says nothing of max / min
    ("demo", "ir", "combined", 11.0, 10.5, 30.0, "ok", ABOVE),  # IR above 10: a max / min ratio is too
    ("demo", "garbe", "combined", 0.4, 0.2, 0.6, "ok", UNBOUNDED),
    ("demo", "fdr", "combined", 0.99, 0.98, 1.0, "ok", UNBOUNDED),
    ("edges", "max_min_ratio", "fmr", 12.0, 10.0, 14.0, "ok", UNDECIDED),  # low == 10 is not above 10
    ("edges", "max_min_ratio", "fnmr", 6.0, 4.0, 10.0, "ok", WITHIN),  # high == 10 is within
    ("edges", "max_geomean", "fmr", 9.0, 5.0, 11.0, "ok", UNDECIDED),
    ("edges", "ir", "combined", 9.5, 9.0, 10.0, "ok", BELOW),
    ("zero", "max_min_ratio", "fmr", None, 11.0, None, "undefined", ABOVE),  # a rate is 0; still at least 11
    ("zero", "max_min_ratio", "fnmr", None, 3.0, None, "undefined", UNDECIDED),  # no upper bound: never within
    ("zero", "max_geomean", "fmr", 3.0, 2.0, None, "ok", UNDECIDED),
    ("thin", "max_min_ratio", "fmr", 30.0, 12.0, 80.0, "insufficient", THIN),  # never red on thin evidence
    ("thin", "max_min_ratio", "fnmr", 2.0, 1.5, 3.0, "insufficient", THIN),  # nor green
    ("thin", "ir", "combined", None, None, None, "insufficient", THIN),
]
HAND_COLOURS = {ABOVE: "red", UNDECIDED: "orange", WITHIN: "green"}  # every other verdict: grey text
TITLES = {(metric, rate): title for title, metric, rate, _ in fd.DIFFERENTIALS_NOW}


def _hand_rows() -> list[tuple]:
    at = START + timedelta(minutes=30)
    return [(at, 3600, "gate-h", "algo-v1", "verification", attribute, metric, rate, value, low, high, status, 2,
             None, None) for attribute, metric, rate, value, low, high, status, _ in HAND_CASES]


def _policy(ratio: float | None, deployment: str = "gate-a", target_fmr: float | None = None):
    text = f"deployment: {deployment}\nattributes: [sex, race]\nbaseline: {{duration: 1h}}\n"
    text += f"policy_ratio: {ratio}\n" if ratio is not None else ""
    text += f"target_fmr: {target_fmr}\n" if target_fmr is not None else ""
    return parse_policy(text, f"{deployment}.yaml")


def _differentials(backend, ratio: float | None, deployment: str, attribute: str, window: int) -> dict[str, dict]:
    """The Overview's "Differentials now" rows for a scope, as the board with ``ratio`` shows them."""
    policy = fd.BoardPolicy(policy_ratio=ratio) if ratio is not None else fd.BoardPolicy()
    runs, _ = _board_runs(backend, policy)
    _, sql, values = _panel(runs, "fairwatch-overview", "Differentials now")
    sql = (sql.replace(f"attribute = decodeURLComponent('{values['attribute']}')",
                       f"attribute = decodeURLComponent('{attribute}')")
           .replace(f"window_seconds = {values['window']}", f"window_seconds = {window}")
           .replace(f"deployment = decodeURLComponent('{values['deployment']}')",
                    f"deployment = decodeURLComponent('{deployment}')"))
    names, _, rows = backend.typed(sql)
    found = {row[0]: dict(zip(names, row)) for row in rows}
    # NaN as the server gives it (chDB's JSON output here turns NaN into null, the plugin does not)
    for title, nan in backend.typed(f"SELECT differential, isNaN(value) FROM ({sql})")[2]:
        found[title]["value is NaN"] = None if nan is None else bool(int(nan))
    return found


def _colour_of(board: dict, verdict: str) -> str:
    [panel] = [p for p in board["panels"] if p.get("title") == "Differentials now, against the policy"]
    [override] = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "vs policy"]
    [mappings] = [prop["value"] for prop in override["properties"] if prop["id"] == "mappings"]
    return mappings[0]["options"][verdict]["color"]


def test_differentials_are_judged_by_their_interval_on_hand_computed_rows(backend):
    """Review, item 1: the ratio stats went red on the plug-in value ("the policy is exceeded"),
    so a race FMR ratio of 10.8 [7.48, 15.9] against policy_ratio 10 was red while the report
    called it not distinguishable. Oracle: the verdicts worked out by hand from each interval
    (HAND_CASES), on ClickHouse 18.16 and chDB."""
    board = fd.generate(fd.BoardPolicy(policy_ratio=HAND_RATIO))["fairwatch-overview.json"]
    for attribute in sorted({case[0] for case in HAND_CASES}):
        found = _differentials(backend, HAND_RATIO, "gate-h", attribute, 3600)
        cases = [case for case in HAND_CASES if case[0] == attribute]
        assert list(found) == [TITLES[m, r] for m, r in sorted({(c[1], c[2]) for c in cases},
                                                                key=lambda k: list(TITLES).index(k))]
        for _, metric, rate, value, low, high, status, verdict in cases:
            row = found[TITLES[metric, rate]]
            assert row["vs policy"] == verdict, (attribute, metric, rate)
            assert _colour_of(board, verdict) == HAND_COLOURS.get(verdict, "text"), verdict
            assert (_num(row["low"]), _num(row["high"]), _num(row["policy ratio"])) == (low, high, HAND_RATIO)
            shown = _num(row["value"])
            if status == "ok":
                assert shown == value and row["value is NaN"] is False
            elif status == "undefined":
                assert row["value is NaN"] is True  # "undefined (a rate is 0)"
            else:
                assert shown is None and row["value is NaN"] is None  # "insufficient", never a number
    # the plug-in value alone would have called the demo's race FMR a breach
    [demo] = [c for c in HAND_CASES if c[:3] == ("demo", "max_min_ratio", "fmr")]
    assert demo[3] > HAND_RATIO and demo[-1] == UNDECIDED


def test_the_boards_verdict_on_real_rows_is_the_reports(backend):
    """On the seeded snapshots, for ratios below, at and above each interval: the board's verdict
    for max / min FMR and FNMR equals the core's ``vs_policy`` (what ``fairwatch report`` says),
    recomputed from the stored counts of the snapshot's window; a differential whose snapshot says
    insufficient is shown as insufficient."""
    from fairwatch.audit.estimates import window_metrics
    from fairwatch.audit.window import resolve_window

    latest = max(SNAPSHOTS)
    seen = set()
    for attribute in ("race", "sex"):
        for window in (3600, 86400):
            scope = resolve_window(f"{window}s", None, None, CONFIG.bucket_seconds, latest)
            plain = {(m, r): (st, lo, hi) for m, r, st, lo, hi in backend.store.query(
                "SELECT metric, rate, status, low, high FROM differential_snapshots WHERE snapshot_at = %(t)s"
                " AND window_seconds = %(w)s AND attribute = %(a)s AND deployment = 'gate-a'"
                " AND metric = 'max_min_ratio'", {"t": latest, "w": window, "a": attribute})}
            bounds = {b for _, lo, hi in plain.values() for b in (lo, hi) if b is not None}
            for ratio in sorted({round(r, 6) for b in bounds for r in (b * 0.9, b, b * 1.1) if r >= 1}):
                frame, _ = window_metrics(backend.store, scope, replace(CONFIG, policy_ratio=ratio), with_labels=False,
                                          with_reviews=False)
                report = {d.rate: d.vs_policy for d in frame.differentials
                          if d.scope.attribute == attribute and d.metric == "max_min_ratio"}
                shown = _differentials(backend, ratio, "gate-a", attribute, window)
                for rate in ("fmr", "fnmr"):
                    status, low, high = plain["max_min_ratio", rate]
                    verdict = shown[TITLES["max_min_ratio", rate]]["vs policy"]
                    expected = "insufficient" if status == "insufficient" else report[rate].replace("_", " ")
                    assert verdict == expected, (attribute, window, rate, ratio, status, low, high)
                    seen.add(verdict)
    assert {ABOVE, UNDECIDED, WITHIN} <= seen, seen  # the seed reaches every verdict a colour claims


def test_no_fixed_number_colours_a_differential_and_the_policy_ratio_is_the_only_threshold():
    """Issue #27 item 5: the stats' thresholds were fixed numbers (IR yellow at 1.5, red at 3 for
    every deployment), not the policy's. Now no threshold colours a number: the verdict column
    says it, from the interval against the policy's ratio, and says "not judged" without one."""
    for ratio in (2.5, 10):
        board = fd.generate(fd.BoardPolicy.from_policies({"gate-a": _policy(ratio)}))["fairwatch-overview.json"]
        [panel] = [p for p in board["panels"] if p.get("title") == "Differentials now, against the policy"]
        assert [s["color"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]] == ["text"]
        sql = panel["targets"][0]["rawSql"]
        assert f"low > {float(ratio)!r}" in sql and f"high <= {float(ratio)!r}" in sql
        assert {_colour_of(board, v) for v in (ABOVE, UNDECIDED, WITHIN)} == {"red", "orange", "green"}
        assert {_colour_of(board, v) for v in (THIN, BELOW, UNBOUNDED, NO_POLICY)} == {"text"}
    unpoliced = fd.generate()["fairwatch-overview.json"]
    [panel] = [p for p in unpoliced["panels"] if p.get("title") == "Differentials now, against the policy"]
    sql = panel["targets"][0]["rawSql"]
    assert "low >" not in sql and "within policy" not in sql and "above policy" not in sql
    for board in fd.generate().values():  # no stat is coloured by a fixed number anywhere
        for p in board["panels"]:
            steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
            if p["type"] == "stat":
                assert [s["color"] for s in steps] == ["text"], p["title"]
    disparity = fd.generate(fd.BoardPolicy.from_policies({"gate-a": _policy(4, target_fmr=0.002)}))
    [box] = [v for v in disparity["fairwatch-disparity.json"]["templating"]["list"] if v["name"] == "target_fmr"]
    assert box["query"] == "0.002"
    with pytest.raises(fd.BoardPolicyError, match="gate-a: 2.*gate-b: 3"):
        fd.BoardPolicy.from_policies({"gate-a": _policy(2), "gate-b": _policy(3, "gate-b")})


def test_a_board_coloured_by_a_policy_offers_only_its_deployments(backend):
    start, end, interval = _range()
    for deployments, expected in ((("gate-a",), ["gate-a"]), (("gate-b",), [])):
        policy = fd.BoardPolicy(policy_ratio=3.0, deployments=deployments)
        board = fd.generate(policy)["fairwatch-overview.json"]
        [variable] = [v for v in board["templating"]["list"] if v["name"] == "deployment"]
        rows = backend.typed(fd.expand_macros(variable["query"]["rawSql"], start, end, interval))[2]
        assert [r[0] for r in rows] == expected


# ------------------------------------------------------------------------- files and structure


def test_committed_json_equals_generated_json():
    generated = fd.generate()
    committed = {p.name: p.read_text() for p in (ROOT / "dashboards" / "json").glob("*.json")}
    assert sorted(committed) == sorted(generated)
    for name, board in generated.items():
        assert committed[name] == fd.render(board), f"{name} is stale: run `fairwatch dashboards export --out dashboards/json`"


def _rects_overlap(a, b) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_structure_of_every_board():
    provisioned = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/fairwatch-clickhouse.yaml").read_text())
    [source] = provisioned["datasources"]
    assert (source["uid"], source["type"]) == (fd.DATASOURCE_UID, fd.DATASOURCE_TYPE)
    uids = set()
    for name, board in fd.generate().items():
        uids.add(board["uid"])
        panels = board["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids), name
        for i, a in enumerate(panels):
            assert 0 <= a["gridPos"]["x"] and a["gridPos"]["x"] + a["gridPos"]["w"] <= 24, (name, a["title"])
            for b in panels[i + 1:]:
                assert not _rects_overlap(a["gridPos"], b["gridPos"]), (name, a["title"], b["title"])
        refs = [p["datasource"] for p in panels if p["type"] != "row"]
        refs += [t["datasource"] for p in panels for t in p.get("targets", [])]
        refs += [a["datasource"] for a in board["annotations"]["list"]]
        refs += [v["datasource"] for v in board["templating"]["list"] if v["type"] == "query"]
        assert refs and all(r == {"type": source["type"], "uid": source["uid"]} for r in refs), name
        defined = {v["name"] for v in board["templating"]["list"]}
        text = json.dumps(board)
        used = fd.variables_used(text.replace("\\n", " "))
        assert used <= defined, f"{name}: undefined variables {used - defined}"
        repeats = {p["repeat"] for p in panels if p.get("repeat")}
        assert repeats <= defined, name
    assert len(uids) == len(fd.BOARDS)


def test_macro_expansion_matches_the_plugin():
    # expected strings as pkg/macros/macros.go formats them (macros_test.go cases, our times)
    frm = datetime(2026, 11, 25, 6, tzinfo=timezone.utc)
    to = frm + timedelta(hours=2)
    f, t = int(frm.timestamp()), int(to.timestamp())
    assert fd.expand_macros("$__timeFilter(ts)", frm, to, 30) == f"ts >= toDateTime({f}) AND ts <= toDateTime({t})"
    assert fd.expand_macros("$__fromTime $__toTime", frm, to, 30) == f"toDateTime({f}) toDateTime({t})"
    assert fd.expand_macros("$__interval_s $__interval_s", frm, to, 0.25) == "1 1"  # max(seconds, 1)
    assert fd.expand_macros("$__interval_s", frm, to, 90.9) == "90"  # int() truncates
    assert fd.interpolate("${g:singlequote}", {"g": ["a'b", "c"]}) == "'a\\'b','c'"


# ------------------------------------------------------------------------------------ export/push


def test_export_writes_the_committed_files(tmp_path):
    result = CliRunner().invoke(app, ["dashboards", "export", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for path in (ROOT / "dashboards" / "json").glob("*.json"):
        assert (tmp_path / path.name).read_text() == path.read_text()


def test_export_with_a_policy_colours_by_it_and_refuses_policies_that_disagree(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    example = (ROOT / "schemas/examples/policy/gate-a.yaml").read_text()
    (policies / "gate-a.yaml").write_text(example)
    result = CliRunner().invoke(app, ["dashboards", "export", "--policy", str(policies), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "a" / "fairwatch-overview.json").read_text())
    ratio = yaml.safe_load(example)["policy_ratio"]
    [panel] = [p for p in board["panels"] if p.get("title") == "Differentials now, against the policy"]
    assert f"low > {float(ratio)!r}" in panel["targets"][0]["rawSql"]
    (policies / "gate-b.yaml").write_text(example.replace("deployment: gate-a", "deployment: gate-b")
                                          .replace(f"policy_ratio: {ratio} ", "policy_ratio: 3 "))
    result = CliRunner().invoke(app, ["dashboards", "export", "--policy", str(policies), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and result.output.startswith("error: the policies set different policy_ratio")
    assert not (tmp_path / "b").exists()


DS_ENV = {"FAIRWATCH_CLICKHOUSE_HOST": "clickhouse", "FAIRWATCH_CLICKHOUSE_PORT": "9000",
          "FAIRWATCH_CLICKHOUSE_DATABASE": "fairwatch", "FAIRWATCH_CLICKHOUSE_USER": "auditor",
          "FAIRWATCH_CLICKHOUSE_PASSWORD": "s3cret"}


def _grafana(httpserver, datasource_exists: bool, folder_exists: bool):
    """Grafana's documented responses (HTTP API reference: data source, folder and dashboard APIs)."""
    uid = fd.DATASOURCE_UID
    if datasource_exists:
        httpserver.expect_request(f"/api/datasources/uid/{uid}", method="GET").respond_with_json(
            {"id": 7, "uid": uid, "name": "fairwatch ClickHouse", "type": fd.DATASOURCE_TYPE})
        httpserver.expect_request(f"/api/datasources/uid/{uid}", method="PUT").respond_with_json(
            {"datasource": {"id": 7, "uid": uid}, "id": 7, "message": "Datasource updated",
             "name": "fairwatch ClickHouse"})
    else:
        httpserver.expect_request(f"/api/datasources/uid/{uid}", method="GET").respond_with_json(
            {"message": "Data source not found"}, status=404)
        httpserver.expect_request("/api/datasources", method="POST").respond_with_json(
            {"datasource": {"id": 1, "uid": uid}, "id": 1, "message": "Datasource added",
             "name": "fairwatch ClickHouse"})
    if folder_exists:
        httpserver.expect_request("/api/folders/fairwatch", method="GET").respond_with_json(
            {"id": 1, "uid": "fairwatch", "title": "fairwatch", "url": "/dashboards/f/fairwatch/fairwatch"})
    else:
        httpserver.expect_request("/api/folders/fairwatch", method="GET").respond_with_json(
            {"message": "folder not found", "status": "not-found"}, status=404)
        httpserver.expect_request("/api/folders", method="POST").respond_with_json(
            {"id": 1, "uid": "fairwatch", "title": "fairwatch", "url": "/dashboards/f/fairwatch/fairwatch",
             "version": 1})
    httpserver.expect_request("/api/dashboards/db", method="POST").respond_with_json(
        {"id": 1, "uid": "x", "url": "/d/x/x", "status": "success", "version": 1, "slug": "x"})


def _requests(httpserver):
    return [(r.method, r.path, r.headers.get("Authorization"), r.get_json(silent=True)) for r, _ in httpserver.log]


CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_push_creates_datasource_folder_and_boards(httpserver, monkeypatch, tmp_path):
    _grafana(httpserver, datasource_exists=False, folder_exists=False)
    (tmp_path / "ca.pem").write_text(CA_PEM)
    for key, value in {**DS_ENV, "FAIRWATCH_CLICKHOUSE_PORT": "", "FAIRWATCH_CLICKHOUSE_CA": str(tmp_path / "ca.pem")
                       }.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["dashboards", "push", "--grafana", httpserver.url_for("/").rstrip("/")],
                                env={"FAIRWATCH_GRAFANA_TOKEN": "glsa_token"})
    assert result.exit_code == 0, result.output
    sent = _requests(httpserver)
    assert all(auth == "Bearer glsa_token" for _, _, auth, _ in sent)
    assert [(m, p) for m, p, _, _ in sent] == [
        ("GET", f"/api/datasources/uid/{fd.DATASOURCE_UID}"), ("POST", "/api/datasources"),
        ("GET", "/api/folders/fairwatch"), ("POST", "/api/folders")] + [("POST", "/api/dashboards/db")] * 4
    datasource = sent[1][3]
    assert datasource["uid"] == fd.DATASOURCE_UID and datasource["type"] == fd.DATASOURCE_TYPE
    # TLS unless plaintext is asked for by name; the CA's PEM and the password only in secureJsonData
    assert datasource["jsonData"] == {"host": "clickhouse", "port": 9440, "protocol": "native", "secure": True,
                                      "tlsAuthWithCACert": True, "defaultDatabase": "fairwatch",
                                      "username": "auditor"}
    assert datasource["secureJsonData"] == {"password": "s3cret", "tlsCACert": CA_PEM}
    assert sent[3][3] == {"title": "fairwatch", "uid": "fairwatch"}
    generated = fd.generate()
    assert [body["dashboard"] for *_, body in sent[4:]] == list(generated.values())
    assert all(body["folderUid"] == "fairwatch" and body["overwrite"] is True for *_, body in sent[4:])


def test_datasource_from_a_store_url_keeps_its_tls_and_password_file(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "ca.pem").write_text(CA_PEM)
    url = f"clickhouse://reader@db:19440/fw?secure=1&ca_certs={tmp_path}/ca.pem&password_file={tmp_path}/pw"
    settings = datasource_settings({"FAIRWATCH_CLICKHOUSE": url})
    assert settings["jsonData"] == {"host": "db", "port": 19440, "protocol": "native", "secure": True,
                                    "tlsAuthWithCACert": True, "defaultDatabase": "fw", "username": "reader"}
    assert settings["secureJsonData"] == {"password": "from-file", "tlsCACert": CA_PEM}
    plain = datasource_settings({"FAIRWATCH_CLICKHOUSE": "clickhouse://reader:pw@db/fw?secure=0"})
    assert (plain["jsonData"]["port"], plain["jsonData"]["secure"]) == (9000, False)


def test_push_again_updates_the_datasource_and_keeps_the_folder(httpserver):
    _grafana(httpserver, datasource_exists=True, folder_exists=True)
    done = push(httpserver.url_for("/").replace("http://", "http://admin:admin@").rstrip("/"), env=DS_ENV)
    sent = _requests(httpserver)
    assert [(m, p) for m, p, _, _ in sent][:3] == [
        ("GET", f"/api/datasources/uid/{fd.DATASOURCE_UID}"), ("PUT", f"/api/datasources/uid/{fd.DATASOURCE_UID}"),
        ("GET", "/api/folders/fairwatch")]
    assert sent[0][2].startswith("Basic ")  # user:pass from the URL
    assert done[0] == f"datasource {fd.DATASOURCE_UID} updated" and done[1] == "folder fairwatch exists"


def test_push_reports_refusals_and_bad_input(httpserver):
    httpserver.expect_request(f"/api/datasources/uid/{fd.DATASOURCE_UID}").respond_with_json(
        {"message": "Unauthorized"}, status=401)
    with pytest.raises(PushError, match="refused"):
        push(httpserver.url_for("/").rstrip("/"), token="bad", env=DS_ENV)
    with pytest.raises(PushError, match="credentials"):
        push(httpserver.url_for("/").rstrip("/"), env=DS_ENV)
    with pytest.raises(PushError, match="http"):
        push("grafana:3000", token="t", env=DS_ENV)
    with pytest.raises(PushError, match="FAIRWATCH_CLICKHOUSE_HOST"):
        datasource_settings({})
    with pytest.raises(PushError, match="contradicts"):
        datasource_settings({**DS_ENV, "FAIRWATCH_CLICKHOUSE_SECURE": "0", "FAIRWATCH_CLICKHOUSE_CA": "/ca.pem"})
    with pytest.raises(PushError, match="cannot read /nonexistent/pw"):
        datasource_settings({**DS_ENV, "FAIRWATCH_CLICKHOUSE_PASSWORD_FILE": "/nonexistent/pw"})
    with pytest.raises(PushError, match="1 or 0"):
        datasource_settings({**DS_ENV, "FAIRWATCH_CLICKHOUSE_SECURE": "maybe"})
    result = CliRunner().invoke(app, ["dashboards", "push"], env={"FAIRWATCH_GRAFANA": ""})
    assert result.exit_code == 2


# ------------------------------------------------------------------- values that reach the boards' SQL

# what the security issue's probe used (two accepted names turned a query into OR 1=1), and more
NASTY = ["x' OR 1=1 --", "a\\", "a\\' OR 1=1 --", "it''s", "%27", "100%", "Ñandú / 東京", "a+b c"]


def test_percentencode_is_decoded_back_exactly_by_clickhouse(backend):
    """Oracle: each value as its own ClickHouse string literal (sql_string escapes backslash and
    quote), compared on the server with what Grafana's percentencode + decodeURLComponent give."""
    for value in NASTY + ["gate-a"]:
        sql = fd.interpolate(f"SELECT decodeURLComponent('${{v:percentencode}}') = {fd.sql_string(value)},"
                             " decodeURLComponent('${v:percentencode}')", {"v": value})
        [(same, decoded)] = backend.typed(sql)[2]
        assert same in (1, True) and decoded == value, (value, sql)


def test_no_value_of_a_single_valued_variable_escapes_its_literal(backend):
    """Every panel, annotation and variable query of every board, with each single-valued
    variable set to each nasty value (what a crafted URL or a forged row could give): the SQL
    runs and matches nothing (those names are in no seeded row), never more than the honest
    value's rows. The multi-valued ones keep the values their own queries offered."""
    start, end, interval = _range()
    for name, board in fd.generate().items():
        values = fd.resolve_variables(board, backend.store.query, lambda s: fd.expand_macros(s, start, end, interval),
                                      _choose)
        single = [v["name"] for v in board["templating"]["list"]
                  if not v.get("multi") and v["type"] in ("query", "textbox")]
        for nasty in NASTY:
            forged = dict(values, **{v: nasty for v in single})
            for q in fd.panel_queries(board):
                if not fd.variables_used(q.sql) & set(single):
                    continue
                sql = fd.expand_macros(fd.interpolate(q.sql, forged), start, end, interval)
                rows = backend.typed(sql)[2]  # raises on a syntax error: the literal was escaped
                honest = backend.typed(fd.expand_macros(fd.interpolate(q.sql, values), start, end, interval))[2]
                assert len(rows) <= max(len(honest), 1), (name, q.title, nasty, len(rows), len(honest))


def test_multi_valued_variables_offer_no_value_singlequote_cannot_quote(backend):
    """The multi-valued variables' option queries (deployment, group, worker) leave out names
    holding a quote or a backslash, which the contract refuses but an older or forged row could
    hold. Oracle: the quotable filter against Python's own test of each name."""
    names = ["gate-a", "it's", "a\\b", "plain name, with comma"]
    array = "[" + ", ".join(fd.sql_string(n) for n in names) + "]"
    rows = backend.typed(f"SELECT x FROM (SELECT arrayJoin({array}) AS x) WHERE {fd.quotable('x')} ORDER BY x")[2]
    assert [r[0] for r in rows] == sorted(n for n in names if "'" not in n and "\\" not in n)
    for name, board in fd.generate().items():
        for v in board["templating"]["list"]:
            if v.get("multi"):
                assert "position(" in v["query"]["rawSql"], (name, v["name"])
