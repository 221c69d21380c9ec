"""The keyring: its file agrees with schemas/keyring.schema.json, and its rules at their boundaries.

Oracles: ``jsonschema`` for the file format (as the records' tests use it), and for the rules a
table written from the documented semantics (a window [not_before, not_after), revoked from
revoked_at on, judged at signed_at), not from the code.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml
from fairwatch.contracts.keyring import KeyringError, keyring_from, load_keyring, parse_keyring
from fairwatch.contracts.keys import generate_key
from fairwatch.contracts.records import RejectCode
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "schemas" / "examples" / "keyring" / "keyring.yaml"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEY_A, KEY_B, KEY_OLD = generate_key("gate-a-2026"), generate_key("gate-b-2026"), generate_key("gate-a-2025")


def validator() -> jsonschema.Draft202012Validator:
    schemas = {n: json.loads((REPO / "schemas" / n).read_text()) for n in ("keyring.schema.json", "common.schema.json")}
    registry = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in schemas.values()]
                                         + [("common.schema.json", Resource.from_contents(schemas["common.schema.json"]))])
    return jsonschema.Draft202012Validator(schemas["keyring.schema.json"], registry=registry,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def document(**top) -> dict:
    doc = {"keyring_version": 1, "deployments": {
        "gate-a": {"keys": [
            {"key": KEY_A.verifier.text(), "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z"},
            {"key": KEY_OLD.verifier.text(), "revoked_at": "2026-03-01T00:00:00Z", "note": "stolen"}]},
        "gate-b": {"require_signatures": False, "keys": [{"key": KEY_B.verifier.text()}]},
    }}
    doc.update(top)
    return doc


def test_the_example_is_valid_by_the_schema_and_loads():
    raw = yaml.safe_load(EXAMPLE.read_text())
    validator().validate(raw)
    ring = load_keyring(EXAMPLE)
    assert ring.requires("gate-a") and not ring.requires("gate-b") and not ring.requires("elsewhere")
    assert ring.outcomes_require_signatures  # gate-a requires signatures
    assert [g.verifier.name for g in ring.deployments["gate-a"].grants] == ["gate-a-2026", "gate-a-2025"]
    assert len(ring.digest) == 64


def test_a_json_keyring_is_read_as_well(tmp_path):
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps(document()))
    assert load_keyring(path).requires("gate-a")


INVALID = [
    ({"keyring_version": 2}, "keyring_version"),
    ({"keyring_version": True}, "keyring_version"),
    ({"keyring_version": 1, "extra": 1}, "unknown key 'extra'"),
    ({"keyring_version": 1, "require_signatures": "yes"}, "require_signatures"),
    ({"keyring_version": 1, "deployments": {"=cmd": {}}}, "not a deployment name"),
    ({"keyring_version": 1, "deployments": {"gate-a": {"keys": [{"key": KEY_A.text()}]}}}, "private"),
    ({"keyring_version": 1, "deployments": {"gate-a": {"keys": [{"key": "gate-a+00000000+AAAA"}]}}}, "Ed25519"),
    ({"keyring_version": 1, "deployments": {"gate-a": {"keys": [{"key": KEY_A.verifier.text(),
                                                                 "not_after": "2027-01-01T00:00:00"}]}}}, "offset"),
    ({"keyring_version": 1, "deployments": {"gate-a": {"keys": [{"key": KEY_A.verifier.text(), "owner": "x"}]}}},
     "unknown key 'owner'"),
    ({"keyring_version": 1, "deployments": {"gate-a": {"keys": [{"not_after": "2027-01-01T00:00:00Z"}]}}}, "key"),
    ({"keyring_version": 1, "deployments": {"gate-a": {"require": True}}}, "unknown key 'require'"),
]


@pytest.mark.parametrize("doc, message", INVALID)
def test_what_the_schema_refuses_the_loader_refuses(doc, message):
    assert list(validator().iter_errors(doc)), "the schema should refuse this too"
    with pytest.raises(KeyringError, match=message):
        keyring_from(doc, "k.yaml")


def test_rules_beyond_the_schema():
    bad_hash = KEY_A.verifier.text().split("+")
    bad_hash[1] = "00000000" if bad_hash[1] != "00000000" else "11111111"
    cases = [
        ({"keys": [{"key": KEY_A.verifier.text(), "not_before": "2027-01-01T00:00:00Z",
                    "not_after": "2026-01-01T00:00:00Z"}]}, "not_before must come before not_after"),
        ({"keys": [{"key": KEY_A.verifier.text()}, {"key": KEY_A.verifier.text()}]}, "twice"),
        ({"keys": [{"key": "+".join(bad_hash)}]}, "hash does not match"),
    ]
    for spec, message in cases:
        doc = {"keyring_version": 1, "deployments": {"gate-a": spec}}
        validator().validate(doc)  # the schema cannot say it
        with pytest.raises(KeyringError, match=message):
            keyring_from(doc)


def test_errors_name_the_file_and_the_entry(tmp_path):
    path = tmp_path / "ring.yaml"
    path.write_text("keyring_version: 1\ndeployments:\n  gate-a:\n    keys:\n      - key: nonsense\n")
    with pytest.raises(KeyringError, match=r"ring\.yaml: deployments\.gate-a\.keys\[0\]\.key"):
        load_keyring(path)
    path.write_text("keyring_version: [1\n")
    with pytest.raises(KeyringError, match="not valid YAML or JSON"):
        load_keyring(path)
    with pytest.raises(KeyringError, match="cannot read"):
        load_keyring(tmp_path / "missing.yaml")


def test_unquoted_yaml_times_are_read_and_need_an_offset():
    text = f"keyring_version: 1\ndeployments:\n  gate-a:\n    keys:\n      - key: {KEY_A.verifier.text()}\n" \
           "        not_after: 2027-01-01T00:00:00Z\n"
    assert parse_keyring(text).deployments["gate-a"].grants[0].not_after == datetime(2027, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(KeyringError, match="offset"):
        parse_keyring(text.replace("00:00:00Z", "00:00:00"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# (key, deployment, signed_at, expected reason or None): written from the documented rules
RULES = [
    (KEY_A, "gate-a", "2026-06-01T00:00:00Z", None),
    (KEY_A, "gate-a", "2026-01-01T00:00:00Z", None),  # not_before itself is inside the window
    (KEY_A, "gate-a", "2025-12-31T23:59:59Z", "key_not_yet_valid"),
    (KEY_A, "gate-a", "2026-12-31T23:59:59Z", None),
    (KEY_A, "gate-a", "2027-01-01T00:00:00Z", "expired_key"),  # not_after itself is outside
    (KEY_OLD, "gate-a", "2026-02-28T23:59:59Z", None),
    (KEY_OLD, "gate-a", "2026-03-01T00:00:00Z", "revoked_key"),  # revoked from revoked_at on
    (KEY_OLD, "gate-a", "2020-01-01T00:00:00Z", None),  # no window: anything before the revocation
    (KEY_B, "gate-a", "2026-06-01T00:00:00Z", "key_not_for_deployment"),
    (KEY_A, "gate-b", "2026-06-01T00:00:00Z", "key_not_for_deployment"),
    (KEY_A, "nowhere", "2026-06-01T00:00:00Z", "key_not_for_deployment"),
    (generate_key("stranger"), "gate-a", "2026-06-01T00:00:00Z", "unknown_key"),
]


@pytest.mark.parametrize("key, deployment, signed_at, expected", RULES)
def test_the_rules_at_their_boundaries(key, deployment, signed_at, expected):
    ring = keyring_from(document())
    rejection = ring.judge(key.key_id, deployment, at(signed_at))
    assert (None if rejection is None else rejection.code.value) == expected, rejection
    if rejection is not None:
        assert key.key_id in rejection.message or "not in the keyring" in rejection.message


def test_revocation_wins_over_expiry():
    doc = {"keyring_version": 1, "deployments": {"gate-a": {"keys": [
        {"key": KEY_A.verifier.text(), "not_after": "2026-02-01T00:00:00Z", "revoked_at": "2026-01-15T00:00:00Z"}]}}}
    assert keyring_from(doc).judge(KEY_A.key_id, "gate-a", T0 + timedelta(days=60)).code == RejectCode.REVOKED_KEY


def test_which_input_must_be_signed():
    ring = keyring_from(document())
    assert ring.requires("gate-a") and not ring.requires("gate-b") and not ring.requires("other")
    assert ring.any_required and ring.outcomes_require_signatures
    everyone = keyring_from(document(require_signatures=True))
    assert everyone.requires("other")
    relaxed = keyring_from(document(outcomes_require_signatures=False))
    assert relaxed.any_required and not relaxed.outcomes_require_signatures
    nobody = keyring_from({"keyring_version": 1, "deployments": {"gate-b": {"require_signatures": False}}})
    assert not nobody.any_required and not nobody.outcomes_require_signatures


def test_one_key_may_sign_for_several_deployments_with_windows_of_their_own():
    doc = {"keyring_version": 1, "deployments": {
        "gate-a": {"keys": [{"key": KEY_A.verifier.text(), "not_after": "2026-06-01T00:00:00Z"}]},
        "gate-c": {"keys": [{"key": KEY_A.verifier.text()}]}}}
    ring = keyring_from(doc)
    later = at("2026-07-01T00:00:00Z")
    assert ring.judge(KEY_A.key_id, "gate-a", later).code == RejectCode.EXPIRED_KEY
    assert ring.judge(KEY_A.key_id, "gate-c", later) is None
    assert ring.key(KEY_A.key_id) == KEY_A.verifier and sorted(ring.grants(KEY_A.key_id)) == ["gate-a", "gate-c"]
