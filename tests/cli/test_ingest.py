"""`fairwatch ingest rekognition` as an operator runs it: logged calls in, match events and
dead-letter records out (files, or Kafka through a stand-in producer), a summary, exit 1 when a
line was refused and 2 for usage errors, and no ExternalImageId, UserId or image anywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest

from fairwatch.cli import ingest
from fairwatch.contracts.records import decode_match_event
from fairwatch.contracts.rekognition import redacted
from fairwatch.testing import rekognition as docs
from fairwatch.testing.cli_runs import invoke, one_error
from fairwatch.testing.oracles import contract_validator
from fairwatch.testing.rekognition import FACE_A, FACE_B, NAMES

DEAD_LETTER_SCHEMA = contract_validator("dead_letter")
UNSET = {name: None for name in ("FAIRWATCH_KAFKA", "FAIRWATCH_TOPIC_PREFIX", "FAIRWATCH_DEBUG")}
SECRET_WORDS = ("jane", "jdoe", "john.roe", "/9j/")  # the operator's names and image bytes


def fairwatch(*args, env=None):
    return invoke(*args, env={**UNSET, **(env or {})})


def write_lines(path: Path, *items) -> Path:
    path.write_bytes(b"".join((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n"
                              for item in items))
    return path


def bad_search():
    """A search whose second match lost its Similarity; its request logs the image's S3 name."""
    record = docs.record("SearchFacesByImage", docs.search_faces_by_image((97.0, FACE_A), (91.0, FACE_B)),
                         {"FaceMatchThreshold": 80, "MaxFaces": 3,
                          "Image": {"S3Object": {"Bucket": "b", "Name": "jane_doe_2019.jpg"}}},
                         event_id="s-bad")
    del record["response"]["FaceMatches"][1]["Similarity"]
    return record


COMPARE = docs.record("CompareFaces", docs.compare_faces(93.5, unmatched=1), {"SimilarityThreshold": 90,
                      "SourceImage": {"Bytes": "/9j/4AAQSkZJRg"}}, event_id="c-1")
SEARCH = docs.record("SearchFacesByImage", docs.search_faces_by_image((88.0, FACE_B), (96.0, FACE_A)),
                     {"FaceMatchThreshold": 85, "MaxFaces": 3}, event_id="s-1")
EXPECTED_COMPARE = {
    "event_id": "c-1", "occurred_at": "2026-05-04T10:00:00Z", "deployment": "precinct-3",
    "algorithm": "rekognition-compare-faces", "mode": "verification", "score": 93.5, "threshold": 90.0,
    "decision": "match", "subject": {"sex": "F", "race": "Black"},
    "context": {"rekognition": {"operation": "CompareFaces", "request_threshold": 90.0, "target_faces": 2,
                                "matched_faces": 1}}}
EXPECTED_SEARCH = {
    "event_id": "s-1", "occurred_at": "2026-05-04T10:00:00Z", "deployment": "precinct-3",
    "algorithm": "rekognition-face-model-7.0", "mode": "identification", "score": 96.0, "threshold": 85.0,
    "decision": "match", "subject": {"sex": "F", "race": "Black"}, "list_length": 3, "gallery_size": 5000,
    "candidates": [{"rank": 1, "score": 96.0, "candidate_id": FACE_A, "groups": {"sex": "F"}},
                   {"rank": 2, "score": 88.0, "candidate_id": FACE_B}],
    "context": {"rekognition": {"operation": "SearchFacesByImage", "request_threshold": 85.0,
                                "face_model_version": "7.0"}}}


@pytest.fixture
def calls(tmp_path) -> Path:
    return write_lines(tmp_path / "calls.jsonl", COMPARE, bad_search(), b"", b"{not json", SEARCH)


@pytest.fixture
def groups(tmp_path) -> Path:
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({FACE_A: {"sex": "F"}}))
    return path


def check_dead_letters(lines: list[dict], source: str) -> None:
    """The two refused lines of ``calls``: line 2 (the field named, the record kept without names
    or images) and line 4 (not JSON: nothing of it kept)."""
    for letter in lines:
        DEAD_LETTER_SCHEMA.validate(letter)
    first, second = lines
    assert (first["source_topic"], first["partition"], first["offset"]) == (source, 0, 2)
    assert (first["reason_code"], first["field"]) == ("missing_field", "response.FaceMatches[1].Similarity")
    assert base64.b64decode(first["key_b64"]) == b"s-bad" and first["record_index"] is None
    assert json.loads(base64.b64decode(first["value_b64"])) == redacted(bad_search())
    assert (second["offset"], second["reason_code"], second["field"], second["key_b64"], second["value_b64"]) == (
        4, "invalid_json", None, None, "")


