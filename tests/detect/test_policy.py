"""Policy files: the example is valid, and every kind of mistake is refused with its line and reason."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from fairwatch.detect.policy import (
    PolicyError,
    load_policies,
    load_policy,
    parse_policy,
)
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "schemas" / "examples" / "policy" / "gate-a.yaml"

GOOD = """\
deployment: gate-a
attributes: [sex, race]
intersections: [[sex, race]]
baseline: {from: "2026-11-25T06:00:00Z", to: "2026-11-25T07:00:00Z"}
policy_ratio: 2
reference: {race: White}
resolve_after: 30m
"""


def test_example_is_valid_against_the_json_schema_and_loads():
    schemas = {n: json.loads((REPO / "schemas" / n).read_text()) for n in ("policy.schema.json", "common.schema.json")}
    registry = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in schemas.values()])
    document = json.loads(json.dumps(yaml.safe_load(EXAMPLE.read_text()), default=str))
    jsonschema.Draft202012Validator(schemas["policy.schema.json"], registry=registry).validate(document)
    policy = load_policy(EXAMPLE)
    assert policy.deployment == "gate-a"
    assert policy.attribute_sets == ("sex", "race", "age", "sex&race")
    assert policy.resolve_after == 30 * 60 and policy.lookback == 86400 and policy.label_delay == 0
    assert policy.routing == {"team": "biometrics-oncall"}
    assert policy.severity["score_drift"] == "warning"


def test_defaults():
    p = parse_policy(GOOD)
    assert (p.band, p.baseline_confidence, p.min_evidence, p.false_alarms_per_day) == (1.0, 0.99, 1000, 0.1)
    assert p.baseline_to.hour == 7 and p.reference == {"race": "White"} and p.score_quantile == 0.99


@pytest.mark.parametrize("replace,line,reason", [
    (("attributes: [sex, race]", "attributes: [sex, race]\ncolour: blue"), 3, "colour: unknown key"),
    (("policy_ratio: 2", "policy_ratio: 0.5"), 5, "policy_ratio: 0.5 is less than the minimum of 1"),
    (("resolve_after: 30m", "resolve_after: half an hour"), 7, "resolve_after"),
    (('to: "2026-11-25T07:00:00Z"', 'to: "2026-11-25T05:00:00Z"'), 4, "is not after"),
    (("intersections: [[sex, race]]", "intersections: [[sex, age]]"), 3, "age not in attributes"),
    (("reference: {race: White}", "reference: {age: 30-49}"), 6, "not a watched attribute set"),
    (("deployment: gate-a\n", ""), 1, "'deployment' is a required property"),
    (('baseline: {from: "2026-11-25T06:00:00Z", to: "2026-11-25T07:00:00Z"}', "baseline: {duration: 1h, from: x}"),
     4, "give either from and to, or duration"),
    (("policy_ratio: 2", "policy_ratio: [2"), 6, "not valid YAML"),
])
def test_invalid_policy_names_line_and_reason(replace, line, reason):
    text = GOOD.replace(*replace)
    assert text != GOOD
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    assert caught.value.line == line, str(caught.value)
    assert reason in caught.value.reason, str(caught.value)
    assert str(caught.value).startswith(f"p.yaml:{line}: ")


def test_directory_of_policies_refuses_two_for_one_deployment(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("gate-a", "gate-b"))
    assert sorted(load_policies(tmp_path)) == ["gate-a", "gate-b"]
    (tmp_path / "c.yaml").write_text("# again\n" + GOOD)
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path)
    assert caught.value.line == 2 and "already has a policy" in caught.value.reason
