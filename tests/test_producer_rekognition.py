"""The producer SDK's Rekognition call, without Kafka: kafka-python's producer is replaced by one
that records what it is given, and the envelopes are decoded as the worker decodes them."""

from __future__ import annotations

import json

import kafka
import pytest
from fairwatch.contracts.envelopes import decode_message
from fairwatch.contracts.partitioning import partition_for
from fairwatch.contracts.records import ContractError
from fairwatch.contracts.rekognition import RekognitionSettings
from fairwatch.producer import FairwatchProducer
from fairwatch.testing import rekognition as docs
from fairwatch.testing.rekognition import FACE_A, FACE_B, NAMES


class _Delivered:
    is_done = True

    def get(self, timeout=None):
        return None


class RecordingKafka:
    def __init__(self, **options):
        self.sent = []

    def send(self, topic, key=None, value=None, partition=None, headers=None):
        self.sent.append((topic, key, value, partition))
        return _Delivered()

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def producer(monkeypatch):
    monkeypatch.setattr(kafka, "KafkaProducer", RecordingKafka)
    made = FairwatchProducer("stand-in:9092", topic_prefix="site.", partitions=4, linger=60)
    yield made
    made.close()


def test_send_rekognition_sends_the_event_the_worker_decodes(producer):
    response = docs.search_faces_by_image((91.0, FACE_B), (97.5, FACE_A))
    event = producer.send_rekognition(
        "SearchFacesByImage", response, request={"FaceMatchThreshold": 90, "MaxFaces": 2},
        meta={"event_id": "search-7", "occurred_at": "2026-05-04T10:00:00Z", "deployment": "precinct-3",
              "subject": {"sex": "F"}},
        settings=RekognitionSettings(candidate_groups={FACE_B: {"sex": "M"}}))
    assert (event.score, event.decision, [c.candidate_id for c in event.candidates]) == (97.5, "match", [FACE_A, FACE_B])
    with pytest.raises(ContractError) as caught:  # refused before anything is sent
        producer.send_rekognition("CompareFaces", docs.compare_faces(95.0), meta={
            "event_id": "c-1", "occurred_at": "2026-05-04T10:00:00Z", "deployment": "precinct-3",
            "subject": {"sex": "F"}})
    assert caught.value.rejection.field == "request.SimilarityThreshold"
    producer.send_dead_letter({"reason_code": "missing_field"}, key=b"c-1")
    producer.flush()
    sent = producer._kafka.sent
    assert sent[0] == ("site.dead-letter", b"c-1", b'{"reason_code":"missing_field"}', None)
    [(topic, key, value, partition)] = sent[1:]
    assert (topic, key, partition) == ("site.match-events", b"bucket-%d" % partition_for("search-7", 4),
                                       partition_for("search-7", 4))
    header, items = decode_message(value, "match_event")
    assert header.partitions == 4 and [item.record for item in items] == [event]
    assert not any(name in value.decode() for name in NAMES)
    assert json.loads(value)["records"][0]["candidates"][1] == {"rank": 2, "score": 91.0, "candidate_id": FACE_B,
                                                                "groups": {"sex": "M"}}