def test_converts_good_lines_keeps_refused_ones_as_dead_letters_and_exits_1(calls, groups, tmp_path):
    out = tmp_path / "events.jsonl"
    result = fairwatch("ingest", "rekognition", calls, "--out", out, "--candidate-groups", groups,
                       "--gallery-size", 5000)
    assert result.exit_code == 1, result.stderr
    dead = tmp_path / "events.dead-letter.jsonl"
    assert result.stdout == f"2 converted, 2 refused; events: {out}; dead letters: {dead}\n"
    assert result.stderr.splitlines() == [
        f"{calls}:2: missing_field (response.FaceMatches[1].Similarity): response.FaceMatches[1] has no Similarity",
        f"{calls}:4: invalid_json: not valid JSON: Expecting property name enclosed in double quotes at column 2"]
    events = out.read_bytes().splitlines()
    assert [json.loads(line) for line in events] == [EXPECTED_COMPARE, EXPECTED_SEARCH]
    assert all(decode_match_event(line).event_id in ("c-1", "s-1") for line in events)
    check_dead_letters([json.loads(line) for line in dead.read_bytes().splitlines()], str(calls))
    for path in (out, dead):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        text = path.read_text() + base64.b64decode("".join(
            json.loads(line)["value_b64"] for line in dead.read_text().splitlines())).decode()
        for word in SECRET_WORDS:
            assert word not in text, (path, word)
    assert all(name in calls.read_text() for name in NAMES)  # they were there to be left out


def test_all_good_exits_0_and_json_lists_every_refusal(tmp_path, groups):
    good = write_lines(tmp_path / "good.jsonl", COMPARE, SEARCH)
    out = tmp_path / "events"
    result = fairwatch("ingest", "rekognition", good, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "input": str(good), "converted": 2, "refused": 0, "refused_lines": [],
        "output": {"events": str(out), "dead_letters": str(tmp_path / "events.dead-letter.jsonl")}}
    assert (tmp_path / "events.dead-letter.jsonl").read_bytes() == b""
    mixed = write_lines(tmp_path / "mixed.jsonl", bad_search(), SEARCH)
    result = fairwatch("ingest", "rekognition", mixed, "--out", out, "--dead-letter", tmp_path / "dl", "--json",
                       "--force")
    assert result.exit_code == 1 and result.stderr == ""
    summary = json.loads(result.stdout)
    assert (summary["converted"], summary["refused"]) == (1, 1)
    assert summary["refused_lines"] == [{"line": 1, "reason_code": "missing_field",
                                         "field": "response.FaceMatches[1].Similarity",
                                         "reason": "response.FaceMatches[1] has no Similarity"}]
    assert json.loads(out.read_text())["event_id"] == "s-1" and len((tmp_path / "dl").read_text().splitlines()) == 1


def test_output_files_are_never_overwritten_without_force(calls, tmp_path):
    out = tmp_path / "events.jsonl"
    (tmp_path / "events.dead-letter.jsonl").write_text("earlier\n")
    one_error(fairwatch("ingest", "rekognition", calls, "--out", out), 2, "--dead-letter", "--force")
    assert not out.exists() and (tmp_path / "events.dead-letter.jsonl").read_text() == "earlier\n"
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "link.jsonl").symlink_to(target)
    one_error(fairwatch("ingest", "rekognition", calls, "--out", tmp_path / "link.jsonl", "--force"), 2, "symbolic link")
    assert target.read_text() == "keep"


