"""Amazon Rekognition responses -> match events, without I/O.

One *record* is one Rekognition call as the operator logged it: the operation's name, the request
parameters that decide what the response means (the response does not repeat them), the response
JSON as the AWS API returns it, and the operator's metadata (event id, time, deployment, the
subject's groups from the operator's own records)::

    {"operation": "SearchFacesByImage",
     "request": {"FaceMatchThreshold": 90, "MaxFaces": 5},
     "response": {"FaceMatches": [{"Similarity": 97.1, "Face": {"FaceId": "...", ...}}], "FaceModelVersion": "7.0", ...},
     "meta": {"event_id": "search-0001", "occurred_at": "2026-05-04T10:00:00Z", "deployment": "precinct-3",
              "subject": {"sex": "F", "race": "Black"}}}

:func:`convert` turns it into one :class:`~fairwatch.contracts.records.MatchEvent`, checked by
:func:`~fairwatch.contracts.records.decode_match_event` before it is returned, or raises
:class:`~fairwatch.contracts.records.ContractError` whose rejection names the faulty field by its
path in the record (``response.FaceMatches[0].Similarity``) and carries an existing dead-letter
reason code. The mapping and its conventions are in docs/rekognition.md:

- CompareFaces (1:1) is one *verification* event per call: the score is the best Similarity
  among the target image's faces; a call that returned no FaceMatches has no similarity at all,
  so its score is :data:`CENSORED_SCORE` and ``context.rekognition.score_censored_below`` says
  the true score lies below the request's SimilarityThreshold.
- SearchFacesByImage and SearchFaces (1:N) are one *identification* event per search: FaceMatches
  sorted by Similarity (ties keep the response's order) become the candidate list, ranks 1..n;
  a candidate's id is the FaceId Rekognition assigned, or an HMAC-SHA-256 of it under the
  operator's key. ExternalImageId and UserId (chosen by the operator, possibly names) are never
  read into an event, and :func:`redacted` drops them from a record kept for dead-letter.

Examples
--------
>>> record = {"operation": "CompareFaces", "request": {"SimilarityThreshold": 80},
...           "response": {"FaceMatches": [{"Similarity": 99.5, "Face": {"Confidence": 99.9}}],
...                        "UnmatchedFaces": [{"Confidence": 98.0}]},
...           "meta": {"event_id": "door-17", "occurred_at": "2026-05-04T10:00:00Z",
...                    "deployment": "gate-a", "subject": {"sex": "F"}}}
>>> event = convert(record)
>>> event.mode, event.score, event.threshold, event.decision, event.context["rekognition"]["target_faces"]
('verification', 99.5, 80.0, 'match', 2)
>>> del record["response"]["FaceMatches"][0]["Similarity"]
>>> print(rejection_of(record))
missing_field (response.FaceMatches[0].Similarity): response.FaceMatches[0] has no Similarity
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from fairwatch.contracts.records import (
    ContractError,
    MatchEvent,
    RejectCode,
    Rejection,
    decode_match_event,
    no_duplicate_keys,
    no_json_constants,
    reject,
    type_name,
)

VERIFICATION_OPERATIONS = ("CompareFaces",)
SEARCH_OPERATIONS = ("SearchFacesByImage", "SearchFaces")
OPERATIONS = VERIFICATION_OPERATIONS + SEARCH_OPERATIONS

RECORD_REQUIRED = ("operation", "response", "meta")
RECORD_OPTIONAL = ("request",)
META_KEYS = ("event_id", "occurred_at", "deployment", "algorithm", "subject", "reference", "cluster_id",
             "context", "threshold", "gallery_size")

# Similarity lies in [0, 100] (botocore's Percent shape): -1 can never be mistaken for a returned score
CENSORED_SCORE = -1.0
COMPARE_FACES_ALGORITHM = "rekognition-compare-faces"  # CompareFaces names no model version
MODEL_ALGORITHM_PREFIX = "rekognition-face-model-"
MAX_FACES_LIMIT = 4096  # botocore's MaxFaces shape: 1..4096
# botocore's FaceId shape; a name cannot take this form, so a FaceId is pseudonymous
FACE_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ORIENTATIONS = ("ROTATE_0", "ROTATE_90", "ROTATE_180", "ROTATE_270")
QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")  # which faces are compared at all
# chosen by the operator when indexing faces (they may hold names): never stored, anywhere
NEVER_STORED = ("ExternalImageId", "UserId")
# request parameters that hold the images themselves (bytes or an S3 location): never stored
IMAGE_PARAMETERS = ("SourceImage", "TargetImage", "Image")
# keys only the other kind of operation's response has: a record naming the wrong operation
_FOREIGN_KEYS = {
    "CompareFaces": ("FaceModelVersion", "SearchedFaceBoundingBox", "SearchedFaceConfidence", "SearchedFaceId"),
    "SearchFacesByImage": ("UnmatchedFaces", "SourceImageFace", "SearchedFaceId"),
    "SearchFaces": ("UnmatchedFaces", "SourceImageFace", "SearchedFaceBoundingBox", "SearchedFaceConfidence"),
}
MAX_RECORD_BYTES = 16 << 20  # a record with 4096 FaceMatches is about 2 MiB


@dataclass(frozen=True)
class RekognitionSettings:
    """The operator's defaults, for what a record does not say itself.

    Parameters
    ----------
    deployment, algorithm
        Used when the record's ``meta`` has none. The algorithm otherwise defaults to
        ``rekognition-face-model-<FaceModelVersion>`` for searches and to
        ``rekognition-compare-faces`` for CompareFaces (whose response names no model version).
    similarity_threshold
        CompareFaces' SimilarityThreshold when the record's ``request`` does not give it.
    face_match_threshold, max_faces
        The searches' FaceMatchThreshold and MaxFaces when the record's ``request`` does not give them.
    threshold
        The decision threshold, when ``meta.threshold`` is absent; default: the request's
        threshold. It may not be below the request's (scores below that are not returned).
    gallery_size
        Faces in the collection searched, when ``meta.gallery_size`` is absent.
    candidate_groups
        The operator's records: FaceId -> demographic labels of the enrolled face
        (:func:`check_candidate_groups` checks them).
    candidate_key
        With a key, a candidate's id is the HMAC-SHA-256 of its FaceId (hex), not the FaceId.
    """

    deployment: str | None = None
    algorithm: str | None = None
    similarity_threshold: float | None = None
    face_match_threshold: float | None = None
    max_faces: int | None = None
    threshold: float | None = None
    gallery_size: int | None = None
    candidate_groups: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    candidate_key: bytes | None = None


DEFAULTS = RekognitionSettings()


def candidate_id(face_id: str, key: bytes | None = None) -> str:
    """The pseudonymous id of a gallery face: its FaceId, or with ``key`` the HMAC-SHA-256 of it.

    >>> candidate_id("2c0e0c1b-6a8d-4f4e-9a53-0d2b8e3f4a11", b"k")[:16]
    'a11736017e4e1f14'
    """
    if key is None:
        return face_id
    return hmac.new(key, face_id.encode("ascii"), hashlib.sha256).hexdigest()


def convert(record: Any, settings: RekognitionSettings = DEFAULTS) -> MatchEvent:
    """One logged Rekognition call -> one match event, or :class:`ContractError` naming the field."""
    record = _object(record, "record")
    _known_keys(record, RECORD_REQUIRED + RECORD_OPTIONAL, "")
    for name in RECORD_REQUIRED:
        if name not in record:
            raise reject(RejectCode.MISSING_FIELD, name, f"a Rekognition record needs {name}")
    operation = record["operation"]
    if not isinstance(operation, str):
        raise reject(RejectCode.WRONG_TYPE, "operation", f"operation must be a string, got {type_name(operation)}")
    if operation not in OPERATIONS:
        raise reject(RejectCode.UNKNOWN_ENUM_VALUE, "operation",
                     f"operation must be one of {', '.join(OPERATIONS)}; got {operation!r}")
    request = _object(record["request"], "request") if "request" in record else {}
    response = _object(record["response"], "response")
    meta = _object(record["meta"], "meta")
    _known_keys(meta, META_KEYS, "meta.")
    for key in _FOREIGN_KEYS[operation]:
        if key in response:
            raise reject(RejectCode.UNKNOWN_FIELD, f"response.{key}",
                         f"a {operation} response has no {key}: is this record another operation's?")
    if operation in VERIFICATION_OPERATIONS:
        return _compare_faces(request, response, meta, settings)
    return _search(operation, request, response, meta, settings)


def event_from_response(operation: str, response: Any, meta: Any, request: Any = None,
                        settings: RekognitionSettings = DEFAULTS) -> MatchEvent:
    """:func:`convert` with the record's parts as arguments (``request`` may be None)."""
    record = {"operation": operation, "response": response, "meta": meta}
    if request is not None:
        record["request"] = request
    return convert(record, settings)


