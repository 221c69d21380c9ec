"""Typed input records and their decoder: bytes in, a record or a precise rejection out.

The models mirror ``schemas/*.schema.json`` field for field (a test holds them together, with
the ``jsonschema`` library as the oracle). Decoding is hand-written rather than delegated to a
generic validator because it sits on the hot path and must name *one* reason per kind of fault,
which becomes the dead-letter ``reason_code``. Batch envelopes, and their faster route when
every record is valid, are in :mod:`fairwatch.contracts.envelopes`.

Examples
--------
>>> ev = decode_match_event(b'{"event_id": "e1", "occurred_at": "2026-01-02T03:04:05Z",'
...     b' "deployment": "gate-a", "algorithm": "algo-1", "mode": "verification", "score": 0.91,'
...     b' "threshold": 0.8, "decision": "match", "subject": {"sex": "F", "race": "Black"}}')
>>> ev.event_id, ev.decision, ev.subject["race"]
('e1', 'match', 'Black')
>>> bad = decode_match_event(b'{"event_id": ""}')
>>> isinstance(bad, Rejection), bad.code.value
(True, 'missing_field')
>>> print(decode_verified_outcome(b'{"event_id": "e1", "verified_at": "2026-01-03T00:00:00+01:00",'
...     b' "truth": "impostor", "reviewer": "r7", "revision": 0, "inclusion_prob": 0}'))
out_of_range (inclusion_prob): inclusion_prob must be > 0 and <= 1, got 0
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Mapping

import msgspec

MAX_MESSAGE_BYTES = 1 << 20
MAX_ID_LENGTH = 128
MAX_LABELS = 16
MAX_LABEL_LENGTH = 64
MAX_REVISION = 2**31 - 1

# The same patterns as schemas/common.schema.json (a test compares them). ECMA-262 semantics:
# `$` is the end of input, so Python needs fullmatch, not search (which lets "\n" trail).
ID_PATTERN = "^[!-~]+$"
# a deployment, algorithm or reviewer name and a demographic label reach SQL (board variables) and
# spreadsheets (CSV reports): no quotes, backslash or backtick, and no leading = + - @ (a formula)
NAME_PATTERN = "^[!#-&(-*,.-<>?A-\\[\\]-_a-~][!#-&(-\\[\\]-_a-~]*$"
ATTRIBUTE_PATTERN = "^[A-Za-z][A-Za-z0-9_]{0,63}$"
LABEL_PATTERN = "^[^&'\"\\\\`=+@-][^&'\"\\\\`]*$"
UNSAFE_NAME = "quotes, a backslash or a backtick, or a leading = + - @ (names reach SQL and spreadsheets)"
MIN_YEAR, MAX_YEAR = 1971, 2105  # as written: whatever the UTC offset, the instant fits ClickHouse's DateTime
TIMESTAMP_PATTERN = (
    "^(197[1-9]|19[89][0-9]|20[0-9][0-9]|210[0-5])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


_ID_RE = _ecma(ID_PATTERN)
ATTRIBUTE_RE = _ecma(ATTRIBUTE_PATTERN)
_LABEL_RE = _ecma(LABEL_PATTERN)
_NAME_RE = _ecma(NAME_PATTERN)
_TIMESTAMP_RE = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?(?P<tz>[Zz]|(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>\d{2}))?"
)
_STRICT_TIMESTAMP_RE = _ecma(TIMESTAMP_PATTERN)

MODES = ("verification", "identification")
DECISIONS = ("match", "non_match")
TRUTHS = ("genuine", "impostor")
PRIMARY, INDEPENDENT = "primary", "independent"
REVIEWS = (PRIMARY, INDEPENDENT)


class RejectCode(StrEnum):
    """One code per kind of fault; the dead-letter record's ``reason_code``."""

    TOO_LARGE = "too_large"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    DUPLICATE_KEY = "duplicate_key"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE_NUMBER = "non_finite_number"
    UNKNOWN_ENUM_VALUE = "unknown_enum_value"
    EMPTY_STRING = "empty_string"
    STRING_TOO_LONG = "string_too_long"
    INVALID_CHARACTERS = "invalid_characters"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_WITHOUT_OFFSET = "timestamp_without_offset"
    OUT_OF_RANGE = "out_of_range"
    NOT_AN_INTEGER = "not_an_integer"
    EMPTY_LABELS = "empty_labels"
    TOO_MANY_LABELS = "too_many_labels"
    BAD_ATTRIBUTE_NAME = "bad_attribute_name"
    BAD_LABEL = "bad_label"
    BAD_NAME = "bad_name"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    BAD_BATCH = "bad_batch"
    # signed input (fairwatch.contracts.signing, fairwatch.contracts.keyring): a deployment that
    # requires signatures refuses what no key of its keyring signed, a present signature is always checked
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_NOT_FOR_DEPLOYMENT = "key_not_for_deployment"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    EXPIRED_KEY = "expired_key"
    REVOKED_KEY = "revoked_key"
    DEPLOYMENT_MISMATCH = "deployment_mismatch"
    # identification searches (schemas/match_event.schema.json "candidates"): a list out of order,
    # on a verification event, or that the event's own score and decision contradict
    BAD_CANDIDATES = "bad_candidates"
    INCONSISTENT_DECISION = "inconsistent_decision"
    BAD_MATE = "bad_mate"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: a code, the offending field (if any) and a readable sentence."""

    code: RejectCode
    message: str
    field: str | None = None

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.code.value}{where}: {self.message}"


class ContractError(ValueError):
    """Raised by the ``parse_*`` functions; carries the :class:`Rejection`."""

    def __init__(self, rejection: Rejection):
        super().__init__(str(rejection))
        self.rejection = rejection


def reject(code: RejectCode, field: str | None, message: str) -> ContractError:
    return ContractError(Rejection(code, message, field))


class Candidate(msgspec.Struct, frozen=True, gc=False):
    """One entry of an identification search's candidate list (pseudonymous id, never a name)."""

    rank: int
    score: float
    candidate_id: str
    groups: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rank": self.rank, "score": self.score, "candidate_id": self.candidate_id}
        if self.groups is not None:
            out["groups"] = dict(self.groups)
        return out


