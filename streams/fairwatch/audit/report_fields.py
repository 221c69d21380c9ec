"""The names the report's modules share, each defined once: the keys of a row's scope, the rates,
the alert fields a report reads and exports."""

from __future__ import annotations

from fairwatch.core.differentials import RATES
from fairwatch.core.layout import GroupKey

__all__ = ["ALERT_FIELDS", "RATES", "SCOPE", "SET_SCOPE"]

SCOPE = GroupKey._fields[:3]  # deployment, algorithm, mode: one group table, one status family
SET_SCOPE = GroupKey._fields[:4]  # and the attribute: one attribute set, one differential per metric and rate
# the columns of the alerts a report reads (in this order) and exports; no alert id or link
ALERT_FIELDS = ("type", "severity", "deployment", "algorithm", "group", "metric", "value", "low", "high", "baseline",
                "detector", "state", "opened_at", "resolved_at")