def rejection_of(record: Any, settings: RekognitionSettings = DEFAULTS) -> Rejection | None:
    """Why :func:`convert` refuses ``record``, or None when it converts."""
    try:
        convert(record, settings)
    except ContractError as exc:
        return exc.rejection
    return None


# ---------------------------------------------------------------- the two kinds of operation


class _Sources:
    """Where each field of the event came from, to name it in a refusal."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.order: list[int] = []  # candidate i came from FaceMatches[order[i]]
        self.face_ids: list[str] = []  # and has this FaceId

    def path(self, event_field: str | None) -> str | None:
        if event_field is None:
            return None
        head, sep, rest = event_field.partition(".")
        match = re.fullmatch(r"candidates\[(\d+)\]", head)
        if match and int(match.group(1)) < len(self.order):
            where = f"response.FaceMatches[{self.order[int(match.group(1))]}]"
            if rest.startswith("candidate_id"):
                return f"{where}.Face.FaceId"
            if rest.startswith("score"):
                return f"{where}.Similarity"
            if rest.startswith("groups"):  # from the operator's candidate groups, keyed by FaceId
                return f"candidate groups[{self.face_ids[int(match.group(1))]}]{rest.removeprefix('groups')}"
            return where
        base = self.paths.get(head, self.paths.get(head.partition("[")[0]))
        if base is None:
            return event_field
        return f"{base}{sep}{rest}" if base.startswith(("meta.", "response.", "request.")) else base


def _similarity(match: dict, where: str, floor: float, threshold_name: str) -> float:
    """A FaceMatch's Similarity, which the request's threshold (``threshold_name``, ``floor``) bounds."""
    score = _percent(match, "Similarity", where, required=True)
    if score < floor:
        raise reject(RejectCode.OUT_OF_RANGE, f"{where}.Similarity",
                     f"{where}.Similarity {score!r} is below the request's {threshold_name} {floor!r}: "
                     "Rekognition returns no such match, so the threshold recorded is not the one used")
    return score


def _compare_faces(request: dict, response: dict, meta: dict, settings: RekognitionSettings) -> MatchEvent:
    sources = _Sources()
    if "gallery_size" in meta:
        raise reject(RejectCode.UNKNOWN_FIELD, "meta.gallery_size",
                     "CompareFaces compares with one target image: gallery_size belongs to searches")
    floor = _request_threshold(request, "SimilarityThreshold", settings.similarity_threshold,
                               "--similarity-threshold", sources)
    matches = _list(response, "FaceMatches", "response", required=True)
    scores = []
    for i, item in enumerate(matches):
        where = f"response.FaceMatches[{i}]"
        item = _object(item, where)
        score = _similarity(item, where, floor, "SimilarityThreshold")
        if "Face" in item:
            _compared_face(item["Face"], f"{where}.Face")
        scores.append(score)
    unmatched = _list(response, "UnmatchedFaces", "response")
    for i, face in enumerate(unmatched):
        _compared_face(face, f"response.UnmatchedFaces[{i}]")
    if "SourceImageFace" in response:
        source = _object(response["SourceImageFace"], "response.SourceImageFace")
        _bounding_box(source, "response.SourceImageFace")
        _percent(source, "Confidence", "response.SourceImageFace")
    for name in ("SourceImageOrientationCorrection", "TargetImageOrientationCorrection"):
        _orientation(response, name)
    threshold = _decision_threshold(meta, settings, floor, "SimilarityThreshold", sources)
    score = max(scores) if scores else CENSORED_SCORE
    facts: dict[str, Any] = {"operation": "CompareFaces", "request_threshold": floor,
                             "target_faces": len(matches) + len(unmatched), "matched_faces": len(matches),
                             **_quality_filter(request)}
    if not scores:
        facts["score_censored_below"] = floor
    event = _common(meta, settings, sources, response, algorithm=COMPARE_FACES_ALGORITHM, facts=facts)
    if "reference" in meta:
        event["reference"] = meta["reference"]
        sources.paths["reference"] = "meta.reference"
    event.update(mode="verification", score=score, threshold=threshold,
                 decision="match" if score >= threshold else "non_match")
    return _checked(event, sources)


def _search(operation: str, request: dict, response: dict, meta: dict, settings: RekognitionSettings) -> MatchEvent:
    sources = _Sources()
    if "reference" in meta:
        raise reject(RejectCode.UNKNOWN_FIELD, "meta.reference",
                     "a search's candidates carry their own groups (from the candidate groups file), "
                     "not meta.reference")
    floor = _request_threshold(request, "FaceMatchThreshold", settings.face_match_threshold,
                               "--face-match-threshold", sources)
    max_faces = _max_faces(request, settings, sources)
    matches = _list(response, "FaceMatches", "response", required=True)
    found = []
    for i, item in enumerate(matches):
        where = f"response.FaceMatches[{i}]"
        item = _object(item, where)
        score = _similarity(item, where, floor, "FaceMatchThreshold")
        if "Face" not in item:
            raise reject(RejectCode.MISSING_FIELD, f"{where}.Face", f"{where} has no Face (its FaceId names the candidate)")
        face = _object(item["Face"], f"{where}.Face")
        face_id = _face_id(face, "FaceId", f"{where}.Face", required=True)
        _face_id(face, "ImageId", f"{where}.Face")
        _bounding_box(face, f"{where}.Face")
        _percent(face, "Confidence", f"{where}.Face")
        _string(face, "IndexFacesModelVersion", f"{where}.Face")
        found.append((score, i, face_id))
    if operation == "SearchFacesByImage":
        _bounding_box(response, "response", "SearchedFaceBoundingBox")
        _percent(response, "SearchedFaceConfidence", "response")
        searched = None
    else:
        searched = _face_id(response, "SearchedFaceId", "response")
    version = _string(response, "FaceModelVersion", "response")
    # best first; sorted() is stable, so equal scores keep the response's order
    ranked = sorted(found, key=lambda entry: -entry[0])
    sources.order = [i for _, i, _ in ranked]
    sources.face_ids = [face_id for _, _, face_id in ranked]
    candidates = []
    for rank, (score, _, face_id) in enumerate(ranked, start=1):
        candidate: dict[str, Any] = {"rank": rank, "score": score,
                                     "candidate_id": candidate_id(face_id, settings.candidate_key)}
        groups = settings.candidate_groups.get(face_id)
        if groups is not None:
            candidate["groups"] = dict(groups)
        candidates.append(candidate)
    threshold = _decision_threshold(meta, settings, floor, "FaceMatchThreshold", sources)
    score = candidates[0]["score"] if candidates else CENSORED_SCORE
    if version is None and meta.get("algorithm") is None and settings.algorithm is None:
        raise reject(RejectCode.MISSING_FIELD, "response.FaceModelVersion",
                     "the response names no FaceModelVersion: give meta.algorithm or --algorithm")
    facts: dict[str, Any] = {"operation": operation, "request_threshold": floor, **_quality_filter(request)}
    if version is not None:
        facts["face_model_version"] = version
    if not candidates:
        facts["score_censored_below"] = floor
    algorithm = MODEL_ALGORITHM_PREFIX + version if version is not None else COMPARE_FACES_ALGORITHM
    if "subject" not in meta and searched is not None and searched in settings.candidate_groups:
        # SearchFaces searches with an enrolled face: the operator's records hold its groups too
        meta = {**meta, "subject": dict(settings.candidate_groups[searched])}
        sources.paths["subject"] = "response.SearchedFaceId (its candidate groups)"
    event = _common(meta, settings, sources, response, algorithm=algorithm, facts=facts)
    event.update(mode="identification", score=score, threshold=threshold,
                 decision="match" if score >= threshold else "non_match", candidates=candidates)
    sources.paths["candidates"] = "response.FaceMatches"
    sources.paths["score"] = sources.paths["decision"] = "response.FaceMatches"
    if max_faces is not None:
        event["list_length"] = max_faces
    gallery = meta.get("gallery_size", settings.gallery_size)
    if gallery is not None:
        event["gallery_size"] = gallery
        sources.paths["gallery_size"] = "meta.gallery_size" if "gallery_size" in meta else "--gallery-size"
    return _checked(event, sources)


def _common(meta: dict, settings: RekognitionSettings, sources: _Sources, response: dict, *,
            algorithm: str, facts: dict[str, Any]) -> dict[str, Any]:
    """The fields every event takes from the operator's metadata (checked by the contract later)."""
    if "event_id" in meta:
        event_id, sources.paths["event_id"] = meta["event_id"], "meta.event_id"
    else:
        request_id = response.get("ResponseMetadata", {}).get("RequestId") \
            if isinstance(response.get("ResponseMetadata"), dict) else None
        if request_id is None:
            raise reject(RejectCode.MISSING_FIELD, "meta.event_id",
                         "meta needs event_id (the search or comparison id; the response carries no "
                         "ResponseMetadata.RequestId to use instead)")
        event_id, sources.paths["event_id"] = request_id, "response.ResponseMetadata.RequestId"
    for name in ("occurred_at", "subject"):
        if name not in meta:
            raise reject(RejectCode.MISSING_FIELD, f"meta.{name}",
                         f"meta needs {name}" + (" (the probe's groups, from the operator's records)"
                                                 if name == "subject" else ""))
    deployment = meta.get("deployment", settings.deployment)
    if deployment is None:
        raise reject(RejectCode.MISSING_FIELD, "meta.deployment", "meta needs deployment (or give --deployment)")
    sources.paths["deployment"] = "meta.deployment" if "deployment" in meta else "--deployment"
    if "algorithm" in meta:
        algorithm, sources.paths["algorithm"] = meta["algorithm"], "meta.algorithm"
    elif settings.algorithm is not None:
        algorithm, sources.paths["algorithm"] = settings.algorithm, "--algorithm"
    context = meta.get("context", {})
    if not isinstance(context, dict):
        raise reject(RejectCode.WRONG_TYPE, "meta.context", f"meta.context must be an object, got {type_name(context)}")
    if "rekognition" in context:
        raise reject(RejectCode.DUPLICATE_KEY, "meta.context.rekognition",
                     "context.rekognition is written by the adapter (operation, thresholds, censoring)")
    event: dict[str, Any] = {"event_id": event_id, "occurred_at": meta["occurred_at"], "deployment": deployment,
                             "algorithm": algorithm, "subject": meta["subject"],
                             "context": {**context, "rekognition": facts}}
    sources.paths.setdefault("subject", "meta.subject")
    for name in ("occurred_at", "context", "cluster_id"):
        sources.paths[name] = f"meta.{name}"
    if "cluster_id" in meta:
        event["cluster_id"] = meta["cluster_id"]
    return event