class MatchEvent(msgspec.Struct, frozen=True, gc=False):
    """One comparison made by a face-recognition system (schemas/match_event.schema.json).

    A frozen msgspec Struct rather than a dataclass: built in C, five times faster, and the hot
    path builds one per record.
    """

    event_id: str
    occurred_at: datetime
    deployment: str
    algorithm: str
    mode: str
    score: float
    threshold: float
    decision: str
    subject: Mapping[str, str]
    reference: Mapping[str, str] | None = None
    context: Mapping[str, Any] | None = None
    cluster_id: str | None = None  # pseudonymous subject or session key (CLUSTER_ID_RE), for dispersion
    use_id: str | None = None  # the use (session) it belongs to (schemas/use_record.schema.json)
    # identification searches: the candidate list returned, best first, and its bounds
    candidates: tuple[Candidate, ...] | None = None
    list_length: int | None = None
    gallery_size: int | None = None

    @property
    def candidates_above(self) -> int:
        """Candidates at or above the threshold: a prefix of the list (scores do not increase with
        rank); for an event without a list, 1 for a match and 0 for a non-match."""
        if self.candidates is None:
            return int(self.decision == "match")
        return sum(c.score >= self.threshold for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "occurred_at": format_timestamp(self.occurred_at),
            "deployment": self.deployment,
            "algorithm": self.algorithm,
            "mode": self.mode,
            "score": self.score,
            "threshold": self.threshold,
            "decision": self.decision,
            "subject": dict(self.subject),
        }
        if self.reference is not None:
            out["reference"] = dict(self.reference)
        if self.context is not None:
            out["context"] = dict(self.context)
        if self.cluster_id is not None:
            out["cluster_id"] = self.cluster_id
        if self.use_id is not None:
            out["use_id"] = self.use_id
        if self.candidates is not None:
            out["candidates"] = [c.to_dict() for c in self.candidates]
        if self.list_length is not None:
            out["list_length"] = self.list_length
        if self.gallery_size is not None:
            out["gallery_size"] = self.gallery_size
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()


