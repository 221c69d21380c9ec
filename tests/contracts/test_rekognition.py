"""The Amazon Rekognition adapter: response documents written from AWS's API reference
(fairwatch.testing.rekognition) -> match events equal to events computed by hand here; every event
decodes as the worker decodes it, passes the JSON Schema and pairs with a verified outcome in the
join; a malformed document is refused with the field named by its path; the operator's
ExternalImageId and UserId never reach an event."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest
from fairwatch.contracts.records import ContractError, RejectCode, VerifiedOutcome, decode_match_event
from fairwatch.contracts.rekognition import (
    CENSORED_SCORE,
    RekognitionSettings,
    check_candidate_groups,
    convert,
    event_from_response,
    load_record,
    redacted,
    rejection_of,
)
from fairwatch.core.join import LabelJoin
from fairwatch.testing import rekognition as docs
from fairwatch.testing.oracles import contract_validator
from fairwatch.testing.rekognition import FACE_A, FACE_B, FACE_C, FACE_D, NAMES

SCHEMA = contract_validator("match_event")
GROUPS = {FACE_A: {"sex": "F", "race": "Black"}, FACE_B: {"sex": "M", "race": "White"}}
COMMON = {"event_id": "e-1", "occurred_at": "2026-05-04T10:00:00Z", "deployment": "precinct-3",
          "subject": {"sex": "F", "race": "Black"}}


def event_dict(record, settings=RekognitionSettings()) -> dict:
    """The event as the bytes a file or topic receives, decoded back: what the worker reads."""
    event = convert(record, settings)
    raw = event.to_json()
    assert decode_match_event(raw) == event
    document = json.loads(raw)
    SCHEMA.validate(document)
    for name in NAMES:
        assert name not in raw.decode()
    return document


def refused(record, settings=RekognitionSettings()) -> tuple[str, str | None]:
    rejection = rejection_of(record, settings)
    assert rejection is not None, "the record converted"
    return rejection.code.value, rejection.field


# ---------------------------------------------------------------- CompareFaces (1:1)


def test_compare_faces_one_match():
    record = docs.record("CompareFaces", docs.compare_faces(99.5), {"SimilarityThreshold": 80},
                         reference={"sex": "F", "race": "Black"})
    assert event_dict(record) == {
        **COMMON, "algorithm": "rekognition-compare-faces", "mode": "verification", "score": 99.5,
        "threshold": 80.0, "decision": "match", "reference": {"sex": "F", "race": "Black"},
        "context": {"rekognition": {"operation": "CompareFaces", "request_threshold": 80.0, "target_faces": 1,
                                    "matched_faces": 1}}}


def test_compare_faces_several_target_faces_is_one_event_scored_by_the_best_face():
    # FaceMatches out of order (the reference says descending; the adapter does not rely on it)
    record = docs.record("CompareFaces", docs.compare_faces(91.25, 99.75, 85.0, unmatched=2),
                         {"SimilarityThreshold": 85, "QualityFilter": "HIGH"}, context={"camera": "door-2"})
    assert event_dict(record) == {
        **COMMON, "algorithm": "rekognition-compare-faces", "mode": "verification", "score": 99.75,
        "threshold": 85.0, "decision": "match",
        "context": {"camera": "door-2", "rekognition": {"operation": "CompareFaces", "request_threshold": 85.0,
                                                        "target_faces": 5, "matched_faces": 3,
                                                        "quality_filter": "HIGH"}}}


def test_compare_faces_unmatched_faces_only_has_a_censored_score_below_the_threshold():
    record = docs.record("CompareFaces", docs.compare_faces(unmatched=1), {"SimilarityThreshold": 80})
    assert event_dict(record) == {
        **COMMON, "algorithm": "rekognition-compare-faces", "mode": "verification", "score": -1.0,
        "threshold": 80.0, "decision": "non_match",
        "context": {"rekognition": {"operation": "CompareFaces", "request_threshold": 80.0, "target_faces": 1,
                                    "matched_faces": 0, "score_censored_below": 80.0}}}
    assert CENSORED_SCORE == -1.0


def test_compare_faces_at_similarity_threshold_zero_keeps_every_score_and_decides_at_the_operators_threshold():
    record = docs.record("CompareFaces", docs.compare_faces(42.5, 7.0), {"SimilarityThreshold": 0}, threshold=90)
    event = event_dict(record)
    assert (event["score"], event["threshold"], event["decision"]) == (42.5, 90.0, "non_match")
    assert event["context"]["rekognition"] == {"operation": "CompareFaces", "request_threshold": 0.0,
                                               "target_faces": 2, "matched_faces": 2}
    record["response"]["FaceMatches"][1]["Similarity"] = 90.0  # at the threshold: a match
    assert event_dict(record)["decision"] == "match"
    # the same threshold from the operator's settings
    del record["meta"]["threshold"]
    event = event_dict(record, RekognitionSettings(threshold=95.5))
    assert (event["score"], event["threshold"], event["decision"]) == (90.0, 95.5, "non_match")


def test_compare_faces_threshold_from_the_settings_when_the_request_is_not_logged():
    record = docs.record("CompareFaces", docs.compare_faces(88.0))
    assert refused(record) == ("missing_field", "request.SimilarityThreshold")
    event = event_dict(record, RekognitionSettings(similarity_threshold=70, deployment="ignored", algorithm="rk-2026-05"))
    assert (event["threshold"], event["deployment"], event["algorithm"]) == (70.0, "precinct-3", "rk-2026-05")
    del record["meta"]["deployment"]
    assert refused(record, RekognitionSettings(similarity_threshold=70)) == ("missing_field", "meta.deployment")
    assert event_dict(record, RekognitionSettings(similarity_threshold=70, deployment="gate-b"))["deployment"] == "gate-b"


# ---------------------------------------------------------------- SearchFacesByImage and SearchFaces (1:N)


def test_search_faces_by_image_sorts_the_matches_into_ranks_and_ties_keep_the_response_order():
    # the tied FaceIds listed against their alphabetical order: a tie broken by id would swap them
    response = docs.search_faces_by_image((88.5, FACE_B), (99.25, FACE_A), (88.5, FACE_C), (91.0, FACE_D))
    record = docs.record("SearchFacesByImage", response, {"FaceMatchThreshold": 80, "MaxFaces": 5,
                                                          "CollectionId": "wanted", "Image": {"S3Object": {
                                                              "Bucket": "b", "Name": NAMES[0]}}},
                         gallery_size=120000)
    assert event_dict(record, RekognitionSettings(candidate_groups=GROUPS)) == {
        **COMMON, "algorithm": "rekognition-face-model-7.0", "mode": "identification", "score": 99.25,
        "threshold": 80.0, "decision": "match", "list_length": 5, "gallery_size": 120000,
        "candidates": [
            {"rank": 1, "score": 99.25, "candidate_id": FACE_A, "groups": {"sex": "F", "race": "Black"}},
            {"rank": 2, "score": 91.0, "candidate_id": FACE_D},
            {"rank": 3, "score": 88.5, "candidate_id": FACE_B, "groups": {"sex": "M", "race": "White"}},
            {"rank": 4, "score": 88.5, "candidate_id": FACE_C},
        ],
        "context": {"rekognition": {"operation": "SearchFacesByImage", "request_threshold": 80.0,
                                    "face_model_version": "7.0"}}}


def test_search_with_no_face_matches_is_a_non_match_with_an_empty_list_and_a_censored_score():
    record = docs.record("SearchFaces", docs.search_faces(FACE_D), {"FaceMatchThreshold": 95, "MaxFaces": 10})
    assert event_dict(record) == {
        **COMMON, "algorithm": "rekognition-face-model-6.0", "mode": "identification", "score": -1.0,
        "threshold": 95.0, "decision": "non_match", "list_length": 10, "candidates": [],
        "context": {"rekognition": {"operation": "SearchFaces", "request_threshold": 95.0,
                                    "face_model_version": "6.0", "score_censored_below": 95.0}}}


def test_a_decision_threshold_above_the_face_match_threshold_lists_candidates_below_it():
    record = docs.record("SearchFaces", docs.search_faces(FACE_D, (85.0, FACE_B), (93.5, FACE_A)),
                         {"FaceMatchThreshold": 80, "MaxFaces": 2}, threshold=90)
    event = event_dict(record)
    assert (event["score"], event["threshold"], event["decision"]) == (93.5, 90.0, "match")
    assert [(c["rank"], c["score"], c["candidate_id"]) for c in event["candidates"]] == [(1, 93.5, FACE_A), (2, 85.0, FACE_B)]
    assert convert(record).candidates_above == 1
    record["response"]["FaceMatches"].pop()  # only the 85: listed, but no match at 90
    event = event_dict(record)
    assert (event["score"], event["decision"], len(event["candidates"])) == (85.0, "non_match", 1)
    record["meta"]["threshold"] = 79.5
    assert refused(record) == ("out_of_range", "meta.threshold")


def test_search_faces_takes_the_probe_groups_from_the_operators_records_of_the_searched_face():
    record = docs.record("SearchFaces", docs.search_faces(FACE_B, (97.0, FACE_A)), {"FaceMatchThreshold": 80})
    del record["meta"]["subject"]
    assert refused(record) == ("missing_field", "meta.subject")
    event = event_dict(record, RekognitionSettings(candidate_groups=GROUPS))
    assert event["subject"] == {"sex": "M", "race": "White"} and "list_length" not in event


def test_a_candidate_key_replaces_face_ids_by_their_hmac():
    key = b"0123456789abcdef-operator-secret"
    record = docs.record("SearchFacesByImage", docs.search_faces_by_image((97.0, FACE_A), (92.0, FACE_B)),
                         {"FaceMatchThreshold": 90, "MaxFaces": 2})
    event = event_dict(record, RekognitionSettings(candidate_key=key, candidate_groups=GROUPS))
    expected = [hmac.new(key, face.encode(), hashlib.sha256).hexdigest() for face in (FACE_A, FACE_B)]
    assert [c["candidate_id"] for c in event["candidates"]] == expected
    assert [c["groups"]["sex"] for c in event["candidates"]] == ["F", "M"]  # groups still found by FaceId
    assert FACE_A not in json.dumps(event) and FACE_B not in json.dumps(event)


def test_event_id_from_the_response_metadata_and_the_producer_sdk_form():
    response = docs.search_faces_by_image((97.0, FACE_A))
    meta = {"occurred_at": "2026-05-04T10:00:00+02:00", "deployment": "gate-a", "subject": {"sex": "F"},
            "algorithm": "rk-search"}
    event = event_from_response("SearchFacesByImage", response, meta, {"FaceMatchThreshold": 80})
    assert event.event_id == "3b2f8a3e-1c4d-4e5f-9a6b-7c8d9e0f1a2b" and event.algorithm == "rk-search"
    assert event.occurred_at == datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- every event round-trips into the join


@pytest.mark.parametrize("record, truth, mate_rank, match", [
    (docs.record("CompareFaces", docs.compare_faces(99.5), {"SimilarityThreshold": 80}), "impostor", None, True),
    (docs.record("CompareFaces", docs.compare_faces(unmatched=3), {"SimilarityThreshold": 80}), "genuine", None, False),
    (docs.record("SearchFacesByImage", docs.search_faces_by_image((91.0, FACE_B), (99.0, FACE_A)),
                 {"FaceMatchThreshold": 80, "MaxFaces": 3}), "genuine", 2, True),
    (docs.record("SearchFaces", docs.search_faces(FACE_C), {"FaceMatchThreshold": 80}), "impostor", None, False),
])
def test_every_event_pairs_with_its_verified_outcome_in_the_join(record, truth, mate_rank, match):
    event = decode_match_event(convert(record, RekognitionSettings(candidate_groups=GROUPS)).to_json())
    outcome = VerifiedOutcome("e-1", datetime(2026, 5, 5, tzinfo=timezone.utc), truth, "reviewer-7", 0, 1.0,
                              mate_rank=mate_rank)
    join = LabelJoin()
    out = join.update([event, outcome])
    assert out.rejected == []
    assert out.deltas.event_id == ["e-1"] and out.deltas.sign.tolist() == [1]
    assert out.deltas.match.tolist() == [match] and out.deltas.genuine.tolist() == [truth == "genuine"]
    assert join.counters.paired == 1 and join.counters.pending == 0


# ---------------------------------------------------------------- malformed documents: the field is named


def _search():
    return docs.record("SearchFacesByImage", docs.search_faces_by_image((97.0, FACE_A), (91.0, FACE_B)),
                       {"FaceMatchThreshold": 80, "MaxFaces": 5})


def _compare():
    return docs.record("CompareFaces", docs.compare_faces(97.0, unmatched=1), {"SimilarityThreshold": 80})


def _set(path, value):
    def mutate(record):
        *parents, last = path
        node = record
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


_DELETE = object()
R, M = "response", "meta"

MALFORMED = [
    (_search, _set((R, "FaceMatches", 0, "Similarity"), _DELETE), "missing_field", "response.FaceMatches[0].Similarity"),
    (_search, _set((R, "FaceMatches", 1, "Similarity"), "91.0"), "wrong_type", "response.FaceMatches[1].Similarity"),
    (_search, _set((R, "FaceMatches", 1, "Similarity"), True), "wrong_type", "response.FaceMatches[1].Similarity"),
    (_search, _set((R, "FaceMatches", 0, "Similarity"), 100.5), "out_of_range", "response.FaceMatches[0].Similarity"),
    (_search, _set((R, "FaceMatches", 1, "Similarity"), 79.0), "out_of_range", "response.FaceMatches[1].Similarity"),
    (_search, _set((R, "FaceMatches", 1, "Face"), _DELETE), "missing_field", "response.FaceMatches[1].Face"),
    (_search, _set((R, "FaceMatches", 1, "Face"), [FACE_B]), "wrong_type", "response.FaceMatches[1].Face"),
    (_search, _set((R, "FaceMatches", 0, "Face", "FaceId"), _DELETE), "missing_field",
     "response.FaceMatches[0].Face.FaceId"),
    (_search, _set((R, "FaceMatches", 0, "Face", "FaceId"), "jane_doe_2019.jpg"), "invalid_characters",
     "response.FaceMatches[0].Face.FaceId"),
    (_search, _set((R, "FaceMatches", 0, "Face", "FaceId"), 7), "wrong_type", "response.FaceMatches[0].Face.FaceId"),
    (_search, _set((R, "FaceMatches", 0, "Face", "BoundingBox", "Width"), "0.1"), "wrong_type",
     "response.FaceMatches[0].Face.BoundingBox.Width"),
    (_search, _set((R, "FaceMatches", 0, "Face", "Confidence"), None), "wrong_type",
     "response.FaceMatches[0].Face.Confidence"),
    (_search, _set((R, "FaceMatches", 1, "Face", "FaceId"), FACE_A), "bad_candidates", "response.FaceMatches"),
    (_search, _set(("request", "MaxFaces"), 1), "bad_candidates", "response.FaceMatches"),
    (_search, _set(("request", "MaxFaces"), 0), "out_of_range", "request.MaxFaces"),
    (_search, _set(("request", "MaxFaces"), "5"), "wrong_type", "request.MaxFaces"),
    (_search, _set(("request", "FaceMatchThreshold"), _DELETE), "missing_field", "request.FaceMatchThreshold"),
    (_search, _set((R, "FaceMatches"), _DELETE), "missing_field", "response.FaceMatches"),
    (_search, _set((R, "FaceMatches"), {"Similarity": 97.0}), "wrong_type", "response.FaceMatches"),
    (_search, _set((R, "FaceModelVersion"), 7), "wrong_type", "response.FaceModelVersion"),
    (_search, _set((R, "FaceModelVersion"), _DELETE), "missing_field", "response.FaceModelVersion"),
    (_search, _set((R, "SearchedFaceConfidence"), "high"), "wrong_type", "response.SearchedFaceConfidence"),
    (_search, _set((R, "UnmatchedFaces"), []), "unknown_field", "response.UnmatchedFaces"),
    (_search, _set((M, "reference"), {"sex": "F"}), "unknown_field", "meta.reference"),
    (_search, _set((M, "event_id"), "has space"), "invalid_characters", "meta.event_id"),
    (_search, _set((M, "gallery_size"), -1), "out_of_range", "meta.gallery_size"),
    (_compare, _set((R, "FaceMatches", 0, "Similarity"), _DELETE), "missing_field", "response.FaceMatches[0].Similarity"),
    (_compare, _set((R, "UnmatchedFaces"), {}), "wrong_type", "response.UnmatchedFaces"),
    (_compare, _set((R, "UnmatchedFaces", 0, "Landmarks"), "none"), "wrong_type", "response.UnmatchedFaces[0].Landmarks"),
    (_compare, _set((R, "UnmatchedFaces", 0, "Pose"), 3), "wrong_type", "response.UnmatchedFaces[0].Pose"),
    (_compare, _set((R, "SourceImageFace", "Confidence"), "x"), "wrong_type", "response.SourceImageFace.Confidence"),
    (_compare, _set((R, "TargetImageOrientationCorrection"), "ROTATE_45"), "unknown_enum_value",
     "response.TargetImageOrientationCorrection"),
    (_compare, _set((R, "FaceModelVersion"), "7.0"), "unknown_field", "response.FaceModelVersion"),
    (_compare, _set(("request", "SimilarityThreshold"), 120), "out_of_range", "request.SimilarityThreshold"),
    (_compare, _set(("request", "QualityFilter"), "BEST"), "unknown_enum_value", "request.QualityFilter"),
    (_search, _set(("request", "QualityFilter"), 3), "unknown_enum_value", "request.QualityFilter"),
    (_compare, _set((M, "gallery_size"), 10), "unknown_field", "meta.gallery_size"),
    (_compare, _set((M, "reference"), {"sex": "+F"}), "bad_name", "meta.reference.sex"),
    (_compare, _set((M, "subject"), {"sex": "=cmd"}), "bad_name", "meta.subject.sex"),
    (_compare, _set((M, "subject"), {}), "empty_labels", "meta.subject"),
    (_compare, _set((M, "occurred_at"), _DELETE), "missing_field", "meta.occurred_at"),
    (_compare, _set((M, "occurred_at"), "2026-05-04T10:00:00"), "timestamp_without_offset", "meta.occurred_at"),
    (_compare, _set((M, "deployment"), "gate a"), "invalid_characters", "meta.deployment"),
    (_compare, _set((M, "algorithm"), "=rk"), "bad_name", "meta.algorithm"),
    (_compare, _set((M, "cluster_id"), "jane"), "invalid_characters", "meta.cluster_id"),
    (_compare, _set((M, "context"), {"rekognition": 1}), "duplicate_key", "meta.context.rekognition"),
    (_compare, _set((M, "threshold"), 50), "out_of_range", "meta.threshold"),
    (_compare, _set((M, "camera"), "door-2"), "unknown_field", "meta.camera"),
    (_compare, _set((M, "event_id"), _DELETE), "missing_field", "meta.event_id"),
    (_compare, _set(("operation",), "DetectFaces"), "unknown_enum_value", "operation"),
    (_compare, _set(("operation",), "SearchFaces"), "unknown_field", "response.UnmatchedFaces"),
    (_compare, _set(("response",), _DELETE), "missing_field", "response"),
    (_compare, _set(("meta",), []), "wrong_type", "meta"),
    (_compare, _set(("responses",), {}), "unknown_field", "responses"),
]


@pytest.mark.parametrize("make, mutate, code, field", MALFORMED,
                         ids=[f"{m[0].__name__}-{m[3]}-{m[2]}" for m in MALFORMED])
def test_a_malformed_record_is_refused_with_the_field_named(make, mutate, code, field):
    record = make()
    event_dict(record)  # converts before the change
    mutate(record)
    assert refused(record) == (code, field)
    assert "jane" not in str(rejection_of(record))  # a name put where a FaceId belongs is not repeated


def test_a_record_that_is_not_an_object_or_not_json():
    assert refused([1]) == ("not_an_object", None)
    for raw, code in ((b'{"a": 1, "a": 2}', RejectCode.DUPLICATE_KEY), (b'{"a": NaN}', RejectCode.NON_FINITE_NUMBER),
                      (b"{", RejectCode.INVALID_JSON), (b"\xff", RejectCode.INVALID_ENCODING)):
        with pytest.raises(ContractError) as caught:
            load_record(raw)
        assert caught.value.rejection.code == code
    assert load_record(json.dumps(_compare()).encode()) == _compare()


# ---------------------------------------------------------------- what is never stored


def test_redacted_drops_external_image_ids_user_ids_and_images_at_any_depth():
    record = _search()
    record["request"]["Image"] = {"S3Object": {"Bucket": "b", "Name": "jane_doe.jpg"}}
    record["request"]["SourceImage"] = {"Bytes": "/9j/4AAQ"}
    text = json.dumps(record)
    assert all(name in text for name in NAMES[:1] + NAMES[2:]) and "jane_doe.jpg" in text
    kept = redacted(record)
    text = json.dumps(kept)
    assert "jane" not in text and "jdoe" not in text and "/9j/" not in text
    assert kept["request"] == {"FaceMatchThreshold": 80, "MaxFaces": 5}
    expected = copy.deepcopy(record)
    for match in expected["response"]["FaceMatches"]:
        del match["Face"]["ExternalImageId"], match["Face"]["UserId"]
    assert kept["response"] == expected["response"] and kept["meta"] == record["meta"]


def test_candidate_groups_are_checked_as_subjects_are():
    assert check_candidate_groups(GROUPS) == GROUPS
    with pytest.raises(ContractError) as caught:
        check_candidate_groups({FACE_A: {"sex": "F"}, FACE_B: {"sex": "@M"}})
    assert caught.value.rejection.field == f"candidate groups[{FACE_B}].sex"
    assert caught.value.rejection.code == RejectCode.BAD_NAME
    with pytest.raises(ContractError) as caught:
        check_candidate_groups({"Jane Doe": {"sex": "F"}})
    assert "Jane" not in str(caught.value)
    with pytest.raises(ContractError):
        check_candidate_groups([FACE_A])
    # unchecked groups given to the settings directly are still refused, named by the FaceId
    record = docs.record("SearchFaces", docs.search_faces(FACE_D, (97.0, FACE_A)), {"FaceMatchThreshold": 80})
    assert refused(record, RekognitionSettings(candidate_groups={FACE_A: {"sex": ""}})) == (
        "bad_label", f"candidate groups[{FACE_A}].sex")