def _checked(event: dict[str, Any], sources: _Sources) -> MatchEvent:
    """The event as the worker will decode it, or the contract's refusal named by the record's path."""
    decoded = decode_match_event(json.dumps(event, separators=(",", ":"), allow_nan=False).encode())
    if isinstance(decoded, Rejection):
        raise ContractError(Rejection(decoded.code, decoded.message, sources.path(decoded.field)))
    return decoded


# ---------------------------------------------------------------- request parameters


def _request_threshold(request: dict, name: str, default: float | None, option: str, sources: _Sources) -> float:
    if name in request:
        sources.paths["threshold"] = f"request.{name}"
        return _percent(request, name, "request", required=True)
    if default is not None:
        sources.paths["threshold"] = option
        return _in_percent_range(default, option)
    raise reject(RejectCode.MISSING_FIELD, f"request.{name}",
                 f"the response does not carry the request's {name}: record it in request.{name} or give "
                 f"{option} (AWS uses 80 when the request leaves it out)")


def _quality_filter(request: dict) -> dict[str, str]:
    """The request's QualityFilter, kept: it decides which faces are compared at all."""
    if "QualityFilter" not in request:
        return {}
    value = request["QualityFilter"]
    if value not in QUALITY_FILTERS:
        raise reject(RejectCode.UNKNOWN_ENUM_VALUE, "request.QualityFilter",
                     f"request.QualityFilter must be one of {', '.join(QUALITY_FILTERS)}; got {value!r}")
    return {"quality_filter": value}