class VerifiedOutcome(msgspec.Struct, frozen=True, gc=False):
    """Human-verified truth for one match event (schemas/verified_outcome.schema.json)."""

    event_id: str
    verified_at: datetime
    truth: str
    reviewer: str
    revision: int
    inclusion_prob: float = 1.0
    # "independent": a blind second review for the reviewers' error; never counted (the schema)
    review: str = PRIMARY
    # a mated identification search (truth genuine): the mate's rank in the event's candidate
    # list; None when the mate was not in the list (or for verification)
    mate_rank: int | None = None
    # who verified the result (pseudonymous ids, in the order given) and whether anything was done
    # on it (EU AI Act Art. 14(5): no action on an identification unless two people confirmed it);
    # None when the site does not say
    verifiers: tuple[str, ...] | None = None
    action_taken: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "event_id": self.event_id,
            "verified_at": format_timestamp(self.verified_at),
            "truth": self.truth,
            "reviewer": self.reviewer,
            "revision": self.revision,
            "inclusion_prob": self.inclusion_prob,
        }
        if self.review != PRIMARY:
            out["review"] = self.review
        if self.mate_rank is not None:
            out["mate_rank"] = self.mate_rank
        if self.verifiers is not None:
            out["verifiers"] = list(self.verifiers)
        if self.action_taken is not None:
            out["action_taken"] = self.action_taken
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()


MATCH_EVENT_REQUIRED = (
    "event_id", "occurred_at", "deployment", "algorithm", "mode", "score", "threshold", "decision", "subject",
)
MATCH_EVENT_OPTIONAL = ("reference", "context", "cluster_id", "use_id", "candidates", "list_length", "gallery_size")
MAX_CANDIDATES = 4096
MAX_GALLERY_SIZE = 2**53 - 1
CANDIDATE_REQUIRED = ("rank", "score", "candidate_id")
CANDIDATE_OPTIONAL = ("groups",)
# a keyed hash (e.g. HMAC-SHA-256 in lower-case hex) of a subject or session id, never the id itself:
# hex only, so that no name or readable id fits
CLUSTER_ID_RE = re.compile(r"[0-9a-f]{16,64}")
VERIFIED_OUTCOME_REQUIRED = ("event_id", "verified_at", "truth", "reviewer", "revision", "inclusion_prob")
VERIFIED_OUTCOME_OPTIONAL = ("review", "mate_rank", "verifiers", "action_taken")
MAX_VERIFIERS = 16


