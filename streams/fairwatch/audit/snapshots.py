"""Snapshots of the estimates written for the boards and the audit trail."""

from __future__ import annotations

from datetime import datetime, timezone

from fairwatch.core.config import CoreConfig
from fairwatch.store.clickhouse import Store

DIFFERENTIAL_COLUMNS = ("snapshot_at", "window_seconds", "deployment", "algorithm", "mode", "attribute", "metric",
                        "rate", "value", "low", "high", "status", "groups", "max_group", "min_group")


def write_differential_snapshots(store: Store, config: CoreConfig, now: datetime | None = None,
                                 windows: tuple[int, ...] = (3600, 86400)) -> int:
    """Write the differentials of the trailing windows as seen now (beside ``write_snapshots``).

    Same windows, same ``now`` rounding and same core as
    :func:`fairwatch.audit.window.write_snapshots`, so both tables describe one snapshot.
    """
    from fairwatch.audit.window import resolve_window, window_metrics

    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    rows = []
    for seconds in windows:
        window = resolve_window(f"{seconds}s", None, None, config.bucket_seconds, now)
        frame, _ = window_metrics(store, window, config)
        for d in frame.differentials:
            rows.append((now, seconds, *d.scope, d.metric, d.rate, d.value, d.low, d.high, str(d.status), d.groups,
                         d.max_group, d.min_group))
    return store.insert("differential_snapshots", DIFFERENTIAL_COLUMNS, rows)
