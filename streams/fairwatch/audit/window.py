"""Per-group estimates for a window, recomputed from the stored bucket counts with the core's math."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from fairwatch.contracts.records import ContractError, format_timestamp, parse_timestamp
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.layout import COLUMNS, GroupKey
from fairwatch.store.auditlog import append_records
from fairwatch.store.clickhouse import Store

GROUP_FIELDS = (
    "deployment", "algorithm", "mode", "attribute", "group", "impostor", "false_match", "genuine", "false_non_match",
    "fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high", "status",
)
DIFFERENTIAL_FIELDS = ("deployment", "algorithm", "mode", "attribute", "metric", "rate", "value", "low", "high", "status")
DIFFERENTIAL_METRICS = ("max_min_ratio", "max_geomean", "fdr", "ir", "garbe")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class WindowError(ValueError):
    """A window that cannot be read; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, str]:
        return {"from": format_timestamp(self.start), "to": format_timestamp(self.end)}


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise WindowError(f"--window {text!r}: write a positive duration such as 15m, 1h, 24h or 7d")
    return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def resolve_window(
    window: str | None, start: str | None, end: str | None, bucket_seconds: int, now: datetime | None = None
) -> Window:
    """`--window` back from now, or `--from`/`--to` (RFC 3339); widened to whole buckets.

    Counts are kept per event-time bucket, so a window reports the buckets it touches; the
    window returned is the one the numbers cover.
    """
    if window and (start or end):
        raise WindowError("give either --window or --from/--to, not both")

    def parse(value: str, name: str) -> datetime:
        try:
            return parse_timestamp(value, name)
        except ContractError as exc:
            raise WindowError(f"{name}: {exc.rejection.message}") from None

    now = now or datetime.now(timezone.utc)
    if start or end:
        if not (start and end):
            raise WindowError("--from and --to go together")
        lo, hi = parse(start, "--from"), parse(end, "--to")
    else:
        hi = now
        lo = hi - parse_duration(window or "1h")
    if lo >= hi:
        raise WindowError(f"--from {format_timestamp(lo)} is not before --to {format_timestamp(hi)}")
    lo_s = math.floor(lo.timestamp() / bucket_seconds) * bucket_seconds
    hi_s = math.ceil(hi.timestamp() / bucket_seconds) * bucket_seconds
    return Window(datetime.fromtimestamp(lo_s, timezone.utc), datetime.fromtimestamp(hi_s, timezone.utc))


def scope_filter(deployment: str | None, algorithm: str | None) -> tuple[str, dict[str, Any]]:
    """`` AND deployment = ... AND algorithm = ...`` for the scopes given, and its parameters."""
    conditions, params = [], {}
    if deployment:
        conditions.append("deployment = %(deployment)s")
        params["deployment"] = deployment
    if algorithm:
        conditions.append("algorithm = %(algorithm)s")
        params["algorithm"] = algorithm
    return "".join(f" AND {c}" for c in conditions), params


def read_counts(
    store: Store, window: Window, deployment: str | None = None, algorithm: str | None = None
) -> tuple[list[GroupKey], np.ndarray]:
    """Summed counts per group over the window's buckets (FINAL: the newest recompute of each)."""
    scope, params = scope_filter(deployment, algorithm)
    params.update(start=window.start, end=window.end)
    sums = ", ".join(f"sum({c})" for c in COLUMNS)
    rows = store.query(
        f"SELECT deployment, algorithm, toString(mode), attribute, group_label, {sums} FROM group_counts FINAL"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{scope}"
        " GROUP BY deployment, algorithm, mode, attribute, group_label"
        " ORDER BY deployment, algorithm, mode, attribute, group_label",
        params,
    )
    keys = [GroupKey(*row[:5]) for row in rows]
    values = np.array([row[5:] for row in rows], dtype=np.float64).reshape(len(rows), len(COLUMNS))
    return keys, values


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_document(frame: GroupFrame, window: Window) -> dict[str, Any]:
    """The `fairwatch metrics --json` document: window, group rows, differential rows."""
    groups = [{f: _json_number(row[f]) for f in GROUP_FIELDS} for row in frame.to_records()]
    differentials = [
        {f: _json_number(row[f]) for f in DIFFERENTIAL_FIELDS}
        for row in frame.to_dict()["differentials"]
        if row["metric"] in DIFFERENTIAL_METRICS
    ]
    return {"window": window.to_dict(), "groups": groups, "differentials": differentials}


def window_metrics(
    store: Store, window: Window, config: CoreConfig, deployment: str | None = None, algorithm: str | None = None
) -> tuple[GroupFrame, dict[str, Any]]:
    keys, rows = read_counts(store, window, deployment, algorithm)
    frame = GroupFrame.from_counts(keys, rows, config)
    return frame, metrics_document(frame, window)


SNAPSHOT_WINDOWS = (3600, 86400)
SNAPSHOT_COLUMNS = (
    "snapshot_at", "window_seconds", "deployment", "algorithm", "mode", "attribute", "group_label", "impostor",
    "false_match", "genuine", "false_non_match", "fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high",
    "status",
)


def write_snapshots(store: Store, config: CoreConfig, now: datetime | None = None,
                    windows: tuple[int, ...] = SNAPSHOT_WINDOWS) -> int:
    """Write the per-group estimates of the trailing windows as seen now; return rows written."""
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    rows = []
    for seconds in windows:
        window = resolve_window(f"{seconds}s", None, None, config.bucket_seconds, now)
        _, document = window_metrics(store, window, config)
        for g in document["groups"]:
            rows.append((now, seconds, g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"],
                         *(float(g[f]) for f in ("impostor", "false_match", "genuine", "false_non_match")),
                         *(g[f] for f in ("fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high")), g["status"]))
    written = store.insert("estimate_snapshots", SNAPSHOT_COLUMNS, rows)
    # The same rows go to the tamper-evident log (after the table: a crash in between leaves a
    # snapshot without its audit record, never an audit record of a snapshot that was not stored).
    append_records(store, "snapshot", [dict(zip(SNAPSHOT_COLUMNS, row)) for row in rows], now=now)
    return written