def format_timestamp(value: datetime) -> str:
    """RFC 3339 with offset ('Z' for UTC)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_timestamp(value: Any, name: str) -> datetime:
    """Parse an RFC 3339 date-time that carries an offset into an aware datetime."""
    if not isinstance(value, str):
        raise reject(RejectCode.WRONG_TYPE, name, f"{name} must be an RFC 3339 string, got {type_name(value)}")
    m = _TIMESTAMP_RE.fullmatch(value)
    if m is None or not _STRICT_TIMESTAMP_RE.fullmatch(value):
        if m is not None and m.group("tz") is None:
            raise reject(
                RejectCode.TIMESTAMP_WITHOUT_OFFSET, name,
                f"{name} {value!r} has no UTC offset; add 'Z' or '+hh:mm'",
            )
        if m is not None and not MIN_YEAR <= int(m.group("y")) <= MAX_YEAR:
            raise reject(
                RejectCode.BAD_TIMESTAMP, name,
                f"{name} {value!r} is outside the years {MIN_YEAR}-{MAX_YEAR} (ClickHouse stores times from "
                f"1970 to 2106; with any UTC offset these fit)",
            )
        raise reject(RejectCode.BAD_TIMESTAMP, name, f"{name} {value!r} is not an RFC 3339 date-time")
    if m.group("sign"):
        delta = timedelta(hours=int(m.group("oh")), minutes=int(m.group("om")))
        tz = timezone(-delta if m.group("sign") == "-" else delta)
    else:
        tz = timezone.utc
    frac = (m.group("frac") or "").ljust(6, "0")[:6]
    try:
        return datetime(
            int(m.group("y")), int(m.group("mo")), int(m.group("d")),
            int(m.group("h")), int(m.group("mi")), int(m.group("s")), int(frac), tzinfo=tz,
        )
    except ValueError as exc:
        raise reject(RejectCode.BAD_TIMESTAMP, name, f"{name} {value!r} is not a calendar date-time ({exc})") from None


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _identifier(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise reject(RejectCode.WRONG_TYPE, name, f"{name} must be a string, got {type_name(value)}")
    if not value:
        raise reject(RejectCode.EMPTY_STRING, name, f"{name} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise reject(
            RejectCode.STRING_TOO_LONG, name, f"{name} has {len(value)} characters; at most {MAX_ID_LENGTH} allowed"
        )
    if not _ID_RE.fullmatch(value):
        raise reject(
            RejectCode.INVALID_CHARACTERS, name, f"{name} may hold printable ASCII without spaces only, got {value!r}"
        )
    return value


def _name(value: Any, name: str) -> str:
    """A deployment, algorithm or reviewer: an identifier that is also safe in SQL and spreadsheets."""
    _identifier(value, name)
    if not _NAME_RE.fullmatch(value):
        raise reject(RejectCode.BAD_NAME, name, f"{name} may not hold {UNSAFE_NAME}, got {value!r}")
    return value


def _enum(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise reject(RejectCode.WRONG_TYPE, name, f"{name} must be one of {', '.join(allowed)}; got {type_name(value)}")
    if value not in allowed:
        raise reject(RejectCode.UNKNOWN_ENUM_VALUE, name, f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise reject(RejectCode.WRONG_TYPE, name, f"{name} must be a number, got {type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise reject(RejectCode.NON_FINITE_NUMBER, name, f"{name} must be a finite number, got {value!r}")
    return number


def _labels(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise reject(RejectCode.WRONG_TYPE, name, f"{name} must be an object of attribute -> label, got {type_name(value)}")
    if not value:
        raise reject(RejectCode.EMPTY_LABELS, name, f"{name} must name at least one demographic attribute")
    if len(value) > MAX_LABELS:
        raise reject(RejectCode.TOO_MANY_LABELS, name, f"{name} has {len(value)} attributes; at most {MAX_LABELS}")
    for attribute, label in value.items():
        if not ATTRIBUTE_RE.fullmatch(attribute):
            raise reject(
                RejectCode.BAD_ATTRIBUTE_NAME, name,
                f"{name} attribute {attribute!r} must start with a letter and hold letters, digits or '_' (max 64)",
            )
        where = f"{name}.{attribute}"
        if not isinstance(label, str):
            raise reject(RejectCode.WRONG_TYPE, where, f"{where} must be a string label, got {type_name(label)}")
        if not label or len(label) > MAX_LABEL_LENGTH or "&" in label:
            raise reject(
                RejectCode.BAD_LABEL, where, f"{where} must be 1-{MAX_LABEL_LENGTH} characters without '&', got {label!r}"
            )
        if not _LABEL_RE.fullmatch(label):
            raise reject(RejectCode.BAD_NAME, where, f"{where} may not hold {UNSAFE_NAME}, got {label!r}")
    return value


def _check_fields(obj: Any, required: tuple[str, ...], optional: tuple[str, ...], kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise reject(RejectCode.NOT_AN_OBJECT, None, f"a {kind} must be a JSON object, got {type_name(obj)}")
    unknown = obj.keys() - set(required) - set(optional)
    if unknown:
        raise reject(
            RejectCode.UNKNOWN_FIELD, sorted(unknown)[0], f"unknown field(s) {sorted(unknown)} in a {kind}",
        )
    missing = [name for name in required if name not in obj]
    if missing:
        raise reject(RejectCode.MISSING_FIELD, missing[0], f"a {kind} needs {', '.join(missing)}")
    return obj


def parse_match_event(obj: Any) -> MatchEvent:
    """Build a :class:`MatchEvent` from a decoded JSON value, or raise :class:`ContractError`."""
    return _fast_match_event(obj) or _parse_match_event_fully(obj)


def _parse_match_event_fully(obj: Any) -> MatchEvent:
    obj = _check_fields(obj, MATCH_EVENT_REQUIRED, MATCH_EVENT_OPTIONAL, "match event")
    reference = obj.get("reference")
    context = obj.get("context")
    if context is not None or "context" in obj:
        if not isinstance(context, dict):
            raise reject(RejectCode.WRONG_TYPE, "context", f"context must be an object, got {type_name(context)}")
    event = MatchEvent(
        event_id=_identifier(obj["event_id"], "event_id"),
        occurred_at=parse_timestamp(obj["occurred_at"], "occurred_at"),
        deployment=_name(obj["deployment"], "deployment"),
        algorithm=_name(obj["algorithm"], "algorithm"),
        mode=_enum(obj["mode"], "mode", MODES),
        score=_finite(obj["score"], "score"),
        threshold=_finite(obj["threshold"], "threshold"),
        decision=_enum(obj["decision"], "decision", DECISIONS),
        subject=_labels(obj["subject"], "subject"),
        reference=_labels(reference, "reference") if "reference" in obj else None,
        context=context,
        cluster_id=_cluster_id(obj["cluster_id"]) if "cluster_id" in obj else None,
        use_id=_identifier(obj["use_id"], "use_id") if "use_id" in obj else None,
        candidates=_candidates(obj["candidates"]) if "candidates" in obj else None,
        list_length=_count(obj["list_length"], "list_length", 1, MAX_CANDIDATES) if "list_length" in obj else None,
        gallery_size=_count(obj["gallery_size"], "gallery_size", 0, MAX_GALLERY_SIZE) if "gallery_size" in obj else None,
    )
    if event.candidates is not None or event.list_length is not None or event.gallery_size is not None:
        _check_search(event)
    return event


def _count(value: Any, name: str, low: int, high: int) -> int:
    """A whole number in [low, high] (JSON Schema's integer: 3.0 is one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise reject(RejectCode.WRONG_TYPE, name, f"{name} must be an integer, got {type_name(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise reject(RejectCode.NON_FINITE_NUMBER, name, f"{name} must be finite, got {value!r}")
        if not value.is_integer():
            raise reject(RejectCode.NOT_AN_INTEGER, name, f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise reject(RejectCode.OUT_OF_RANGE, name, f"{name} must be between {low} and {high}, got {value!r}")
    return int(value)


def _candidates(value: Any) -> tuple[Candidate, ...]:
    if not isinstance(value, list):
        raise reject(RejectCode.WRONG_TYPE, "candidates", f"candidates must be an array, got {type_name(value)}")
    if len(value) > MAX_CANDIDATES:
        raise reject(RejectCode.OUT_OF_RANGE, "candidates",
                     f"candidates has {len(value)} entries; at most {MAX_CANDIDATES}")
    out = []
    for i, item in enumerate(value):
        where = f"candidates[{i}]"
        if not isinstance(item, dict):
            raise reject(RejectCode.WRONG_TYPE, where, f"{where} must be an object, got {type_name(item)}")
        unknown = item.keys() - set(CANDIDATE_REQUIRED) - set(CANDIDATE_OPTIONAL)
        if unknown:
            name = sorted(unknown)[0]
            raise reject(RejectCode.UNKNOWN_FIELD, f"{where}.{name}", f"unknown field(s) {sorted(unknown)} in {where}")
        missing = [name for name in CANDIDATE_REQUIRED if name not in item]
        if missing:
            raise reject(RejectCode.MISSING_FIELD, f"{where}.{missing[0]}", f"{where} needs {', '.join(missing)}")
        out.append(Candidate(
            rank=_count(item["rank"], f"{where}.rank", 1, MAX_CANDIDATES),
            score=_finite(item["score"], f"{where}.score"),
            candidate_id=_identifier(item["candidate_id"], f"{where}.candidate_id"),
            groups=_labels(item["groups"], f"{where}.groups") if "groups" in item else None,
        ))
    return tuple(out)


def _check_search(event: MatchEvent) -> None:
    """The rules between an identification search's fields that JSON Schema cannot state."""
    candidates = event.candidates
    if event.mode != "identification":
        raise reject(RejectCode.BAD_CANDIDATES, "mode",
                     "candidates, list_length and gallery_size belong to identification searches, not to mode "
                     f"{event.mode!r}")
    if candidates is None:
        name = "list_length" if event.list_length is not None else "gallery_size"
        raise reject(RejectCode.BAD_CANDIDATES, name, f"{name} is given without the candidates list it bounds")
    for i, candidate in enumerate(candidates):
        if candidate.rank != i + 1:
            raise reject(RejectCode.BAD_CANDIDATES, f"candidates[{i}].rank",
                         f"candidates must be listed by rank 1, 2, ...; entry {i} has rank {candidate.rank}")
        if i and candidate.score > candidates[i - 1].score:
            raise reject(RejectCode.BAD_CANDIDATES, f"candidates[{i}].score",
                         f"rank {i + 1} scores {candidate.score!r}, above rank {i}'s {candidates[i - 1].score!r}: "
                         "a candidate list is best first")
    if len({c.candidate_id for c in candidates}) != len(candidates):
        raise reject(RejectCode.BAD_CANDIDATES, "candidates", "a candidate id appears twice in one list")
    if event.list_length is not None and len(candidates) > event.list_length:
        raise reject(RejectCode.BAD_CANDIDATES, "candidates",
                     f"{len(candidates)} candidates returned but list_length is {event.list_length}")
    if candidates:
        if event.score != candidates[0].score:
            raise reject(RejectCode.INCONSISTENT_DECISION, "score",
                         f"score {event.score!r} is not the rank-1 candidate's score {candidates[0].score!r}")
        expected = "match" if candidates[0].score >= event.threshold else "non_match"
    else:
        if event.score >= event.threshold:
            raise reject(RejectCode.INCONSISTENT_DECISION, "score",
                         f"no candidate was returned, yet score {event.score!r} is at or above the threshold")
        expected = "non_match"
    if event.decision != expected:
        raise reject(RejectCode.INCONSISTENT_DECISION, "decision",
                     f"decision {event.decision!r} contradicts the candidate list ({expected} at threshold "
                     f"{event.threshold!r})")


def _cluster_id(value: Any) -> str:
    if not isinstance(value, str):
        raise reject(RejectCode.WRONG_TYPE, "cluster_id", f"cluster_id must be a string, got {type_name(value)}")
    if not CLUSTER_ID_RE.fullmatch(value):
        raise reject(RejectCode.INVALID_CHARACTERS, "cluster_id",
                     "cluster_id must be 16-64 lower-case hex digits (a keyed hash of a subject or session id, "
                     f"never the id itself), got {len(value)} characters")
    return value


def parse_verified_outcome(obj: Any) -> VerifiedOutcome:
    """Build a :class:`VerifiedOutcome` from a decoded JSON value, or raise :class:`ContractError`."""
    return _fast_verified_outcome(obj) or _parse_verified_outcome_fully(obj)


def _parse_verified_outcome_fully(obj: Any) -> VerifiedOutcome:
    obj = _check_fields(obj, VERIFIED_OUTCOME_REQUIRED, VERIFIED_OUTCOME_OPTIONAL, "verified outcome")
    revision = obj["revision"]
    if isinstance(revision, bool) or not isinstance(revision, (int, float)):
        raise reject(RejectCode.WRONG_TYPE, "revision", f"revision must be an integer, got {type_name(revision)}")
    if isinstance(revision, float):
        if not math.isfinite(revision):
            raise reject(RejectCode.NON_FINITE_NUMBER, "revision", f"revision must be finite, got {revision!r}")
        if not revision.is_integer():
            raise reject(RejectCode.NOT_AN_INTEGER, "revision", f"revision must be a whole number, got {revision!r}")
    if not 0 <= revision <= MAX_REVISION:
        raise reject(RejectCode.OUT_OF_RANGE, "revision", f"revision must be between 0 and {MAX_REVISION}, got {revision!r}")
    prob = _finite(obj["inclusion_prob"], "inclusion_prob")
    if not 0.0 < prob <= 1.0:
        raise reject(
            RejectCode.OUT_OF_RANGE, "inclusion_prob", f"inclusion_prob must be > 0 and <= 1, got {obj['inclusion_prob']!r}"
        )
    outcome = VerifiedOutcome(
        event_id=_identifier(obj["event_id"], "event_id"),
        verified_at=parse_timestamp(obj["verified_at"], "verified_at"),
        truth=_enum(obj["truth"], "truth", TRUTHS),
        reviewer=_name(obj["reviewer"], "reviewer"),
        revision=int(revision),
        inclusion_prob=prob,
        review=_enum(obj["review"], "review", REVIEWS) if "review" in obj else PRIMARY,
        mate_rank=_count(obj["mate_rank"], "mate_rank", 1, MAX_CANDIDATES) if "mate_rank" in obj else None,
    )
    if outcome.mate_rank is not None and outcome.truth != "genuine":
        raise reject(RejectCode.BAD_MATE, "mate_rank",
                     "a non-mated search (truth impostor) has no mate: mate_rank belongs to truth genuine")
    if "verifiers" in obj or "action_taken" in obj:
        if outcome.review != PRIMARY:
            field = "verifiers" if "verifiers" in obj else "action_taken"
            raise reject(RejectCode.UNKNOWN_FIELD, field,
                         f"{field} belongs to the primary verdict, not to an independent review")
        verifiers = _verifiers(obj["verifiers"]) if "verifiers" in obj else None
        action = obj.get("action_taken")
        if "action_taken" in obj and not isinstance(action, bool):
            raise reject(RejectCode.WRONG_TYPE, "action_taken", f"action_taken must be true or false, got {type_name(action)}")
        outcome = msgspec.structs.replace(outcome, verifiers=verifiers, action_taken=action)
    return outcome


def _verifiers(value: Any) -> tuple[str, ...]:
    """1 to MAX_VERIFIERS pseudonymous ids, each a name as ``reviewer`` is (repeats are kept: the
    compliance measures count distinct people)."""
    if not isinstance(value, list):
        raise reject(RejectCode.WRONG_TYPE, "verifiers", f"verifiers must be a list of ids, got {type_name(value)}")
    if not 1 <= len(value) <= MAX_VERIFIERS:
        raise reject(RejectCode.OUT_OF_RANGE, "verifiers",
                     f"verifiers must hold 1 to {MAX_VERIFIERS} ids, got {len(value)}")
    return tuple(_name(v, "verifiers") for v in value)


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise reject(RejectCode.DUPLICATE_KEY, key, f"key {key!r} appears twice in one JSON object")
            seen.add(key)
    return out


def no_json_constants(token: str) -> Any:
    raise reject(RejectCode.NON_FINITE_NUMBER, None, f"{token} is not a JSON number; numbers must be finite")


def load_json(raw: bytes | str) -> Any:
    """Decode one JSON document strictly (UTF-8, no duplicate keys, no NaN/Infinity) or raise."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise reject(RejectCode.TOO_LARGE, None, f"message is {len(raw)} bytes; at most {MAX_MESSAGE_BYTES}")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise reject(RejectCode.INVALID_ENCODING, None, f"message is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = raw
    try:
        return json.loads(text, object_pairs_hook=no_duplicate_keys, parse_constant=no_json_constants)
    except json.JSONDecodeError as exc:
        raise reject(RejectCode.INVALID_JSON, None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise reject(RejectCode.INVALID_JSON, None, "JSON nested too deeply") from None


def decode_match_event(raw: bytes | str) -> MatchEvent | Rejection:
    """Bytes of one ``match-events`` message -> :class:`MatchEvent` or :class:`Rejection`."""
    try:
        return parse_match_event(load_json(raw))
    except ContractError as exc:
        return exc.rejection


def decode_verified_outcome(raw: bytes | str) -> VerifiedOutcome | Rejection:
    """Bytes of one ``verified-outcomes`` message -> :class:`VerifiedOutcome` or :class:`Rejection`."""
    try:
        return parse_verified_outcome(load_json(raw))
    except ContractError as exc:
        return exc.rejection


# ---------------------------------------------------------------- batch envelopes


# ---------------------------------------------------------------- the fast path for valid records
# Most records are valid and their strings repeat (deployments, algorithms, reviewers, labels):
# the checks below accept a record only when it is certainly valid, giving the same value the
# full parser gives; anything else (including every fault) goes to the full parser, which names
# the reason. tests/test_contracts.py holds the two together on generated and mutated documents.


# ---------------------------------------------------------------- the fast path for valid batches
# A batch envelope whose records are all valid is decoded in one msgspec call into typed shapes
# (types, required and unknown fields, enums, lengths and ranges checked in C), then checked
# column by column for what msgspec does not check the way the contract does: identifier
# characters, attribute names and labels, timestamps (the subset fromisoformat reads exactly as
# parse_timestamp does) and duplicate keys (msgspec keeps the last). Anything else, including any
# bad record, returns None and the envelope takes the full path, which names each fault.


FAST_TIMESTAMP_RE = re.compile(r"(?:197[1-9]|19[89]\d|20\d\d|210[0-5])-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")


_KNOWN_GOOD: dict[str, None] = {}  # strings already found to be valid identifiers
_KNOWN_NAMES: dict[str, None] = {}  # strings already found to be valid names (a stricter rule)


KNOWN_LABELS: dict[tuple[str, str], None] = {}  # (attribute, label) pairs already found valid


_KNOWN_LIMIT = 100_000


_EVENT_KEYS = frozenset(MATCH_EVENT_REQUIRED)


# candidate lists take the full parser (their rules between fields are not the fast path's)
_EVENT_KEYS_ALL = frozenset(MATCH_EVENT_REQUIRED + ("reference", "context", "cluster_id"))
_CLUSTER_ID_MATCH = CLUSTER_ID_RE.fullmatch


_OUTCOME_KEYS = frozenset(VERIFIED_OUTCOME_REQUIRED)
_MATED_OUTCOME_KEYS = _OUTCOME_KEYS | {"mate_rank"}


_fromisoformat = datetime.fromisoformat


_isfinite = math.isfinite


def _fast_id(value: Any) -> bool:
    """A valid identifier: 1-128 printable ASCII characters without spaces (the ID_PATTERN)."""
    if type(value) is not str:
        return False
    if value in _KNOWN_GOOD:
        return True
    return 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and value.isprintable() and " " not in value


def fast_name(value: Any) -> bool:
    """A valid name (the NAME_PATTERN), remembered once seen: names repeat on every record."""
    if type(value) is not str:
        return False
    if value in _KNOWN_NAMES:
        return True
    if not 0 < len(value) <= MAX_ID_LENGTH or not _NAME_RE.fullmatch(value):
        return False
    if len(_KNOWN_NAMES) >= _KNOWN_LIMIT:
        _KNOWN_NAMES.clear()
    _KNOWN_NAMES[value] = None
    return True


def _remember(value: str) -> None:
    if len(_KNOWN_GOOD) >= _KNOWN_LIMIT:
        _KNOWN_GOOD.clear()
    _KNOWN_GOOD[value] = None


def _fast_labels(value: Any) -> bool:
    if type(value) is not dict or not 0 < len(value) <= MAX_LABELS:
        return False
    for pair in value.items():
        if type(pair[1]) is not str:
            return False
        if pair not in KNOWN_LABELS and not new_label_valid(pair):
            return False
    return True


def new_label_valid(pair: tuple[str, str]) -> bool:
    """An (attribute, string label) pair not yet known is valid: remember it if so."""
    attribute, label = pair
    if not (ATTRIBUTE_RE.fullmatch(attribute) and 0 < len(label) <= MAX_LABEL_LENGTH and _LABEL_RE.fullmatch(label)):
        return False
    if len(KNOWN_LABELS) >= _KNOWN_LIMIT:
        KNOWN_LABELS.clear()
    KNOWN_LABELS[pair] = None
    return True


def _fast_timestamp(value: Any) -> datetime | None:
    if type(value) is not str or not FAST_TIMESTAMP_RE.fullmatch(value):
        return None
    try:
        parsed = _fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.year >= 1 else None


def _fast_number(value: Any) -> bool:
    return type(value) is float and _isfinite(value)


def _fast_match_event(obj: Any) -> MatchEvent | None:
    if type(obj) is not dict:
        return None
    keys = obj.keys()
    if keys != _EVENT_KEYS and not (_EVENT_KEYS <= keys <= _EVENT_KEYS_ALL):
        return None
    event_id, deployment, algorithm = obj["event_id"], obj["deployment"], obj["algorithm"]
    mode, decision, score, threshold = obj["mode"], obj["decision"], obj["score"], obj["threshold"]
    subject = obj["subject"]
    if not (_fast_id(event_id) and fast_name(deployment) and fast_name(algorithm) and type(mode) is str
            and mode in MODES and type(decision) is str and decision in DECISIONS and _fast_number(score)
            and _fast_number(threshold) and _fast_labels(subject)):
        return None
    occurred_at = _fast_timestamp(obj["occurred_at"])
    if occurred_at is None:
        return None
    reference = obj.get("reference")
    if "reference" in obj and not _fast_labels(reference):
        return None
    context = obj.get("context")
    if "context" in obj and type(context) is not dict:
        return None
    cluster_id = obj.get("cluster_id")
    if "cluster_id" in obj and not (type(cluster_id) is str and _CLUSTER_ID_MATCH(cluster_id)):
        return None
    _remember(deployment)
    _remember(algorithm)
    return MatchEvent(event_id, occurred_at, deployment, algorithm, mode, score, threshold, decision, subject,
                      reference, context, cluster_id)


def _fast_verified_outcome(obj: Any) -> VerifiedOutcome | None:
    if type(obj) is not dict:
        return None
    mate_rank = None
    if obj.keys() != _OUTCOME_KEYS:
        if obj.keys() != _MATED_OUTCOME_KEYS:
            return None
        mate_rank = obj["mate_rank"]
        if not (type(mate_rank) is int and 1 <= mate_rank <= MAX_CANDIDATES and obj["truth"] == "genuine"):
            return None
    event_id, truth, reviewer, revision, prob = (
        obj["event_id"], obj["truth"], obj["reviewer"], obj["revision"], obj["inclusion_prob"])
    if not (_fast_id(event_id) and fast_name(reviewer) and type(truth) is str and truth in TRUTHS
            and type(revision) is int and 0 <= revision <= MAX_REVISION):
        return None
    if type(prob) is int and prob == 1:
        prob = 1.0
    elif not (type(prob) is float and 0.0 < prob <= 1.0):
        return None
    verified_at = _fast_timestamp(obj["verified_at"])
    if verified_at is None:
        return None
    _remember(reviewer)
    return VerifiedOutcome(event_id, verified_at, truth, reviewer, revision, prob, PRIMARY, mate_rank)
