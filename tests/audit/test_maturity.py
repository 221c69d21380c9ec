"""Label maturity: the delays, as_of and the mature / not mature verdict against a recount of the workload."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from fairwatch.audit.maturity import LOOKBACK, describe, label_maturity
from fairwatch.audit.window import Window
from fairwatch.cli import app
from fairwatch.core.config import CoreConfig
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.processor import BatchProcessor, RawMessage
from fairwatch.testing.workload import T0, make_workload
from typer.testing import CliRunner

CONFIG = CoreConfig()


def parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def write(store, workload) -> None:
    messages = [RawMessage(kind, kind, 0, i, key, value) for i, (kind, key, value) in enumerate(workload.messages)]
    result = BatchProcessor(CONFIG).process(messages, lambda event_id, partition: None)
    ClickHouseSink(store, CONFIG).write(result.sink)


def exact_quantile(values: list[float], level: float = 0.99) -> int:
    """ClickHouse's quantileExact: the sorted value at position floor(level * n)."""
    ordered = np.sort(np.asarray(values))
    return int(ordered[min(int(level * len(ordered)), len(ordered) - 1)])


def recount(workload, deployment: str | None = None) -> dict:
    """Brute force over the workload's documents: per labelled event of the scope, its first
    verdict's and its counted correction's delay, and the latest verified_at of its verdicts."""
    first, corrections, latest = [], [], 0.0
    for event_id, docs in workload.outcomes.items():
        event = workload.events.get(event_id)
        if event is None or deployment not in (None, event["deployment"]):
            continue  # orphans and other deployments say nothing about this scope
        latest = max([latest, *(parse(d["verified_at"]) for d in docs)])
        occurred = parse(event["occurred_at"])
        counted = max(docs, key=lambda d: d["revision"])
        first.append(parse(next(d for d in docs if d["revision"] == 0)["verified_at"]) - occurred)
        if counted["revision"] > 0:
            corrections.append(parse(counted["verified_at"]) - occurred)
    return {"first": first, "corrections": corrections, "latest": latest}


def test_delays_as_of_and_verdict_equal_a_recount(migrated_store):
    workload = make_workload(2_000, seed=41, hours=3, revision_share=0.1)
    write(migrated_store, workload)
    window = Window(T0, T0 + timedelta(hours=3))
    oracle = recount(workload, "site-1")
    found = label_maturity(migrated_store, window, deployment="site-1")
    assert (found.source, found.corrections_observed) == ("observed", len(oracle["corrections"]))
    assert len(oracle["corrections"]) > 20  # the case is not empty
    assert found.first_verdict_p99_seconds == exact_quantile(oracle["first"])
    assert found.correction_p99_seconds == exact_quantile(oracle["corrections"])
    assert found.delay_seconds == max(exact_quantile(oracle["first"]), exact_quantile(oracle["corrections"]))
    assert found.as_of.timestamp() == int(oracle["latest"])  # verified_at is kept to the second
    assert found.revised == len(oracle["corrections"]) and found.outcomes == len(oracle["first"])
    mature_before = found.as_of - timedelta(seconds=found.delay_seconds)
    assert found.mature_before == mature_before
    # mature exactly when the window ends by then
    assert found.is_mature(Window(T0, mature_before)) and not found.is_mature(Window(T0, mature_before + timedelta(seconds=1)))
    labels = found.to_dict(window)
    assert labels["mature"] is (window.end <= mature_before) and labels["double_review"] is False


def test_a_policy_delay_wins_and_no_outcome_means_unknown(migrated_store):
    window = Window(T0, T0 + timedelta(hours=1))
    empty = label_maturity(migrated_store, window)
    assert (empty.delay_seconds, empty.source, empty.as_of, empty.is_mature(window)) == (None, "unknown", None, False)
    assert "unknown" in describe(empty.to_dict(window))
    workload = make_workload(300, seed=42, hours=1)
    write(migrated_store, workload)
    latest = recount(workload)["latest"]
    set_by_policy = label_maturity(migrated_store, window, policy_seconds=3600)
    assert (set_by_policy.delay_seconds, set_by_policy.source) == (3600, "policy")
    assert set_by_policy.mature_before.timestamp() == int(latest) - 3600
    far = label_maturity(migrated_store, window, policy_seconds=int(latest - window.end.timestamp()) + 10)
    assert not far.is_mature(window)
    assert "NOT MATURE" in describe(far.to_dict(window)) and "NOT MATURE" not in describe(set_by_policy.to_dict(window))
    with pytest.raises(ValueError, match="between 0 s and 3650 days"):
        label_maturity(migrated_store, window, policy_seconds=-1)


def test_delays_count_only_events_of_the_lookback(migrated_store):
    workload = make_workload(500, seed=43, hours=2, revision_share=0.2)
    write(migrated_store, workload)
    # a window ending more than the lookback after every event sees no delay, yet knows as_of
    late = T0 + LOOKBACK + timedelta(days=1)
    found = label_maturity(migrated_store, Window(late, late + timedelta(hours=1)))
    assert (found.corrections_observed, found.first_verdict_p99_seconds, found.source) == (0, None, "unknown")
    assert found.as_of.timestamp() == int(recount(workload)["latest"])
    assert "no delay observed in the lookback" in describe(found.to_dict(Window(late, late + timedelta(hours=1))))
    # and a window ending before the events sees none of them either (the lookback ends at its end)
    early = label_maturity(migrated_store, Window(T0 - timedelta(hours=2), T0))
    assert (early.corrections_observed, early.first_verdict_p99_seconds) == (0, None)