@pytest.mark.parametrize("args, fragment", [
    ((), "--out FILE"),
    (("--out", "{tmp}/e.jsonl", "--dead-letter", "{tmp}/e.jsonl"), "is the --out file"),
    (("--out", "{tmp}/e.jsonl", "--candidate-groups", "{tmp}/bad-groups.json"), "not a Rekognition FaceId"),
    (("--out", "{tmp}/e.jsonl", "--candidate-key", "{tmp}/open.key"), "chmod 600"),
    (("--out", "{tmp}/e.jsonl", "--candidate-key", "{tmp}/short.key"), "at least 16"),
    (("--out", "{tmp}/e.jsonl", "--signing-key", "{tmp}/open.key"), "--signing-key"),
])
def test_usage_errors_are_one_line_and_exit_2(calls, tmp_path, args, fragment):
    (tmp_path / "bad-groups.json").write_text(json.dumps({"jane_doe": {"sex": "F"}}))
    (tmp_path / "open.key").write_bytes(b"k" * 32)
    (tmp_path / "short.key").write_bytes(b"k" * 8)
    os.chmod(tmp_path / "short.key", 0o600)
    line = one_error(fairwatch("ingest", "rekognition", calls, *(a.format(tmp=tmp_path) for a in args)), 2, fragment)
    assert "jane" not in line
    assert not (tmp_path / "e.jsonl").exists()


def test_a_candidate_key_hashes_the_candidate_ids(tmp_path):
    key = tmp_path / "candidates.key"
    key.write_bytes(b"a-secret-of-the-operator-32bytes\n")
    os.chmod(key, 0o600)
    good = write_lines(tmp_path / "good.jsonl", SEARCH)
    out = tmp_path / "events.jsonl"
    assert fairwatch("ingest", "rekognition", good, "--out", out, "--candidate-key", key).exit_code == 0
    ids = [c["candidate_id"] for c in json.loads(out.read_text())["candidates"]]
    assert ids == [hmac.new(b"a-secret-of-the-operator-32bytes", f.encode(), hashlib.sha256).hexdigest()
                   for f in (FACE_A, FACE_B)]


class StandInProducer:
    """What the command uses of FairwatchProducer, recording instead of sending."""

    def __init__(self, prefix: str):
        self.events_topic, self.dead_letter_topic = prefix + "match-events", prefix + "dead-letter"
        self.events, self.dead_letters, self.closed = [], [], False

    def send_event(self, event):
        self.events.append(event)

    def send_dead_letter(self, record, key=None):
        self.dead_letters.append((key, record))

    def close(self):
        self.closed = True


def test_kafka_events_through_the_producer_and_dead_letters_to_their_topic(calls, groups, monkeypatch):
    made = []

    def open_producer(kafka, topic_prefix, signing_key, deployment):
        assert (kafka, topic_prefix, signing_key, deployment) == ("kafka-1:9092", "site.", None, None)
        made.append(StandInProducer(topic_prefix))
        return made[-1]

    monkeypatch.setattr(ingest, "open_producer", open_producer)
    result = fairwatch("ingest", "rekognition", calls, "--candidate-groups", groups, "--gallery-size", 5000,
                       env={"FAIRWATCH_KAFKA": "kafka-1:9092", "FAIRWATCH_TOPIC_PREFIX": "site."})
    assert result.exit_code == 1
    assert result.stdout == "2 converted, 2 refused; events: site.match-events; dead letters: site.dead-letter\n"
    [producer] = made
    assert producer.closed and [e.to_dict() for e in producer.events] == [EXPECTED_COMPARE, EXPECTED_SEARCH]
    assert [key for key, _ in producer.dead_letters] == [b"s-bad", None]
    check_dead_letters([record for _, record in producer.dead_letters], str(calls))


def test_kafka_with_a_signing_key_refuses_another_deployments_events(tmp_path, monkeypatch):
    key = tmp_path / "site.key"
    key.write_text("stand-in: the producer that would read it is replaced")
    made = []
    monkeypatch.setattr(ingest, "open_producer", lambda *args: made.append(StandInProducer("fairwatch.")) or made[-1])
    other = docs.record("CompareFaces", docs.compare_faces(93.5), {"SimilarityThreshold": 90}, deployment="gate-b",
                        event_id="c-2")
    calls = write_lines(tmp_path / "calls.jsonl", COMPARE, other)
    dead = tmp_path / "dead.jsonl"
    result = fairwatch("ingest", "rekognition", calls, "--kafka", "k:9092", "--signing-key", key,
                       "--deployment", "precinct-3", "--dead-letter", dead)
    assert result.exit_code == 1, result.stderr
    assert [e.event_id for e in made[0].events] == ["c-1"] and made[0].dead_letters == []
    [letter] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert (letter["offset"], letter["reason_code"], letter["field"]) == (2, "deployment_mismatch", "meta.deployment")
