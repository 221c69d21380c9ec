"""Detection is never silently absent: replay says which groups each policy watched, and a policy
that matches nothing stored is one error line naming the value and the nearest known ones."""

from __future__ import annotations

import json

from pathlib import Path

import pytest
from fairwatch.cli import app
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coverage")
    runner = CliRunner()
    made = runner.invoke(app, ["simulate", "--scenario", "demo", "--events", "6000", "--out", str(tmp / "sim")])
    assert made.exit_code == 0, made.output
    return tmp, runner


def _replay(tmp, runner, store, policy_text=None, *extra):
    args = ["replay", str(tmp / "sim" / "events.jsonl"), str(tmp / "sim" / "outcomes.jsonl"), "--store",
            f"chdb://{tmp}/{store}", *extra]
    if policy_text is not None:
        policy = tmp / f"{store}.yaml"
        policy.write_text(policy_text)
        args += ["--policy", str(policy)]
    return runner.invoke(app, args)


POLICY = "deployment: gate-a\nattributes: [sex, race]\nbaseline: {duration: 1h}\nmin_evidence: 300\n"


def test_replay_names_the_groups_each_policy_watched(replayed):
    tmp, runner = replayed
    result = _replay(tmp, runner, "good", POLICY, "--json")
    assert result.exit_code == 0, result.output
    [coverage] = json.loads(result.stdout)["detection"]["policies"]
    # brute force: the labels of the verified events of gate-a
    outcomes = {json.loads(line)["event_id"] for line in (tmp / "sim" / "outcomes.jsonl").read_text().splitlines()}
    events = [json.loads(line) for line in (tmp / "sim" / "events.jsonl").read_text().splitlines()]
    labels = {a: sorted({e["subject"][a] for e in events if e["event_id"] in outcomes and e["deployment"] == "gate-a"})
              for a in ("sex", "race")}
    assert coverage["deployment"] == "gate-a" and coverage["groups"] == labels
    assert coverage["algorithms"] == sorted({e["algorithm"] for e in events})
    text = _replay(tmp, runner, "good_text", POLICY)
    assert "detection: policy" in text.stdout and "race (Asian, Black, Indigenous, White)" in text.stdout


def test_replay_without_a_policy_says_detection_did_not_run(replayed):
    tmp, runner = replayed
    result = _replay(tmp, runner, "none")
    assert result.exit_code == 0 and "detection: not run by this replay (no --policy)" in result.stdout, result.output
    assert json.loads(_replay(tmp, runner, "none_json", None, "--json").stdout)["detection"] == {
        "ran": False, "policies": [], "errors": []}


@pytest.mark.parametrize("policy, said", [
    (POLICY.replace("gate-a", "gate-A"), "deployment 'gate-A' is not in the store (known: gate-a); did you mean gate-a?"),
    (POLICY.replace("race]", "rase]"), "attribute set 'rase' is not in the store (known: age, race, sex); did you mean race?"),
    (POLICY + "algorithms: [algo-v9]\n", "algorithm 'algo-v9' is not in the store (known: algo-v1); did you mean algo-v1?"),
])
def test_a_policy_matching_nothing_is_one_error_line(replayed, policy, said):
    tmp, runner = replayed
    result = _replay(tmp, runner, f"bad{abs(hash(policy))}", policy)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert said in errors[0] and "the files were loaded, this policy's detection did not run" in errors[0]


def test_the_readme_walkthrough_runs_detection_with_the_example_policy(replayed):
    # gate-a.yaml watches sex&race: replay counts the policies' intersections without being told
    tmp, runner = replayed
    example = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "policy"
    result = runner.invoke(app, ["replay", str(tmp / "sim" / "events.jsonl"), str(tmp / "sim" / "outcomes.jsonl"),
                                 "--store", f"chdb://{tmp}/readme", "--policy", str(example), "--json"])
    assert result.exit_code == 0, result.output
    detection = json.loads(result.stdout)["detection"]
    assert detection["ran"] and detection["errors"] == []
    assert set(detection["policies"][0]["groups"]) == {"sex", "race", "age", "sex&race"}