def test_as_of_is_the_scope_s_and_never_after_the_clock(migrated_store):
    workload = make_workload(400, seed=45, hours=1, deployments=2)
    write(migrated_store, workload)
    window = Window(T0, T0 + timedelta(hours=1))
    before = label_maturity(migrated_store, window, deployment="site-0")
    assert before.as_of.timestamp() == int(recount(workload, "site-0")["latest"])
    # an outcome of the other deployment, years later, and an orphan dated in 2030 move nothing
    other = next(e for e in workload.events.values() if e["deployment"] == "site-1")
    late = {"event_id": other["event_id"], "verified_at": "2029-06-01T00:00:00Z", "truth": "impostor",
            "reviewer": "rev-x", "revision": 7, "inclusion_prob": 1.0}
    orphan = {**late, "event_id": "never-seen", "verified_at": "2030-01-01T00:00:00Z", "revision": 0}
    write(migrated_store, type(workload)(messages=[("verified-outcomes", d["event_id"].encode(), json.dumps(d).encode())
                                                   for d in (late, orphan)]))
    after = label_maturity(migrated_store, window, deployment="site-0")
    assert after.as_of == before.as_of
    # the other deployment's own as_of is capped at the clock
    clock = datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert label_maturity(migrated_store, window, deployment="site-1", now=clock).as_of == clock


def test_an_absurd_maturity_is_an_error_line_not_a_traceback(migrated_store):
    window = ["--from", "2026-11-25T06:00:00Z", "--to", "2026-11-25T07:00:00Z"]
    for value in ("99999999999d", "100000000w"):
        result = CliRunner().invoke(app, ["metrics", "--store", migrated_store.url, *window, "--label-maturity", value])
        assert result.exit_code == 2 and "error:" in result.output and "at most 3650d" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    with pytest.raises(ValueError, match="3650 days"):
        label_maturity(migrated_store, Window(T0, T0 + timedelta(hours=1)), policy_seconds=3651 * 86_400)


def test_metrics_and_report_carry_the_labels_and_the_report_says_it_in_words(migrated_store):
    workload = make_workload(400, seed=44, hours=1, revision_share=0.1)
    write(migrated_store, workload)
    window = ["--from", "2026-11-25T06:00:00Z", "--to", "2026-11-25T07:00:00Z"]
    runner = CliRunner()
    result = runner.invoke(app, ["metrics", "--store", migrated_store.url, *window, "--json", "--label-maturity", "36h"])
    assert result.exit_code == 0, result.output
    labels = json.loads(result.stdout)["labels"]
    assert (labels["maturity_seconds"], labels["maturity_source"]) == (36 * 3600, "policy")
    report = runner.invoke(app, ["report", "--store", migrated_store.url, *window, "--format", "json",
                                 "--label-maturity", "36h", "--min-group-size", "0"])
    assert report.exit_code == 0, report.output
    document = json.loads(report.stdout)
    assert document["labels"] == labels
    assert "--label-maturity 129600s" in document["reproducibility"]["command"]
    bad = runner.invoke(app, ["metrics", "--store", migrated_store.url, *window, "--label-maturity", "soon"])
    assert bad.exit_code == 2 and "error:" in bad.output and "--label-maturity 'soon'" in bad.output
    assert "Traceback" not in bad.output


def test_labels_are_mature_after_the_delay_in_describe():
    labels = {"mature": True, "maturity_seconds": 7200, "maturity_source": "observed", "as_of": "2026-11-26T00:00:00Z",
              "mature_before": "2026-11-25T22:00:00Z", "first_verdict_p99_seconds": 3600,
              "correction_p99_seconds": 7200, "corrections_observed": 5, "outcomes": 100, "revised": 5,
              "double_review": False}
    text = describe(labels)
    assert text.startswith("Labels mature: a verdict is taken as final 2 h after its event")
    assert "(1 h)" in text and "(2 h, 5 seen)" in text and "5 of the window's 100 verdicts" in text
    assert "No independent review is recorded" in text
    assert datetime(2026, 11, 25, 22, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z") in text


def test_the_csv_carries_every_section_of_the_json(migrated_store):
    import csv
    import io

    workload = make_workload(400, seed=46, hours=1, sampled_share=0.0)
    write(migrated_store, workload)
    first = {event_id: next(d for d in docs if d["revision"] == 0) for event_id, docs in workload.outcomes.items()
             if event_id in workload.events}
    reviews = [{**doc, "reviewer": "rev-second", "review": "independent",
                "truth": "impostor" if i % 7 == 0 else doc["truth"]} for i, doc in enumerate(first.values())]
    write(migrated_store, type(workload)(messages=[("verified-outcomes", r["event_id"].encode(),
                                                    json.dumps(r).encode()) for r in reviews]))
    window = ["--from", "2026-11-25T06:00:00Z", "--to", "2026-11-25T07:00:00Z", "--min-group-size", "0"]
    runner = CliRunner()
    as_json = json.loads(runner.invoke(app, ["report", "--store", migrated_store.url, *window, "--format", "json"]).stdout)
    rows = list(csv.DictReader(io.StringIO(
        runner.invoke(app, ["report", "--store", migrated_store.url, *window, "--format", "csv"]).stdout)))
    for section, key in (("group", "groups"), ("differential", "differentials"), ("homogeneity", "homogeneity"),
                         ("corrected", "corrected")):
        mine = [r for r in rows if r["section"] == section]
        assert len(mine) == len(as_json[key]) > 0, section
    corrected = [r for r in rows if r["section"] == "corrected"]
    assert {(r["group"], float(r["fmr_high"])) for r in corrected} == {
        (c["group"], c["fmr_high"]) for c in as_json["corrected"]}
