"""Acquisition attempts (schemas/acquisition_event.schema.json): did the system find a usable face?

A camera that does not find a face, or finds one below the system's own quality bar, fails to
acquire; when that happens more to some groups, the bias never reaches a comparison (ISO/IEC
19795-10 asks for differentials in failure to acquire too). One record per attempt, key
``attempt_id``; the subject's labels where the operator records them (an attempt without them
counts in the overall row only). No image, template or name: identifiers are pseudonymous.

Examples
--------
>>> a = decode_acquisition(b'{"attempt_id": "a1", "occurred_at": "2026-01-02T03:04:05Z",'
...     b' "deployment": "gate-a", "algorithm": "detector-2", "outcome": "no_face",'
...     b' "subject": {"sex": "F"}}')
>>> a.attempt_id, a.failed, a.subject["sex"]
('a1', True, 'F')
>>> print(decode_acquisition(b'{"attempt_id": "a1", "occurred_at": "2026-01-02T03:04:05Z",'
...     b' "deployment": "gate-a", "algorithm": "detector-2", "outcome": "blurry"}'))
unknown_enum_value (outcome): outcome must be one of acquired, no_face, low_quality; got 'blurry'
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping

import msgspec

from fairwatch.contracts.records import (
    ContractError, RejectCode, Rejection, _check_fields, _cluster_id, _enum, _identifier, _labels, _name, format_timestamp,
    load_json, parse_timestamp, reject, type_name,
)

__all__ = ["ACQUIRED", "FAILURES", "OUTCOMES", "Acquisition", "context_text", "decode_acquisition", "parse_acquisition"]

ACQUIRED = "acquired"
# the two ways to fail: no face found, or one below the system's own quality bar
FAILURES = ("no_face", "low_quality")
OUTCOMES = (ACQUIRED, *FAILURES)
REQUIRED = ("attempt_id", "occurred_at", "deployment", "algorithm", "outcome")
OPTIONAL = ("subject", "cluster_id", "use_id", "context")


class Acquisition(msgspec.Struct, frozen=True, gc=False):
    """One acquisition attempt; ``algorithm`` is the detection and quality pipeline's version."""

    attempt_id: str
    occurred_at: datetime
    deployment: str
    algorithm: str
    outcome: str
    subject: Mapping[str, str] | None = None
    cluster_id: str | None = None
    use_id: str | None = None
    context: Mapping[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return self.outcome != ACQUIRED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attempt_id": self.attempt_id, "occurred_at": format_timestamp(self.occurred_at),
                               "deployment": self.deployment, "algorithm": self.algorithm, "outcome": self.outcome}
        for name in OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = dict(value) if isinstance(value, Mapping) else value
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()


def parse_acquisition(obj: Any) -> Acquisition:
    """Build an :class:`Acquisition` from a decoded JSON value, or raise :class:`ContractError`."""
    obj = _check_fields(obj, REQUIRED, OPTIONAL, "acquisition attempt")
    context = obj.get("context")
    if context is not None and not isinstance(context, dict):
        raise reject(RejectCode.WRONG_TYPE, "context", f"context must be an object, got {type_name(context)}")
    return Acquisition(
        attempt_id=_identifier(obj["attempt_id"], "attempt_id"),
        occurred_at=parse_timestamp(obj["occurred_at"], "occurred_at"),
        deployment=_name(obj["deployment"], "deployment"),
        algorithm=_name(obj["algorithm"], "algorithm"),
        outcome=_enum(obj["outcome"], "outcome", OUTCOMES),
        subject=_labels(obj["subject"], "subject") if "subject" in obj else None,
        cluster_id=_cluster_id(obj["cluster_id"]) if "cluster_id" in obj else None,
        use_id=_identifier(obj["use_id"], "use_id") if "use_id" in obj else None,
        context=context,
    )


def decode_acquisition(raw: bytes | str) -> Acquisition | Rejection:
    """Bytes of one ``acquisitions`` message -> :class:`Acquisition` or :class:`Rejection`."""
    try:
        return parse_acquisition(load_json(raw))
    except ContractError as exc:
        return exc.rejection


def context_text(attempt: Acquisition) -> str:
    """The context as stored: compact JSON with sorted keys, '' without one."""
    return "" if attempt.context is None else json.dumps(attempt.context, sort_keys=True, separators=(",", ":"))