def _decision_threshold(meta: dict, settings: RekognitionSettings, floor: float, name: str,
                        sources: _Sources) -> float:
    if "threshold" in meta:
        where = "meta.threshold"
        threshold = _percent(meta, "threshold", "meta", required=True)
    elif settings.threshold is not None:
        where, threshold = "--threshold", _in_percent_range(settings.threshold, "--threshold")
    else:
        return floor
    if threshold < floor:
        raise reject(RejectCode.OUT_OF_RANGE, where,
                     f"{where} {threshold!r} is below the request's {name} {floor!r}: Rekognition does not "
                     "return the scores in between, so decisions there cannot be known")
    sources.paths["threshold"] = where
    return threshold


def _max_faces(request: dict, settings: RekognitionSettings, sources: _Sources) -> int | None:
    if "MaxFaces" in request:
        value, where = request["MaxFaces"], "request.MaxFaces"
    elif settings.max_faces is not None:
        value, where = settings.max_faces, "--max-faces"
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            raise reject(RejectCode.WRONG_TYPE, where, f"{where} must be an integer, got {type_name(value)}")
    if not 1 <= value <= MAX_FACES_LIMIT:
        raise reject(RejectCode.OUT_OF_RANGE, where, f"{where} must be between 1 and {MAX_FACES_LIMIT}, got {value!r}")
    sources.paths["list_length"] = where
    return int(value)


