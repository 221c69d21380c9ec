"""Detection is never silently absent: replay says which groups each policy watched, and a policy
that matches nothing stored is one error line naming the value and the nearest known ones."""

from __future__ import annotations

import json

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
    assert result.exit_code == 0 and "detection: not run (no --policy)" in result.stdout, result.output


@pytest.mark.parametrize("policy, said", [
    (POLICY.replace("gate-a", "gate-A"), "deployment 'gate-A' is not in the store (known: gate-a); did you mean gate-a?"),
    (POLICY.replace("race]", "rase]"), "attribute set 'rase' is not in the store (known: age, race, sex); did you mean race?"),
    (POLICY + "intersections: [[sex, race]]\n", "with --intersections sex&race"),
    (POLICY + "algorithms: [algo-v9]\n", "algorithm 'algo-v9' is not in the store (known: algo-v1); did you mean algo-v1?"),
])
def test_a_policy_matching_nothing_is_one_error_line(replayed, policy, said):
    tmp, runner = replayed
    result = _replay(tmp, runner, f"bad{abs(hash(policy))}", policy)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    flat = " ".join(result.output.split())
    assert said in flat and "the files were loaded, detection did not run" in flat, flat