def test_one_policy_matching_nothing_leaves_the_others_running(replayed):
    tmp, runner = replayed
    folder = tmp / "two"
    folder.mkdir()
    (folder / "a.yaml").write_text(POLICY)
    (folder / "b.yaml").write_text(POLICY.replace("gate-a", "gate-b"))
    result = runner.invoke(app, ["replay", str(tmp / "sim" / "events.jsonl"), str(tmp / "sim" / "outcomes.jsonl"),
                                 "--store", f"chdb://{tmp}/two", "--policy", str(folder), "--json"])
    assert result.exit_code == 2, result.output
    detection = json.loads(result.stdout.strip().splitlines()[-1])["detection"]
    assert [c["deployment"] for c in detection["policies"]] == ["gate-a"]
    [error] = detection["errors"]
    # gate-a has a policy of its own: it is no suggestion for gate-b
    assert "deployment 'gate-b' is not in the store" in error and "did you mean" not in error


def test_a_backlog_policy_covers_matches_without_outcomes(replayed):
    tmp, runner = replayed
    empty = tmp / "no_outcomes.jsonl"
    empty.write_text("")
    policy = tmp / "backlog.yaml"
    policy.write_text("deployment: gate-a\nattributes: [sex]\nbaseline: {duration: 1h}\n"
                      "label_backlog: {after: 10m, max_share: 0.05}\n")
    result = runner.invoke(app, ["replay", str(tmp / "sim" / "events.jsonl"), str(empty), "--store",
                                 f"chdb://{tmp}/backlog", "--policy", str(policy), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["detection"]["policies"][0]["groups"] == {}
    assert any(a["type"] == "label_backlog" for a in summary["alerts"])


def test_intersections_in_another_order_or_not_counted_are_named(replayed):
    from fairwatch.detect.coverage import PolicyMismatch, policy_coverage
    from fairwatch.detect.policy import parse_policy
    from fairwatch.store.clickhouse import open_store

    tmp, runner = replayed
    loaded = _replay(tmp, runner, "crossed", None, "--intersections", "sex&race")
    assert loaded.exit_code == 0, loaded.output
    store = open_store(f"chdb://{tmp}/crossed")
    try:
        for combos, said in (("[[race, sex]]", "intersection 'race&sex' is counted as 'sex&race': write it in that order"),
                             ("[[sex, age]]", "run the worker or replay with --intersections 'sex&age'")):
            policy = parse_policy(f"deployment: gate-a\nattributes: [sex, race, age]\nintersections: {combos}\n"
                                  "baseline: {duration: 1h}\n")
            with pytest.raises(PolicyMismatch) as caught:
                policy_coverage(store, policy)
            assert said in str(caught.value)
        ok = policy_coverage(store, parse_policy("deployment: gate-a\nattributes: [sex, race]\n"
                                                 "intersections: [[sex, race]]\nbaseline: {duration: 1h}\n"))
        assert set(ok.groups["sex&race"]) == {f"{s}&{r}" for s in ("F", "M")
                                              for r in ("Asian", "Black", "Indigenous", "White")}
    finally:
        store.close()


def test_the_worker_cycle_warns_of_a_policy_matching_nothing_and_runs_the_rest(replayed, caplog):
    import logging
    from datetime import datetime, timezone

    from fairwatch.core.config import CoreConfig
    from fairwatch.detect.cycle import run_detection
    from fairwatch.detect.policy import parse_policy
    from fairwatch.store.clickhouse import open_store

    tmp, runner = replayed
    loaded = _replay(tmp, runner, "cycle")
    assert loaded.exit_code == 0, loaded.output
    store = open_store(f"chdb://{tmp}/cycle")
    try:
        policy = parse_policy(POLICY.replace("race]", "rase]"), "typo.yaml")
        with caplog.at_level(logging.WARNING, logger="fairwatch"):
            run_detection(store, CoreConfig(), [policy], now=datetime(2026, 11, 25, 8, 30, tzinfo=timezone.utc))
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("typo.yaml: attribute set 'rase' is not in the store" in m and "the rest of the policy runs" in m
                   for m in warned), warned
    finally:
        store.close()