# ---------------------------------------------------------------- response shapes (botocore's)


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        code = RejectCode.NOT_AN_OBJECT if where == "record" else RejectCode.WRONG_TYPE
        raise reject(code, None if where == "record" else where, f"{where} must be an object, got {type_name(value)}")
    return value


def _known_keys(obj: dict, known: tuple[str, ...], prefix: str) -> None:
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise reject(RejectCode.UNKNOWN_FIELD, f"{prefix}{unknown[0]}",
                     f"unknown field(s) {unknown} in {prefix.rstrip('.') or 'the record'}; known: {', '.join(known)}")


def _given(obj: dict, name: str, where: str, required: bool) -> bool:
    """Whether ``obj`` has ``name``; a missing required one is refused, naming it."""
    if name in obj:
        return True
    if required:
        raise reject(RejectCode.MISSING_FIELD, f"{where}.{name}", f"{where} has no {name}")
    return False


def _list(obj: dict, name: str, where: str, required: bool = False) -> list:
    if not _given(obj, name, where, required):
        return []
    value = obj[name]
    if not isinstance(value, list):
        raise reject(RejectCode.WRONG_TYPE, f"{where}.{name}", f"{where}.{name} must be an array, got {type_name(value)}")
    return value


def _number(obj: dict, name: str, where: str, required: bool = False) -> float | None:
    path = f"{where}.{name}"
    if not _given(obj, name, where, required):
        return None
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise reject(RejectCode.WRONG_TYPE, path, f"{path} must be a number, got {type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise reject(RejectCode.NON_FINITE_NUMBER, path, f"{path} must be finite, got {value!r}")
    return number


def _in_percent_range(value: float, path: str) -> float:
    if not 0.0 <= value <= 100.0:
        raise reject(RejectCode.OUT_OF_RANGE, path, f"{path} is a percentage (0 to 100), got {value!r}")
    return float(value)


def _percent(obj: dict, name: str, where: str, required: bool = False) -> float | None:
    number = _number(obj, name, where, required)
    return None if number is None else _in_percent_range(number, f"{where}.{name}")


def _string(obj: dict, name: str, where: str) -> str | None:
    if name not in obj:
        return None
    value = obj[name]
    if not isinstance(value, str):
        raise reject(RejectCode.WRONG_TYPE, f"{where}.{name}", f"{where}.{name} must be a string, got {type_name(value)}")
    return value


def _face_id(obj: dict, name: str, where: str, required: bool = False) -> str | None:
    path = f"{where}.{name}"
    if not _given(obj, name, where, required):
        return None
    value = _string(obj, name, where)
    if not FACE_ID_RE.fullmatch(value):  # the value is not repeated: it may be anything, a name too
        raise reject(RejectCode.INVALID_CHARACTERS, path,
                     f"{path} is not a Rekognition id (a lower-case UUID, {len(value)} characters given)")
    return value


def _bounding_box(obj: dict, where: str, name: str = "BoundingBox") -> None:
    if name not in obj:
        return
    box = _object(obj[name], f"{where}.{name}")
    for side in ("Width", "Height", "Left", "Top"):
        _number(box, side, f"{where}.{name}")


def _compared_face(value: Any, where: str) -> None:
    """A ComparedFace: only its types are checked (none of it goes into the event)."""
    face = _object(value, where)
    _bounding_box(face, where)
    _percent(face, "Confidence", where)
    _list(face, "Landmarks", where)
    for name in ("Pose", "Quality"):
        if name in face:
            _object(face[name], f"{where}.{name}")


def _orientation(response: dict, name: str) -> None:
    value = response.get(name)
    if value is not None and value not in ORIENTATIONS:  # the reference: "always null", else an enum
        raise reject(RejectCode.UNKNOWN_ENUM_VALUE, f"response.{name}",
                     f"response.{name} must be null or one of {', '.join(ORIENTATIONS)}; got {value!r}")


# ---------------------------------------------------------------- records as text, and what is kept of them


def load_record(raw: bytes | str) -> Any:
    """Decode one JSON Lines record strictly (UTF-8, no duplicate keys, no NaN) or raise ContractError."""
    if len(raw) > MAX_RECORD_BYTES:
        raise reject(RejectCode.TOO_LARGE, None, f"record is {len(raw)} bytes; at most {MAX_RECORD_BYTES}")
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise reject(RejectCode.INVALID_ENCODING, None, f"record is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(raw, object_pairs_hook=no_duplicate_keys, parse_constant=no_json_constants)
    except json.JSONDecodeError as exc:
        raise reject(RejectCode.INVALID_JSON, None, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise reject(RejectCode.INVALID_JSON, None, "JSON nested too deeply") from None


def redacted(value: Any) -> Any:
    """``value`` without what fairwatch never stores: every ExternalImageId and UserId, at any
    depth, and the request's images (SourceImage, TargetImage, Image). For dead-letter copies.

    >>> redacted({"request": {"Image": {"S3Object": {"Name": "jane.jpg"}}, "MaxFaces": 2},
    ...           "response": {"FaceMatches": [{"Face": {"FaceId": "f", "ExternalImageId": "jane"}}]}})
    {'request': {'MaxFaces': 2}, 'response': {'FaceMatches': [{'Face': {'FaceId': 'f'}}]}}
    """
    if isinstance(value, list):
        return [redacted(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in NEVER_STORED:
            continue
        if key == "request" and isinstance(item, dict):
            item = {k: v for k, v in item.items() if k not in IMAGE_PARAMETERS}
        out[key] = redacted(item)
    return out


def check_candidate_groups(mapping: Any, where: str = "candidate groups") -> dict[str, dict[str, str]]:
    """The operator's FaceId -> labels records, each checked as the contract checks a subject.

    >>> check_candidate_groups({"2c0e0c1b-6a8d-4f4e-9a53-0d2b8e3f4a11": {"sex": "F"}})
    {'2c0e0c1b-6a8d-4f4e-9a53-0d2b8e3f4a11': {'sex': 'F'}}
    >>> check_candidate_groups({"jane-doe": {"sex": "F"}})
    Traceback (most recent call last):
    fairwatch.contracts.records.ContractError: invalid_characters (candidate groups): candidate groups has a key that is not a Rekognition FaceId (a lower-case UUID)
    """
    if not isinstance(mapping, dict):
        raise reject(RejectCode.WRONG_TYPE, where, f"{where} must be an object FaceId -> labels, got {type_name(mapping)}")
    for face_id, labels in mapping.items():
        if not FACE_ID_RE.fullmatch(face_id):
            raise reject(RejectCode.INVALID_CHARACTERS, where,
                         f"{where} has a key that is not a Rekognition FaceId (a lower-case UUID)")
        probe = decode_match_event(json.dumps({
            "event_id": "groups-check", "occurred_at": "2026-01-01T00:00:00Z", "deployment": "d", "algorithm": "a",
            "mode": "verification", "score": 0.0, "threshold": 0.0, "decision": "match", "subject": labels}))
        if isinstance(probe, Rejection):
            path = f"{where}[{face_id}]" + (probe.field or "").removeprefix("subject")
            raise ContractError(Rejection(probe.code, probe.message.replace("subject", path), path))
    return {face_id: dict(labels) for face_id, labels in mapping.items()}
