"""The Python models and the JSON Schemas agree, with the `jsonschema` library as the oracle."""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import msgspec
import pytest
from fairwatch.contracts import acquisition, envelopes, uses
from fairwatch.contracts.acquisition import Acquisition, decode_acquisition
from fairwatch.contracts.uses import UseRecord, decode_use
from fairwatch.contracts import records as contracts
from fairwatch.contracts.records import (
    MatchEvent,
    RejectCode,
    Rejection,
    VerifiedOutcome,
    decode_match_event,
    decode_verified_outcome,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = SCHEMAS / "examples"


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


COMMON = load_schema("common")
REGISTRY = Registry().with_resources(
    (load_schema(n)["$id"], Resource.from_contents(load_schema(n)))
    for n in ("common", "match_event", "verified_outcome", "alert", "dead_letter")
)


def _ecma_pattern(validator, pattern, instance, schema):
    """`pattern` with ECMA-262 semantics, which JSON Schema specifies: `$` is the end of input.

    Python's `re.search` also lets `$` match before a trailing newline; the stock keyword would
    accept "id\\n" as an event_id, which no conforming validator does.
    """
    if validator.is_type(instance, "string") and not re.search(re.sub(r"\$$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


def oracle(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    EcmaValidator.check_schema(schema)
    return EcmaValidator(schema, registry=REGISTRY, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


KINDS = ("match_event", "verified_outcome", "acquisition_event", "use_record")
ORACLES = {kind: oracle(kind) for kind in KINDS}
DECODERS = {"match_event": decode_match_event, "verified_outcome": decode_verified_outcome,
            "acquisition_event": decode_acquisition, "use_record": decode_use}
MODELS = {"match_event": MatchEvent, "verified_outcome": VerifiedOutcome, "acquisition_event": Acquisition,
          "use_record": UseRecord}
REQUIRED = {"match_event": contracts.MATCH_EVENT_REQUIRED, "verified_outcome": contracts.VERIFIED_OUTCOME_REQUIRED,
            "acquisition_event": acquisition.REQUIRED, "use_record": uses.REQUIRED}


def inline_refs(node):
    """The schema with references to common.schema.json inlined, for hypothesis-jsonschema."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = COMMON["$defs"][node["$ref"].rsplit("/", 1)[1]]
            return inline_refs({**target, **{k: v for k, v in node.items() if k != "$ref"}})
        out = {k: inline_refs(v) for k, v in node.items() if k not in ("$schema", "$id")}
        if out.get("type") == "array" and out.get("maxItems", 0) > 3:
            out["maxItems"] = 3  # long candidate lists only slow generation; their rules are per entry pair
        return out
    if isinstance(node, list):
        return [inline_refs(v) for v in node]
    return node


def generator_schema(kind: str) -> dict:
    """The schema documents are generated from: without its conditionals (if/then, and the
    outcome's allOf of them: verification events with candidate lists, impostor verdicts with a
    mate_rank and independent reviews with verifiers are generated too, and the oracle, which keeps
    them, refuses them; hypothesis-jsonschema is much slower on conditionals)."""
    schema = inline_refs(load_schema(kind))
    for conditional in ("if", "then", "allOf"):
        schema.pop(conditional, None)
    return schema


# ---------------------------------------------------------------- the field lists agree


@pytest.mark.parametrize("name", KINDS)
def test_model_fields_are_the_schema_properties(name):
    schema = load_schema(name)
    model_fields = [f.name for f in msgspec.structs.fields(MODELS[name])]
    assert set(model_fields) == set(schema["properties"])
    required_in_model = {f.name for f in msgspec.structs.fields(MODELS[name]) if f.required}
    assert set(schema["required"]) >= required_in_model
    assert list(REQUIRED[name]) == schema["required"]
    assert schema["additionalProperties"] is False


def test_patterns_are_the_schema_patterns():
    defs = COMMON["$defs"]
    assert contracts.ID_PATTERN == defs["event_id"]["pattern"]
    assert contracts.NAME_PATTERN == defs["name"]["pattern"]
    assert contracts.TIMESTAMP_PATTERN == defs["timestamp"]["pattern"]
    assert contracts.ATTRIBUTE_PATTERN == defs["labels"]["propertyNames"]["pattern"]
    assert contracts.LABEL_PATTERN == defs["labels"]["additionalProperties"]["pattern"]
    assert contracts.MAX_ID_LENGTH == defs["event_id"]["maxLength"]
    assert contracts.MAX_LABELS == defs["labels"]["maxProperties"]
    assert contracts.MAX_LABEL_LENGTH == defs["labels"]["additionalProperties"]["maxLength"]
    assert f"^{contracts.CLUSTER_ID_RE.pattern}$" == load_schema("match_event")["properties"]["cluster_id"]["pattern"]
    enums = load_schema("match_event")["properties"]
    assert list(contracts.MODES) == enums["mode"]["enum"]
    assert list(contracts.DECISIONS) == enums["decision"]["enum"]
    assert list(contracts.TRUTHS) == load_schema("verified_outcome")["properties"]["truth"]["enum"]
    assert list(acquisition.OUTCOMES) == load_schema("acquisition_event")["properties"]["outcome"]["enum"]
    assert f"^{contracts.CLUSTER_ID_RE.pattern}$" == load_schema("acquisition_event")["properties"]["cluster_id"]["pattern"]
    dead_letter_codes = load_schema("dead_letter")["properties"]["reason_code"]["enum"]
    assert sorted(dead_letter_codes) == sorted(c.value for c in RejectCode)


# ---------------------------------------------------------------- examples


VALID = sorted((EXAMPLES / "valid").glob("*.json"))
INVALID = json.loads((EXAMPLES / "invalid" / "manifest.json").read_text())


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_examples_pass_schema_and_model(path):
    kind = path.stem.split(".")[0]
    document = json.loads(path.read_bytes())
    oracle(kind).validate(document)
    if kind in DECODERS:
        record = DECODERS[kind](path.read_bytes())
        assert not isinstance(record, Rejection), record
        assert isinstance(record, MODELS[kind])
        # encoding back gives a document the schema accepts and that decodes to the same record
        ORACLES[kind].validate(json.loads(record.to_json()))
        assert DECODERS[kind](record.to_json()) == record


# Faults below the level JSON Schema sees: a JSON parser keeps the last duplicate key and turns
# NaN / Infinity / 1e400 into floats the `number` type accepts. The model rejects them all.
JSON_LEVEL = {"invalid_json", "invalid_encoding", "duplicate_key", "non_finite_number", "too_large"}


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["file"])
def test_invalid_examples_are_rejected_with_their_reason(case):
    raw = (EXAMPLES / "invalid" / case["file"]).read_bytes()
    result = DECODERS[case["kind"]](raw)
    assert isinstance(result, Rejection), f"{case['file']} was accepted"
    assert result.code == case["reason_code"]
    assert result.field == case["field"]
    if case["reason_code"] not in JSON_LEVEL:
        document = json.loads(raw)
        refused = not ORACLES[case["kind"]].is_valid(document)
        if not refused:  # a rule between fields, stated in the descriptions
            refused = not FIELD_RULES.get(case["kind"], lambda d: True)(document)
        assert refused, "the schema (or the search rules it states in words) should refuse it too"


def test_fifteen_kinds_of_bad_input_give_distinct_readable_reasons():
    reasons = {}
    for case in INVALID:
        result = DECODERS[case["kind"]]((EXAMPLES / "invalid" / case["file"]).read_bytes())
        reasons[case["file"]] = str(result)
    too_large = decode_match_event(b'{"event_id": "' + b"x" * contracts.MAX_MESSAGE_BYTES + b'"}')
    assert too_large.code == RejectCode.TOO_LARGE
    reasons["too_large"] = str(too_large)
    assert len(set(reasons.values())) == len(reasons), "two faults share one reason"
    assert len({c["reason_code"] for c in INVALID} | {"too_large"}) >= 15
    for text in reasons.values():
        code, _, sentence = text.partition(": ")
        assert code.split(" ")[0] in {c.value for c in RejectCode}
        assert len(sentence.split()) >= 3, text


def test_rejections_name_the_value():
    ev = json.loads((EXAMPLES / "valid" / "match_event.verification.json").read_text())
    ev["event_id"] = "x" * 129
    assert "129 characters" in str(decode_match_event(json.dumps(ev)))
    ev["event_id"] = "ok"
    ev["score"] = 1e400
    assert decode_match_event(json.dumps(ev)).code == RejectCode.NON_FINITE_NUMBER


def test_timestamps_outside_the_years_clickhouse_stores_are_refused_by_both_paths():
    """A record whose time ClickHouse's DateTime cannot hold would stall the sink: refused with a
    reason, by the full parser and (by declining) the envelope fast path; the edge years fit
    whatever the offset."""
    event = json.loads((EXAMPLES / "valid" / "match_event.identification.json").read_text())
    for text, ok in [("1970-12-31T23:59:59Z", False), ("1971-01-01T00:00:00+23:59", True),
                     ("2105-12-31T23:59:59-23:59", True), ("2106-01-01T00:00:00Z", False),
                     ("0001-01-01T00:00:00Z", False)]:
        doc = dict(event, occurred_at=text)
        result = contracts.decode_match_event(json.dumps(doc).encode())
        if ok:
            assert 0 < result.occurred_at.timestamp() < 2**32
        else:
            assert isinstance(result, Rejection) and result.code == RejectCode.BAD_TIMESTAMP
            assert "1971-2105" in result.message
        envelope = json.dumps({"batch_version": 1, "bucket": 0, "partitions": 1, "records": [doc]}).encode()
        assert (envelopes.decode_valid_batch(envelope, "match_event") is not None) == ok


def test_timestamps_keep_their_instant():
    ev = decode_match_event((EXAMPLES / "valid" / "match_event.identification.json").read_bytes())
    assert ev.occurred_at.utcoffset().total_seconds() == 3600
    assert ev.occurred_at == datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
    assert contracts.format_timestamp(ev.occurred_at) == "2026-11-26T09:00:00+01:00"
    nano = contracts.parse_timestamp("2026-01-01T00:00:00.123456789Z", "t")
    assert nano.microsecond == 123456 and contracts.format_timestamp(nano) == "2026-01-01T00:00:00.123456Z"


# ---------------------------------------------------------------- generated cases

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
TRICKY_STRINGS = st.sampled_from(
    ["", "x" * 128, "x" * 129, "a b", "id\n", "F&M", "2026-11-26T08:15:02Z", "2026-11-26T08:15:02",
     "2026-02-29T00:00:00Z", "2024-02-29T23:59:59.5+14:00", "2026-11-26t08:15:02z", "2026-11-26 08:15:02Z",
     "match", "non_match", "genuine", "impostor", "verification", "identification", "Black", "skin tone"]
)


def mutations(kind: str):
    schema = load_schema(kind)
    names = sorted(schema["properties"]) + ["extra", "face"]
    replacement = JSON_VALUES | TRICKY_STRINGS | st.dictionaries(
        st.sampled_from(["sex", "race", "1x", "age", "a b"]), JSON_SCALARS | TRICKY_STRINGS, max_size=3
    ) | st.sampled_from([0, 1, -1, 0.5, 1.0, 1.5, 2.0, 1e-300, 2**31 - 1, 2**31, 1e300, True, False])
    return st.lists(
        st.tuples(st.sampled_from(["drop", "set"]), st.sampled_from(names), replacement), min_size=0, max_size=3
    )


def apply(document: dict, changes) -> dict:
    document = copy.deepcopy(document)
    for action, name, value in changes:
        if action == "drop":
            document.pop(name, None)
        else:
            document[name] = value
    return document


def search_rules_hold(document: dict) -> bool:
    """The rules between a search's fields that JSON Schema cannot state (the schema's
    descriptions), written out here independently of the decoder."""
    candidates = document.get("candidates")
    if candidates is None:
        return True
    ranks = [c["rank"] for c in candidates]
    scores = [c["score"] for c in candidates]
    ids = [c["candidate_id"] for c in candidates]
    if ranks != list(range(1, len(candidates) + 1)) or len(set(ids)) != len(ids):
        return False
    if any(later > earlier for earlier, later in zip(scores, scores[1:])):
        return False
    if len(candidates) > document.get("list_length", len(candidates)):
        return False
    if not candidates:
        return document["score"] < document["threshold"] and document["decision"] == "non_match"
    top_is_match = scores[0] >= document["threshold"]
    return document["score"] == scores[0] and document["decision"] == ("match" if top_is_match else "non_match")


def use_rules_hold(document: dict) -> bool:
    """A use's end is not before its start (the schema's description), compared as instants."""
    if "ended_at" not in document:
        return True
    def instant(text: str) -> datetime:
        text = re.sub(r"(\.\d{6})\d+", r"\1", text.upper().replace("Z", "+00:00"))  # Python reads 6 digits
        return datetime.fromisoformat(text)

    return instant(document["ended_at"]) >= instant(document["started_at"])


FIELD_RULES = {"match_event": search_rules_hold, "use_record": use_rules_hold}


def assert_agree(kind: str, document) -> None:
    expected = ORACLES[kind].is_valid(document)
    if expected and kind in FIELD_RULES:
        expected = FIELD_RULES[kind](document)
    result = DECODERS[kind](json.dumps(document, allow_nan=False))
    accepted = not isinstance(result, Rejection)
    assert accepted == expected, (
        f"schema says {'valid' if expected else 'invalid'}, model says {result}: {json.dumps(document)[:300]}"
    )


GENERATED = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def generated(kind: str) -> settings:
    """200 documents for the records with nested lists and rules between fields; 100 for the flat
    acquisition attempts and use records (a handful of fields each, no nesting but the labels)."""
    return settings(GENERATED, max_examples=100 if kind in ("acquisition_event", "use_record") else 200)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_valid_documents_agree(kind):
    @generated(kind)
    @given(from_schema(generator_schema(kind)))
    def check(document):
        assert_agree(kind, document)

    check()


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_documents_agree(kind):
    @generated(kind)
    @given(from_schema(generator_schema(kind)), mutations(kind))
    def check(document, changes):
        assert_agree(kind, apply(document, changes))

    check()


@pytest.mark.parametrize("kind", KINDS)
def test_arbitrary_json_agrees(kind):
    @generated(kind)
    @given(JSON_VALUES)
    def check(document):
        assert_agree(kind, document)

    check()


def test_large_integers_that_are_not_finite_doubles_are_refused():
    ev = json.loads((EXAMPLES / "valid" / "match_event.verification.json").read_text())
    raw = json.dumps(ev).replace("0.873", "1" + "0" * 400)
    assert decode_match_event(raw).code == RejectCode.NON_FINITE_NUMBER
    assert math.isfinite(decode_match_event(json.dumps(ev)).score)


def assert_fast_path_agrees(kind: str, document) -> None:
    """The fast path accepts only what the full parser accepts, and gives the same record."""
    from fairwatch.contracts import records as contracts

    fast = {"match_event": contracts._fast_match_event, "verified_outcome": contracts._fast_verified_outcome}[kind]
    full = {"match_event": contracts._parse_match_event_fully,
            "verified_outcome": contracts._parse_verified_outcome_fully}[kind]
    document = json.loads(json.dumps(document, allow_nan=False))  # what the decoder hands over
    quick = fast(document)
    if quick is None:
        return
    try:
        expected = full(document)
    except contracts.ContractError as exc:
        raise AssertionError(f"fast path accepted what the parser refuses ({exc}): {document}") from None
    assert quick == expected and quick.to_dict() == expected.to_dict()
    stamp = "occurred_at" if kind == "match_event" else "verified_at"
    assert getattr(quick, stamp).utcoffset() == getattr(expected, stamp).utcoffset()


@pytest.mark.parametrize("kind", ["match_event", "verified_outcome"])
def test_the_fast_path_agrees_with_the_full_parser(kind):
    @GENERATED
    @given(from_schema(generator_schema(kind)), mutations(kind))
    def check(document, changes):
        assert_fast_path_agrees(kind, document)
        assert_fast_path_agrees(kind, apply(document, changes))

    check()


def common_documents(kind: str) -> list[dict]:
    from fairwatch.testing.workload import make_workload

    topic = "match-events" if kind == "match_event" else "verified-outcomes"
    workload = make_workload(200, seed=3, malformed_share=0.0)
    return [doc for k, _, value in workload.messages if k == topic and "candidates" not in (doc := json.loads(value))]


FIELD_VALUES = st.sampled_from([
    "a b", "F&M", "", "x" * 129, "é", "id\n", "2026-11-26T08:15:02.123456+14:00", "2026-11-26T08:15:02.1234567Z",
    "2026-11-26T08:15:02.12345Z", "2026-11-26T24:00:00Z", "2026-11-26T08:15:60Z", "2026-02-30T00:00:00Z",
    "0000-01-01T00:00:00Z", "2026-11-26T08:15:02-24:00", "2026-11-26T08:15:02+05:60", "2026-11-26T08:15:02",
    "2026-11-26 08:15:02Z", "2026-11-26t08:15:02z", 0, 1, 2, -1, 0.0, 1.0, 1.5, 2**31, 2**31 - 1, 3.0, True, None,
    [], {}, "match", "non_match", "genuine", "impostor", "identification",
])
LABEL_VALUES = st.sampled_from([
    {}, {"sex": "F"}, {"sex": "F&M"}, {"1x": "F"}, {"_x": "F"}, {"sex": 1}, {"sex": ""}, {"sex": "x" * 65},
    {"sex": "x" * 64}, {"sex": None}, {"sex": ["F"]}, {"sex": "F", "race": "a&b"}, {"a" * 65: "F"},
    {f"a{i}": "x" for i in range(17)}, {f"a{i}": "x" for i in range(16)}, {"skin tone": "V"}, {"sex": "F\n"}, [],
])


def field_changes(names: list[str]):
    def value_for(action_name):
        action, name = action_name
        values = LABEL_VALUES if name in ("subject", "reference") else FIELD_VALUES
        return values.map(lambda value: (action, name, value))

    return st.lists(st.tuples(st.sampled_from(["set", "set", "drop"]), st.sampled_from(names)).flatmap(value_for),
                    min_size=1, max_size=2)


@pytest.mark.parametrize("kind", ["match_event", "verified_outcome"])
def test_the_fast_path_agrees_on_common_records_with_one_field_changed(kind):
    """Records the fast path takes, each with a field or two set to an edge value: it must still
    agree with the full parser (accept the same value, or leave the record to it)."""
    base = common_documents(kind)
    names = sorted(load_schema(kind)["properties"]) + ["extra"]

    @GENERATED
    @given(st.sampled_from(base), field_changes(names))
    def check(document, changes):
        assert_fast_path_agrees(kind, apply(document, changes))

    check()


def test_the_fast_path_takes_the_common_records():
    from fairwatch.contracts import records as contracts
    from fairwatch.testing.workload import make_workload

    workload = make_workload(300, seed=3, malformed_share=0.0)
    documents = [(kind, json.loads(value)) for kind, _, value in workload.messages]
    taken = [(contracts._fast_match_event if kind == "match-events" else contracts._fast_verified_outcome)(doc)
             for kind, doc in documents]
    # all but searches with a candidate list, whose rules between fields are the full parser's
    assert all((record is None) == ("candidates" in doc) for record, (_, doc) in zip(taken, documents))
    assert sum("mate_rank" in doc for _, doc in documents) > 5 and sum("candidates" in doc for _, doc in documents) > 5


# ---------------------------------------------------------------- the fast path for valid batches

def envelope(records: list, bucket: int = 0, partitions: int = 1, compact: bool = True) -> bytes:
    doc = {"batch_version": 1, "bucket": bucket, "partitions": partitions, "records": records}
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(doc, allow_nan=False, ensure_ascii=False, separators=separators).encode()


def assert_batch_fast_path_agrees(kind: str, raw: bytes) -> bool:
    """decode_valid_batch takes an envelope only when the full path finds every record valid, and
    then gives the same header and records (same floats to the bit, same offsets). True if taken."""
    fast = envelopes.decode_valid_batch(raw, kind)
    if fast is None:
        return False
    full = {"match_event": contracts._parse_match_event_fully,
            "verified_outcome": contracts._parse_verified_outcome_fully}[kind]  # no caches shared with the fast paths
    try:
        obj = contracts.load_json(raw)
        header = envelopes._batch_header(obj)
        expected_records = [full(record) for record in obj["records"]]
    except contracts.ContractError as exc:
        raise AssertionError(f"fast path took what the full path refuses: {exc} {raw[:300]!r}") from None
    assert fast.header == header and len(fast.records) == len(expected_records)
    assert envelopes.records_of_valid_batch(raw, kind) == fast.records  # the sink's decode, unchecked
    stamp = "occurred_at" if kind == "match_event" else "verified_at"
    for quick, expected in zip(fast.records, expected_records):
        assert type(quick) is type(expected) and quick == expected and quick.to_dict() == expected.to_dict()
        assert getattr(quick, stamp).utcoffset() == getattr(expected, stamp).utcoffset()
        for name in ("score", "threshold", "inclusion_prob"):
            if hasattr(expected, name):
                assert math.copysign(1, getattr(quick, name)) == math.copysign(1, getattr(expected, name))
    _, items = envelopes.decode_message_fully(raw, kind)
    for index, item in enumerate(items):  # what dead letters and re-routing carry
        assert envelopes.InputItem(index, fast.records[index], fast).raw == item.raw
    return True


def with_duplicate_key(raw: bytes, index: int, name: str, value) -> bytes:
    """The envelope with ``"name": value`` written again at the start of record ``index``."""
    doc = json.loads(raw)
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    first = json.dumps(doc["records"][index], ensure_ascii=False, separators=(",", ":"))
    start = text.index(first)
    extra = json.dumps({name: value}, ensure_ascii=False, separators=(",", ":"))[1:-1]
    return (text[: start + 1] + extra + "," + text[start + 1 :]).encode()


@pytest.mark.parametrize("kind", ["match_event", "verified_outcome"])
def test_the_batch_fast_path_agrees_with_the_full_path_on_changed_records(kind):
    base = common_documents(kind)
    names = sorted(load_schema(kind)["properties"]) + ["extra"]

    @GENERATED
    @given(st.lists(st.tuples(st.sampled_from(base), field_changes(names) | st.just([])), min_size=1, max_size=4),
           st.booleans())
    def check(records, compact):
        assert_batch_fast_path_agrees(kind, envelope([apply(doc, changes) for doc, changes in records],
                                                     compact=compact))

    check()


@pytest.mark.parametrize("kind", ["match_event", "verified_outcome"])
def test_the_batch_fast_path_agrees_on_every_edge_value_of_every_field(kind):
    """Each field of one record of a valid envelope set to each edge value (or dropped), in turn."""
    first, second = common_documents(kind)[:2]
    values = list(FIELD_VALUES.elements)
    labels = list(LABEL_VALUES.elements)
    taken = 0
    for name in sorted(load_schema(kind)["properties"]) + ["extra"]:
        for value in (labels if name in ("subject", "reference") else values) + [None]:
            changes = [("drop", name, None)] if value is None else [("set", name, value)]
            taken += assert_batch_fast_path_agrees(kind, envelope([first, apply(second, changes)]))
    assert taken > 0  # some edge values are valid: the fast path was exercised too


@pytest.mark.parametrize("kind", ["match_event", "verified_outcome"])
def test_the_batch_fast_path_agrees_on_generated_records(kind):
    @settings(GENERATED, max_examples=100)
    @given(st.lists(from_schema(generator_schema(kind)), min_size=1, max_size=2), mutations(kind))
    def check(records, changes):
        assert_batch_fast_path_agrees(kind, envelope(records))
        assert_batch_fast_path_agrees(kind, envelope(records[:-1] + [apply(records[-1], changes)]))

    check()


@pytest.mark.parametrize("kind", ["match_event", "verified_outcome"])
def test_the_batch_fast_path_leaves_duplicate_keys_to_the_full_path(kind):
    base = common_documents(kind)

    @GENERATED
    @given(st.lists(st.sampled_from(base), min_size=1, max_size=4), st.data())
    def check(records, data):
        raw = envelope(records)
        assert assert_batch_fast_path_agrees(kind, raw)
        index = data.draw(st.integers(0, len(records) - 1))
        name = data.draw(st.sampled_from(sorted(records[index])))
        value = data.draw(st.sampled_from([records[index].get(name, "x"), records[0].get(name, "y"), "z", 1.0]))
        doubled = with_duplicate_key(raw, index, name, value)
        assert envelopes.decode_valid_batch(doubled, kind) is None
        header, items = envelopes.decode_message(doubled, kind)
        assert [item.record.code for item in items if isinstance(item.record, Rejection)] == [RejectCode.DUPLICATE_KEY]

    check()


def test_the_batch_fast_path_leaves_envelope_faults_to_the_full_path():
    records = common_documents("match_event")[:3]
    raw = envelope(records, bucket=2, partitions=4)
    assert envelopes.decode_valid_batch(raw, "match_event").header == envelopes.BatchHeader(2, 4)
    for bad in [envelope(records, bucket=4, partitions=4), envelope(records, bucket=-1, partitions=4),
                envelope([], 0, 1), raw.replace(b'"bucket":2', b'"bucket":2,"bucket":3'),
                raw.replace(b'"batch_version":1', b'"batch_version":2'), raw.replace(b'"F"', b'"\\u0046"'),
                b"\xef\xbb\xbf" + raw, raw.replace(b"}]}", b"}],}"), raw[:-1]]:
        assert envelopes.decode_valid_batch(bad, "match_event") is None, bad[:120]
        header, items = envelopes.decode_message(bad, "match_event")
        assert header is None or any(isinstance(item.record, Rejection) for item in items) or b"\\u0046" in bad


def test_the_batch_fast_path_takes_the_common_envelopes():
    from fairwatch.producer import BatchBuilder
    from fairwatch.testing.workload import make_workload

    workload = make_workload(2000, seed=5, duplicate_share=0.0, malformed_share=0.0)
    builder = BatchBuilder(4, max_records=100)
    envelopes = [e for kind, key, value in workload.messages if b'"candidates"' not in value  # the full path's
                 for e in builder.add(kind, key.decode(), value, now=0.0)]
    envelopes += builder.drain()
    kinds = {"match-events": "match_event", "verified-outcomes": "verified_outcome"}
    assert len(envelopes) > 20
    for e in envelopes:
        assert assert_batch_fast_path_agrees(kinds[e.topic], e.value)
