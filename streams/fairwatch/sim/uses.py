"""Simulated uses (sessions): every deployment runs uses back to back, each ``uses.hours`` long, from
the scenario's start to its end; each is sent when it starts and again, with ``ended_at``, when it
ends (the use records of schemas/use_record.schema.json), and the acquisition attempts made during
one name it (:mod:`fairwatch.sim.acquisitions`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from fairwatch.contracts.records import format_timestamp
from fairwatch.sim.scenario import Scenario

__all__ = ["use_at", "use_lines", "use_periods"]


def use_periods(scenario: Scenario) -> list[tuple[str, str, datetime, datetime]]:
    """(use_id, deployment, start, end) of every use, in time order per deployment."""
    spec = scenario.uses
    if spec is None:
        return []
    step = timedelta(hours=spec.hours)
    periods = []
    for deployment in scenario.deployments:
        start, k = scenario.start, 0
        while start < scenario.end:
            end = min(start + step, scenario.end)
            periods.append((f"{scenario.name}-{deployment.name}-use-{k:04d}", deployment.name, start, end))
            start, k = end, k + 1
    return periods


def use_at(scenario: Scenario, deployment: str, moment: datetime) -> str | None:
    """The id of ``deployment``'s use running at ``moment`` (None outside every use)."""
    spec = scenario.uses
    if spec is None or not scenario.start <= moment < scenario.end:
        return None
    k = int((moment - scenario.start) / timedelta(hours=spec.hours))
    return f"{scenario.name}-{deployment}-use-{k:04d}"


def use_lines(scenario: Scenario) -> list[bytes]:
    """Every use's start record, then every use's end record (as a site sends them)."""
    spec = scenario.uses
    starts, ends = [], []
    for use_id, deployment, start, end in use_periods(scenario):
        record = {"use_id": use_id, "deployment": deployment, "started_at": format_timestamp(start),
                  "reference_database": spec.reference_database}
        for name in ("reference_version", "operator_role"):
            if getattr(spec, name) is not None:
                record[name] = getattr(spec, name)
        starts.append(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        ends.append(json.dumps({**record, "ended_at": format_timestamp(end)}, sort_keys=True,
                               separators=(",", ":")).encode())
    return starts + ends
