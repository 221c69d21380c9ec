"""Snapshots of the estimates written for the boards and the audit trail."""

from __future__ import annotations

from datetime import datetime, timezone

from fairwatch.audit.estimates import window_metrics
from fairwatch.audit.window import resolve_window
from fairwatch.core.config import CoreConfig
from fairwatch.store.auditlog import append_records
from fairwatch.store.clickhouse import Store

SNAPSHOT_WINDOWS = (3600, 86400)
SNAPSHOT_COLUMNS = (
    "snapshot_at", "window_seconds", "deployment", "algorithm", "mode", "attribute", "group_label", "impostor",
    "false_match", "genuine", "false_non_match", "fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high",
    "status",
)
DIFFERENTIAL_COLUMNS = ("snapshot_at", "window_seconds", "deployment", "algorithm", "mode", "attribute", "metric",
                        "rate", "value", "low", "high", "status", "groups", "max_group", "min_group")


def write_differential_snapshots(store: Store, config: CoreConfig, now: datetime | None = None,
                                 windows: tuple[int, ...] = SNAPSHOT_WINDOWS) -> int:
    """Write the differentials of the trailing windows as seen now (beside ``write_snapshots``).

    Same windows, same ``now`` rounding and same core as
    :func:`write_snapshots`, so both tables describe one snapshot.
    """
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    rows = []
    for seconds in windows:
        window = resolve_window(f"{seconds}s", None, None, config.bucket_seconds, now)
        frame, _ = window_metrics(store, window, config, with_labels=False, with_reviews=False)
        for d in frame.differentials:
            rows.append((now, seconds, *d.scope, d.metric, d.rate, d.value, d.low, d.high, str(d.status), d.groups,
                         d.max_group, d.min_group))
    return store.insert("differential_snapshots", DIFFERENTIAL_COLUMNS, rows)


def write_snapshots(store: Store, config: CoreConfig, now: datetime | None = None,
                    windows: tuple[int, ...] = SNAPSHOT_WINDOWS) -> int:
    """Write the per-group estimates of the trailing windows as seen now; return rows written."""
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    rows = []
    for seconds in windows:
        window = resolve_window(f"{seconds}s", None, None, config.bucket_seconds, now)
        _, document = window_metrics(store, window, config, with_labels=False, with_reviews=False)
        for g in document["groups"]:
            rows.append((now, seconds, g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"],
                         *(float(g[f]) for f in ("impostor", "false_match", "genuine", "false_non_match")),
                         *(g[f] for f in ("fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high")), g["status"]))
    written = store.insert("estimate_snapshots", SNAPSHOT_COLUMNS, rows)
    # The same rows go to the tamper-evident log (after the table: a crash in between leaves a
    # snapshot without its audit record, never an audit record of a snapshot that was not stored).
    append_records(store, "snapshot", [dict(zip(SNAPSHOT_COLUMNS, row)) for row in rows], now=now)
    return written
