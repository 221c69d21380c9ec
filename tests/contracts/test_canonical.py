"""Canonical evidence bytes: equal from a parsed record and from the columns the sink stores."""

from datetime import datetime, timedelta, timezone

import struct

from fairwatch.contracts.canonical import fields_of, match_event_bytes, match_event_row_bytes, netstring, \
    verified_outcome_bytes, verified_outcome_row_bytes
from fairwatch.contracts.records import MatchEvent, VerifiedOutcome
from fairwatch.store.sink import event_columns, outcome_columns

AT = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))


def _event(**changes):
    fields = dict(event_id="e-1", occurred_at=AT, deployment="d", algorithm="a", mode="verification", score=0.1 + 0.2,
                  threshold=0.5, decision="non_match", subject={"sex": "F", "race": "Black"})
    fields.update(changes)
    return MatchEvent(**fields)


def _from_stored(event):
    columns = event_columns([event], datetime.now(timezone.utc))
    row = dict(zip(("event_id", "s", "us", "deployment", "algorithm", "mode", "score", "threshold", "decision",
                    "sk", "sv", "rk", "rv", "context", "ingested", "cluster"), (c[0] for c in columns)))
    return match_event_row_bytes(row["event_id"], row["s"] * 1_000_000 + row["us"], row["deployment"],
                                 row["algorithm"], row["mode"], row["score"], row["threshold"], row["decision"],
                                 row["sk"], row["sv"], row["rk"], row["rv"], row["context"], row["cluster"])


def test_an_event_gives_the_same_bytes_parsed_and_stored():
    for event in (_event(), _event(reference={"race": "White"}, context={"z": 1, "a": [1, 2]}, cluster_id="c9")):
        assert match_event_bytes(event) == _from_stored(event)


def test_event_bytes_hold_every_field_exactly():
    expected_us = int((AT - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))
    bits = struct.unpack("<Q", struct.pack("<d", 0.1 + 0.2))[0]
    assert match_event_bytes(_event()) == (
        b"14:match_event/v2,3:e-1,%d:%d,1:d,1:a,12:verification,%d:%d,19:4602678819172646912,9:non_match,"
        b"33:10:3:sex,1:F,,15:4:race,5:Black,,,0:,2:{},0:," % (len(str(expected_us)), expected_us, len(str(bits)), bits))


def test_netstrings_keep_fields_apart_whatever_they_hold():
    # pairs sort by their netstrings (so "10:3:sex..." before "15:4:race..."), which SQL can do too;
    # without lengths, "a,b" + "c" and "a" + "b,c" would read the same
    assert match_event_bytes(_event(event_id="a,b", deployment="c")) != match_event_bytes(_event(event_id="a",
                                                                                                  deployment="b,c"))
    assert netstring("é".encode()) == b"2:\xc3\xa9,"


def test_label_order_does_not_matter_but_every_value_does():
    base = match_event_bytes(_event())
    assert match_event_bytes(_event(subject={"race": "Black", "sex": "F"})) == base
    for changed in (_event(score=0.3), _event(subject={"sex": "M", "race": "Black"}), _event(event_id="e-2"),
                    _event(occurred_at=AT + timedelta(microseconds=1)), _event(decision="match")):
        assert match_event_bytes(changed) != base


def test_an_outcome_gives_the_same_bytes_parsed_and_stored():
    outcome = VerifiedOutcome(event_id="e-1", verified_at=AT, truth="impostor", reviewer="r-7", revision=2,
                              inclusion_prob=0.25)
    columns = [c[0] for c in outcome_columns([outcome], datetime.now(timezone.utc))]
    assert verified_outcome_bytes(outcome) == verified_outcome_row_bytes(*columns[:6])
    assert b",10:%d," % int(AT.timestamp()) in verified_outcome_bytes(outcome)


def test_fields_read_back_what_was_written():
    data = verified_outcome_row_bytes("e,1:", 1767225600, "impostor", "r-7", 2, 0.25)
    assert fields_of(data) == ["verified_outcome/v2", "e,1:", "1767225600", "impostor", "r-7", "2",
                               "4598175219545276416"]
    assert fields_of(b"1:a,~") == ["a", None]
    for broken in (b"2:a,", b"x:a,", b"1:ab"):
        try:
            fields_of(broken)
        except ValueError:
            continue
        raise AssertionError(broken)
