"""`fairwatch metrics`: per-group estimates for a window, from stored bucket counts, as the core computes them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
from fairwatch.audit.estimates import GROUP_FIELDS
from fairwatch.audit.window import WindowError, resolve_window
from fairwatch.cli import app
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.layout import GroupKey
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.processor import BatchProcessor, RawMessage
from fairwatch.testing.stack import server_url
from fairwatch.testing.workload import T0, make_workload, oracle_counts
from typer.testing import CliRunner

CONFIG = CoreConfig(intersections=(("sex", "race"),))


def seed_store(url: str, workload) -> None:
    store = open_store(url)
    migrate(store)
    messages = [RawMessage(kind, kind, 0, i, key, value) for i, (kind, key, value) in enumerate(workload.messages)]
    result = BatchProcessor(CONFIG).process(messages, lambda event_id, partition: None)
    ClickHouseSink(store, CONFIG).write(result.sink)
    store.close()


def no_constants(token):
    raise AssertionError(f"{token} in JSON output")


def expected_frame(workload, start: float, end: float) -> GroupFrame:
    keys, rows = [], []
    for (*key, bucket), row in oracle_counts(workload).items():
        if start <= bucket < end:
            keys.append(GroupKey(*key))
            rows.append(row)
    return GroupFrame.from_counts(keys, np.array(rows), CoreConfig())


@pytest.fixture(params=[pytest.param("server", marks=pytest.mark.services), "embedded"])
def store_url(request, tmp_path):
    if request.param == "embedded":
        yield f"chdb://{tmp_path}/chdb"
        return
    stack = request.getfixturevalue("stack")
    url = server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_metrics_{tmp_path.name[-12:].replace('-', '_')}")
    yield url
    store = open_store(url)
    store.execute(f"DROP DATABASE IF EXISTS {store.database}")


@pytest.mark.services
def test_json_equals_the_core_over_the_window(store_url):
    workload = make_workload(4_000, seed=31, hours=3)
    seed_store(store_url, workload)
    # --from inside a bucket: the window widens to the bucket edge and says so
    result = CliRunner().invoke(app, ["metrics", "--store", store_url, "--from", "2026-11-25T06:30:20Z",
                                      "--to", "2026-11-25T08:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout, parse_constant=no_constants)
    assert list(document) == ["window", "groups", "differentials", "homogeneity", "corrected", "labels"]
    assert document["window"] == {"from": "2026-11-25T06:30:00Z", "to": "2026-11-25T08:00:00Z"}
    start = datetime(2026, 11, 25, 6, 30, tzinfo=timezone.utc).timestamp()
    frame = expected_frame(workload, start, start + 5400)
    expected = {(r["deployment"], r["mode"], r["attribute"], r["group"]): r for r in frame.to_records()}
    assert len(document["groups"]) == len(expected)
    for row in document["groups"]:
        assert list(row) == list(GROUP_FIELDS)
        want = expected[row["deployment"], row["mode"], row["attribute"], row["group"]]
        for field in GROUP_FIELDS:
            assert row[field] == pytest.approx(want[field]), (field, row)
    metrics = {d["metric"] for d in document["differentials"]}
    assert metrics == {"max_min_ratio", "max_geomean", "fdr", "ir", "garbe"}
    assert {d["rate"] for d in document["differentials"]} == {"fmr", "fnmr", "combined"}
    assert {d["attribute"] for d in document["differentials"]} == {"sex", "race", "age", "sex&race"}
    assert any(g["attribute"] == "sex&race" and g["group"] == "F&Black" for g in document["groups"])
    assert all(d["vs_policy"] is None for d in document["differentials"])  # no policy given
    tests = {(t["deployment"], t["mode"], t["attribute"], t["rate"]): t for t in document["homogeneity"]}
    for (scope, rate), test in frame.homogeneity.items():
        assert tests[scope.deployment, scope.mode, scope.attribute, rate] == {**scope._asdict(), "rate": rate,
                                                                              **test.to_dict()}
    # with a policy ratio, each rate's max/min ratio is judged by its interval
    judged = CliRunner().invoke(app, ["metrics", "--store", store_url, "--from", "2026-11-25T06:30:20Z",
                                      "--to", "2026-11-25T08:00:00Z", "--json", "--policy-ratio", "3"])
    verdicts = 0
    for d in json.loads(judged.stdout)["differentials"]:
        if d["metric"] != "max_min_ratio" or d["rate"] == "combined":
            assert d["vs_policy"] is None
            continue
        want = ("insufficient" if d["status"] == "insufficient" else "above_policy" if d["low"] > 3
                else "within_policy" if d["high"] is not None and d["high"] <= 3 else "not_distinguishable")
        assert d["vs_policy"] == want, d
        verdicts += 1
    sets = {(d["deployment"], d["algorithm"], d["mode"], d["attribute"]) for d in document["differentials"]}
    assert verdicts == 2 * len(sets)  # each set's FMR and FNMR max/min ratio


@pytest.mark.services
def test_filters_table_output_and_empty_windows(store_url):
    workload = make_workload(1_000, seed=32, hours=1)
    seed_store(store_url, workload)
    runner = CliRunner()
    result = runner.invoke(app, ["metrics", "--store", store_url, "--from", T0.isoformat(), "--to",
                                 "2026-11-25T07:00:00Z", "--deployment", "site-1", "--json"])
    document = json.loads(result.stdout)
    assert document["groups"] and {g["deployment"] for g in document["groups"]} == {"site-1"}
    table = runner.invoke(app, env={"COLUMNS": "200"}, args=["metrics", "--store", store_url, "--from", T0.isoformat(), "--to",
                                "2026-11-25T07:00:00Z"])
    assert table.exit_code == 0 and "FMR [95% CI]" in table.stdout and "differentials" in table.stdout
    empty = runner.invoke(app, ["metrics", "--store", store_url, "--from", "2020-01-01T00:00:00Z", "--to",
                                "2020-01-02T00:00:00Z"])
    # nothing to report: status 1, the same as `fairwatch report` on an empty window
    assert empty.exit_code == 1 and empty.stdout == ""
    assert empty.stderr.startswith("error: no verified outcomes in [2020-01-01T00:00:00Z, 2020-01-02T00:00:00Z)")


def test_bad_windows_are_explained():
    with pytest.raises(WindowError, match="positive duration"):
        resolve_window("soon", None, None, 60)
    with pytest.raises(WindowError, match="not before"):
        resolve_window(None, "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", 60)
    with pytest.raises(WindowError, match="no UTC offset"):
        resolve_window(None, "2026-01-01T00:00:00", "2026-01-02T00:00:00Z", 60)
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=timezone.utc)
    window = resolve_window("1h", None, None, 60, now)
    assert (window.start, window.end) == (datetime(2026, 1, 1, 11, 0, tzinfo=timezone.utc),
                                          datetime(2026, 1, 1, 12, 1, tzinfo=timezone.utc))
    result = CliRunner().invoke(app, ["metrics", "--store", "chdb:///tmp/x", "--window", "1h", "--from", "x"])
    assert result.exit_code == 2 and "either --window or --from/--to" in result.output
