"""Use records (schemas/use_record.schema.json): when a use (session) of a system ran, and what it searched.

The EU AI Act asks the logs of remote biometric identification to record each use's start and end,
the reference database checked and who verified the results (Art. 12(3)); the verifiers are on
the verdicts, the rest here. A use is sent when it starts and again, with ``ended_at``, when it ends;
the one with ``ended_at`` replaces the other (table ``uses``). The match events of its deployment
that occurred in ``[started_at, ended_at)`` belong to it. Pseudonymous: an operator's role, never a name.

Examples
--------
>>> u = decode_use(b'{"use_id": "u1", "deployment": "gate-a", "started_at": "2026-01-02T03:00:00Z",'
...     b' "ended_at": "2026-01-02T05:00:00Z", "reference_database": "watchlist-eu"}')
>>> u.use_id, u.ended_at.hour, u.reference_version
('u1', 5, None)
>>> print(decode_use(b'{"use_id": "u1", "deployment": "gate-a", "started_at": "2026-01-02T05:00:00Z",'
...     b' "ended_at": "2026-01-02T03:00:00Z", "reference_database": "watchlist-eu"}'))
out_of_range (ended_at): ended_at 2026-01-02T03:00:00Z is before started_at 2026-01-02T05:00:00Z
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec

from fairwatch.contracts.records import (
    ContractError, RejectCode, Rejection, _check_fields, _identifier, _name, format_timestamp, load_json,
    parse_timestamp, reject,
)

__all__ = ["OPTIONAL", "REQUIRED", "UseRecord", "decode_use", "parse_use"]

REQUIRED = ("use_id", "deployment", "started_at", "reference_database")
OPTIONAL = ("ended_at", "reference_version", "operator_role")


class UseRecord(msgspec.Struct, frozen=True, gc=False):
    use_id: str
    deployment: str
    started_at: datetime
    reference_database: str
    ended_at: datetime | None = None
    reference_version: str | None = None
    operator_role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"use_id": self.use_id, "deployment": self.deployment,
                               "started_at": format_timestamp(self.started_at),
                               "reference_database": self.reference_database}
        if self.ended_at is not None:
            out["ended_at"] = format_timestamp(self.ended_at)
        for name in ("reference_version", "operator_role"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    def identity(self) -> bytes:
        """What two records of one use must agree on (all but ``ended_at``, which the end adds)."""
        return json.dumps({k: v for k, v in self.to_dict().items() if k != "ended_at"}, sort_keys=True).encode()


def parse_use(obj: Any) -> UseRecord:
    """Build a :class:`UseRecord` from a decoded JSON value, or raise :class:`ContractError`."""
    obj = _check_fields(obj, REQUIRED, OPTIONAL, "use record")
    started = parse_timestamp(obj["started_at"], "started_at")
    ended = parse_timestamp(obj["ended_at"], "ended_at") if "ended_at" in obj else None
    if ended is not None and ended < started:
        raise reject(RejectCode.OUT_OF_RANGE, "ended_at", f"ended_at {format_timestamp(ended)} is before started_at "
                                                         f"{format_timestamp(started)}")
    return UseRecord(
        use_id=_identifier(obj["use_id"], "use_id"), deployment=_name(obj["deployment"], "deployment"),
        started_at=started, reference_database=_name(obj["reference_database"], "reference_database"), ended_at=ended,
        reference_version=_name(obj["reference_version"], "reference_version") if "reference_version" in obj else None,
        operator_role=_name(obj["operator_role"], "operator_role") if "operator_role" in obj else None,
    )


def decode_use(raw: bytes | str) -> UseRecord | Rejection:
    """Bytes of one ``uses`` message -> :class:`UseRecord` or :class:`Rejection`."""
    try:
        return parse_use(load_json(raw))
    except ContractError as exc:
        return exc.rejection
