"""Amazon Rekognition response documents for the adapter's tests, written by hand from AWS's
published API reference: the shapes CompareFacesResponse, CompareFacesMatch, ComparedFace,
ComparedSourceImageFace, SearchFacesByImageResponse, SearchFacesResponse, FaceMatch and Face of
botocore's ``botocore/data/rekognition/2016-06-27/service-2.json`` (field names, nesting and
types; Percent is a float in [0, 100], FaceId and ImageId lower-case UUIDs, MaxFaces 1..4096),
and the example responses of the Amazon Rekognition Developer Guide ("Comparing faces in
images", "Searching for a face using an image"). boto3 adds ``ResponseMetadata`` to every
response; some documents carry it as a caller's log would.

Every function returns a fresh document, so a test may mutate it.
"""

from __future__ import annotations

from typing import Any

# FaceIds and ImageIds as Rekognition assigns them (lower-case UUIDs)
FACE_A = "578e2e1b-d0b0-493c-aa39-ba476a421a34"
FACE_B = "38271d79-7bc2-5efb-b752-398a8d575b85"
FACE_C = "0b683aed-a0f1-48b2-9b5e-139e9cc2a757"
FACE_D = "d5a7c9a4-3b1e-4c55-8a3e-2f1d0c9b8a77"
IMAGE_1 = "9ba38e68-35b6-5509-9d2e-fcffa75d1653"
IMAGE_2 = "f4b8a1c2-5d6e-4f70-8a9b-0c1d2e3f4a5b"
# what the operator chose when indexing (ExternalImageId, UserId): names, never to be stored
NAMES = ("jane_doe_2019.jpg", "john.roe", "user-jdoe-1977")


def box(width: float = 0.11, height: float = 0.063, left: float = 0.17, top: float = 0.73) -> dict[str, float]:
    return {"Width": width, "Height": height, "Left": left, "Top": top}


def compared_face(confidence: float = 99.98751068115234) -> dict[str, Any]:
    """A ComparedFace: bounding box, confidence, landmarks, pose, quality."""
    return {
        "BoundingBox": box(0.5521978139877319, 0.3126954436302185, 0.23626373708248138, 0.1203877404332161),
        "Confidence": confidence,
        "Landmarks": [{"Type": "eyeLeft", "X": 0.41685718297958374, "Y": 0.2996366024017334},
                      {"Type": "eyeRight", "X": 0.4414493441581726, "Y": 0.2658946216106415},
                      {"Type": "nose", "X": 0.48636093735694885, "Y": 0.3465650677680969}],
        "Pose": {"Roll": -62.13221740722656, "Yaw": -82.36799621582031, "Pitch": 0.8652129173278809},
        "Quality": {"Brightness": 54.49755096435547, "Sharpness": 99.99880981445312},
    }


def compare_faces(*similarities: float, unmatched: int = 0) -> dict[str, Any]:
    """A CompareFacesResponse with one FaceMatch per similarity (in the order given) and
    ``unmatched`` UnmatchedFaces."""
    return {
        "SourceImageFace": {"BoundingBox": box(0.4, 0.3, 0.2, 0.1), "Confidence": 99.99826049804688},
        "FaceMatches": [{"Similarity": s, "Face": compared_face()} for s in similarities],
        "UnmatchedFaces": [compared_face(98.5) for _ in range(unmatched)],
        "SourceImageOrientationCorrection": "ROTATE_90",
        "TargetImageOrientationCorrection": None,
    }


def face(face_id: str, image_id: str = IMAGE_1, external: str | None = NAMES[0],
         user: str | None = None) -> dict[str, Any]:
    """A Face of a collection, as FaceMatch.Face gives it."""
    out: dict[str, Any] = {"FaceId": face_id, "BoundingBox": box(), "ImageId": image_id, "Confidence": 99.9990005493164,
                           "IndexFacesModelVersion": "7.0"}
    if external is not None:
        out["ExternalImageId"] = external
    if user is not None:
        out["UserId"] = user
    return out


def search_faces_by_image(*matches: tuple[float, str], version: str = "7.0") -> dict[str, Any]:
    """A SearchFacesByImageResponse with FaceMatches (similarity, FaceId) in the order given; the
    faces carry the operator's ExternalImageId and UserId."""
    return {
        "SearchedFaceBoundingBox": box(0.11061728745698929, 0.06333333253860474, 0.17185185849666595, 0.7366666793823242),
        "SearchedFaceConfidence": 99.99999237060547,
        "FaceMatches": [{"Similarity": s, "Face": face(f, external=NAMES[i % 2], user=NAMES[2])}
                        for i, (s, f) in enumerate(matches)],
        "FaceModelVersion": version,
        "ResponseMetadata": {"RequestId": "3b2f8a3e-1c4d-4e5f-9a6b-7c8d9e0f1a2b", "HTTPStatusCode": 200,
                             "HTTPHeaders": {"content-type": "application/x-amz-json-1.1"}, "RetryAttempts": 0},
    }


def search_faces(searched: str, *matches: tuple[float, str], version: str = "6.0") -> dict[str, Any]:
    """A SearchFacesResponse: the searched FaceId and FaceMatches in the order given."""
    return {
        "SearchedFaceId": searched,
        "FaceMatches": [{"Similarity": s, "Face": face(f, IMAGE_2, external=NAMES[1])} for s, f in matches],
        "FaceModelVersion": version,
    }


def record(operation: str, response: dict[str, Any], request: dict[str, Any] | None = None,
           **meta: Any) -> dict[str, Any]:
    """One line of ``fairwatch ingest rekognition``'s input."""
    out: dict[str, Any] = {"operation": operation, "response": response,
                           "meta": {"event_id": "e-1", "occurred_at": "2026-05-04T10:00:00Z", "deployment": "precinct-3",
                                    "subject": {"sex": "F", "race": "Black"}, **meta}}
    if request is not None:
        out["request"] = request
    return out
