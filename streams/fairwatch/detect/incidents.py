"""Alerts and incidents: one incident per condition, opened on evidence, resolved after a quiet spell.

An :class:`Alert` is the record of ``schemas/alert.schema.json``. Its ``id`` names the
*condition* (deployment / algorithm / type / metric / group), so it is stable: an incident is
``(id, opened_at)``, and a condition that fires again after it was resolved opens a new incident
with the same id and a later ``opened_at`` (Alertmanager does the same with a label set).

:class:`IncidentTracker` turns observations of conditions into incident transitions with
hysteresis: a condition *opens* an incident when its detector alarms (strong evidence), and the
incident *resolves* only after the condition has been *clear* (a weaker, separate criterion such
as "the rate is back inside its band", with no new alarm) for ``resolve_after`` seconds without
interruption. Alarms while an incident is open update it (dedup), so a flapping condition holds
one incident instead of paging at every flap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from fairwatch.contracts.records import format_timestamp

__all__ = ["Alert", "IncidentTracker", "Transition", "alert_id", "ALERT_COLUMNS", "SEVERITY_RANK"]

# worst last; boards sort by this rank, never by the names ("critical" < "info" < "warning" as text)
SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}

ALERT_COLUMNS = (
    "id", "type", "severity", "deployment", "algorithm", "group_label", "metric", "value_estimate", "value_low",
    "value_high", "baseline", "detector", "evidence_n", "evidence_e_value", "evidence_statistic", "state",
    "opened_at", "resolved_at", "runbook_url", "dashboard_url", "version",
)


def alert_id(deployment: str, algorithm: str, type_: str, metric: str, group: str) -> str:
    """The condition's id, e.g. ``gate-a/algo-v1/error_rate_drift/fmr/race=Black``.

    >>> alert_id("gate-a", "algo-v1", "error_rate_drift", "fmr", "race=Black")
    'gate-a/algo-v1/error_rate_drift/fmr/race=Black'
    """
    return "/".join((deployment, algorithm, type_, metric, group)).replace(" ", "_")


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class Alert:
    """One incident, shaped as ``schemas/alert.schema.json`` by :meth:`to_record`.

    ``evidence`` holds ``n`` and optionally ``e_value`` / ``statistic`` plus detector details
    (e.g. ``threshold``); ``mode`` and ``routing`` are not part of the record (routing labels
    go to Alertmanager).
    """

    id: str
    type: str
    severity: str
    deployment: str
    algorithm: str
    group: str
    metric: str
    estimate: float | None
    low: float | None
    high: float | None
    baseline: float | None
    detector: str
    evidence: dict[str, Any]
    state: str
    opened_at: datetime
    resolved_at: datetime | None
    runbook_url: str
    dashboard_url: str
    routing: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def incident(self) -> tuple[str, datetime]:
        return self.id, self.opened_at

    def to_record(self) -> dict[str, Any]:
        evidence = {"n": float(self.evidence.get("n", 0)), **{k: _number(v) if isinstance(v, float) else v
                                                                for k, v in self.evidence.items() if k != "n"}}
        for key in ("e_value", "statistic"):
            evidence.setdefault(key, None)
        return {
            "id": self.id, "type": self.type, "severity": self.severity, "deployment": self.deployment,
            "algorithm": self.algorithm, "group": self.group, "metric": self.metric,
            "value": {"estimate": _number(self.estimate), "low": _number(self.low), "high": _number(self.high)},
            "baseline": _number(self.baseline), "detector": self.detector, "evidence": evidence,
            "state": self.state, "opened_at": format_timestamp(self.opened_at),
            "resolved_at": format_timestamp(self.resolved_at) if self.resolved_at else None,
            "runbook_url": self.runbook_url or None, "dashboard_url": self.dashboard_url or None,
        }

    def to_row(self, version: int) -> tuple:
        """A row of the ClickHouse ``alerts`` table (:data:`ALERT_COLUMNS`)."""
        return (
            self.id, self.type, self.severity, self.deployment, self.algorithm, self.group, self.metric,
            _number(self.estimate), _number(self.low), _number(self.high), _number(self.baseline), self.detector,
            float(self.evidence.get("n", 0)), _number(self.evidence.get("e_value")),
            _number(self.evidence.get("statistic")), self.state, self.opened_at, self.resolved_at, self.runbook_url,
            self.dashboard_url, version,
        )

    @classmethod
    def from_row(cls, row: tuple) -> Alert:
        values = dict(zip(ALERT_COLUMNS, row))
        evidence = {"n": values["evidence_n"], "e_value": values["evidence_e_value"],
                    "statistic": values["evidence_statistic"]}
        return cls(
            id=values["id"], type=values["type"], severity=values["severity"], deployment=values["deployment"],
            algorithm=values["algorithm"], group=values["group_label"], metric=values["metric"],
            estimate=values["value_estimate"], low=values["value_low"], high=values["value_high"],
            baseline=values["baseline"], detector=values["detector"], evidence=evidence, state=values["state"],
            opened_at=values["opened_at"], resolved_at=values["resolved_at"], runbook_url=values["runbook_url"],
            dashboard_url=values["dashboard_url"],
        )


@dataclass(frozen=True)
class Transition:
    """``kind`` is ``opened``, ``updated`` (new evidence on an open incident) or ``resolved``."""

    kind: str
    alert: Alert


@dataclass
class _Open:
    alert: Alert
    clear_since: datetime | None = None


class IncidentTracker:
    """Incidents from observations of conditions, with dedup and hysteresis.

    Parameters
    ----------
    resolve_after
        Seconds a condition must stay clear, without a new alarm, before its incident resolves.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> def at(minute): return datetime(2026, 11, 25, 8, minute, tzinfo=timezone.utc)
    >>> template = Alert("c1", "error_rate_drift", "critical", "gate-a", "algo-v1", "race=Black", "fmr",
    ...                  0.003, 0.002, 0.004, 0.001, "sr_band", {"n": 1000}, "firing", at(0), None,
    ...                  "https://runbook.example", "https://dashboard.example")
    >>> tracker = IncidentTracker(resolve_after=600)
    >>> [t.kind for t in tracker.observe(template, at(1), alarm=True, clear=False)]
    ['opened']

    Flapping (alarm, clear, alarm, ...) every minute keeps the one incident open:

    >>> kinds = [t.kind for m in range(2, 20) for t in tracker.observe(template, at(m), m % 2 == 0, m % 2 == 1)]
    >>> kinds.count("opened"), kinds.count("resolved")
    (0, 0)

    Ten quiet minutes resolve it, stamped when the condition first cleared plus ``resolve_after``:

    >>> [(t.kind, t.alert.resolved_at.minute) for m in range(20, 35)
    ...  for t in tracker.observe(template, at(m), alarm=False, clear=True)]
    [('resolved', 29)]
    """

    def __init__(self, resolve_after: float):
        if resolve_after < 0:
            raise ValueError(f"resolve_after must be >= 0, got {resolve_after}")
        self.resolve_after = timedelta(seconds=resolve_after)
        self.open: dict[str, _Open] = {}

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Resume from stored incidents: the firing ones are open again (after a restart)."""
        for alert in alerts:
            if alert.state == "firing":
                self.open[alert.id] = _Open(alert)

    def observe(self, alert: Alert, at: datetime, alarm: bool, clear: bool) -> list[Transition]:
        """One observation of the condition ``alert.id`` at ``at``.

        ``alert`` carries the current value and evidence; ``alarm``: its detector alarmed;
        ``clear``: the resolution criterion holds (ignored when ``alarm``).
        """
        current = self.open.get(alert.id)
        if current is None:
            if not alarm:
                return []
            opened = replace(alert, state="firing", opened_at=at, resolved_at=None)
            self.open[alert.id] = _Open(opened)
            return [Transition("opened", opened)]
        if alarm:
            current.clear_since = None
            current.alert = replace(alert, state="firing", opened_at=current.alert.opened_at, resolved_at=None)
            return [Transition("updated", current.alert)]
        if not clear:
            current.clear_since = None
            return []
        if current.clear_since is None:
            current.clear_since = at
        if at - current.clear_since >= self.resolve_after:
            resolved = replace(current.alert, state="resolved", resolved_at=current.clear_since + self.resolve_after)
            del self.open[alert.id]
            return [Transition("resolved", resolved)]
        return []


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
