"""Use records in the store (table ``uses``, migration 018), and the figures of each use: its match
events, its acted-on identifications and their two-person verification, its acquisition attempts.

A use's events are its deployment's that name its ``use_id``, and those naming no use that occurred in
``[started_at, ended_at)`` (to the window's end while it runs); its acquisition attempts are those
that name it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from fairwatch.contracts.records import format_timestamp
from fairwatch.contracts.uses import UseRecord
from fairwatch.core.two_person import two_person_compliance
from fairwatch.store.clickhouse import Store
from fairwatch.store.two_person import read_acted_verdicts
from fairwatch.store.use_scope import OF_USE

__all__ = ["USE_COLUMNS", "read_uses", "use_columns", "use_figures"]

USE_COLUMNS = ("use_id", "deployment", "started_at", "ended_at", "reference_database", "reference_version",
               "operator_role", "ingested_at")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def use_columns(uses: Sequence[UseRecord], ingested_at: datetime) -> list[list]:
    """The :data:`USE_COLUMNS` of some records, a column at a time (DateTime columns as epoch seconds)."""
    return [
        [u.use_id for u in uses], [u.deployment for u in uses], [int(u.started_at.timestamp()) for u in uses],
        [0 if u.ended_at is None else int(u.ended_at.timestamp()) for u in uses],
        [u.reference_database for u in uses], [u.reference_version or "" for u in uses],
        [u.operator_role or "" for u in uses], [int(ingested_at.timestamp())] * len(uses),
    ]


def read_uses(store: Store, start: datetime, end: datetime, deployment: str | None = None) -> list[dict[str, Any]]:
    """The uses that ran during ``[start, end)`` (started before its end, not ended before its start)."""
    where = " AND deployment = %(deployment)s" if deployment else ""
    rows = store.query(
        f"SELECT {', '.join(USE_COLUMNS[:-1])} FROM uses FINAL WHERE started_at < %(end)s"
        f" AND (toUInt32(ended_at) = 0 OR ended_at > %(start)s){where} ORDER BY deployment, started_at, use_id",
        {"start": start, "end": end, "deployment": deployment})
    out = []
    for use_id, dep, started, ended, reference, version, role in rows:
        out.append({"use_id": use_id, "deployment": dep, "started_at": format_timestamp(started),
                    "ended_at": None if ended == _EPOCH else format_timestamp(ended),
                    "reference_database": reference, "reference_version": version or None,
                    "operator_role": role or None})
    return out


def use_figures(store: Store, use: dict[str, Any], window_end: datetime) -> dict[str, Any]:
    """One use's events per mode, acted-on identifications with their two-person verification, and
    acquisition attempts (those naming it)."""
    start = datetime.fromisoformat(use["started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(use["ended_at"].replace("Z", "+00:00")) if use["ended_at"] else window_end
    params = {"deployment": use["deployment"], "start": start, "end": end, "use": use["use_id"]}
    modes = dict(store.query(
        f"SELECT toString(mode), count() FROM match_events FINAL WHERE deployment = %(deployment)s AND {OF_USE}"
        " GROUP BY mode", params))
    acted = read_acted_verdicts(store, start, end, use["deployment"], use=use["use_id"])
    [compliance] = two_person_compliance(acted, [use["deployment"]])
    attempts = store.query("SELECT count(), countIf(outcome != 'acquired') FROM acquisitions FINAL"
                           " WHERE deployment = %(deployment)s AND use_id = %(use)s", params)
    total, failed = attempts[0] if attempts else (0, 0)
    return {"events": {m: int(n) for m, n in modes.items()}, "two_person": compliance.to_dict(),
            "acquisition_attempts": int(total), "acquisition_failures": int(failed)}
