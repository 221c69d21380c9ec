"""Replay as of arrival: the live worker's alert timeline, reproduced from its input files.

A plain replay loads everything, then runs one detection cycle: an incident opens at the first
bucket where the complete data alarms. The live worker ran a cycle every few seconds on what had
arrived so far, so its incidents opened where the data *then* alarmed (sex=F at 12:18 live, 12:27
on replay, in the issue that asked for this). Here the files' lines go through the same batch step
in the order, and up to the instants, at which the live store says it ingested them
(``ingested_at``), with a detection cycle every ``cycle_seconds`` of that clock. Then the live
store's incidents and the replay's are compared, and every difference is named with what can
cause it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.topics import MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.detect.incidents import Alert
from fairwatch.store.clickhouse import Store
from fairwatch.store.migrations import migrate
from fairwatch.stream.processor import DeadLetter, RawMessage
from fairwatch.stream.replay import ReplayLoader, ReplayReport, lines_of, match_policies

# why a live incident and a replayed one can differ, said with each difference
CYCLE_PHASE = ("the first cycle that saw the alarm ran on other data: the live worker's cycles ran at instants "
               "the store does not keep, this replay's every {cycle} s from the first arrival, and arrival "
               "times are stored to the second")
NOT_REPRODUCED = ("no incident of this alert here: the live worker ran another policy (or another version of "
                  "it), or its cycles saw data this replay's never did (a record revised or removed later)")
ONLY_HERE = ("the live store has no incident of this alert: the live worker ran another policy, or stopped "
             "before a cycle saw it")


@dataclass
class Difference:
    alert_id: str
    live_opened_at: datetime | None
    replay_opened_at: datetime | None
    cause: str

    def __str__(self) -> str:
        def when(t: datetime | None) -> str:
            return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")

        return f"{self.alert_id}: opened live {when(self.live_opened_at)}, here {when(self.replay_opened_at)}: {self.cause}"


@dataclass
class ArrivalReport:
    cycles: int = 0
    first_arrival: datetime | None = None
    last_arrival: datetime | None = None
    without_arrival: int = 0  # lines the live store has no arrival for (it rejected them, or never got them)
    same: list[Alert] = field(default_factory=list)  # incidents opened at the same bucket, live and here
    differences: list[Difference] = field(default_factory=list)


@dataclass
class LiveRun:
    """What a replay as of arrival needs of a live store, read before the replay opens its own (an
    embedded chDB store is one directory per process at a time)."""

    event_times: dict[str, datetime]  # event_id -> when the live store ingested it
    outcome_times: dict[tuple[str, int], datetime]  # (event_id, revision) -> the same
    alerts: list[Alert]


def read_live_run(live: Store) -> LiveRun:
    from fairwatch.detect.reads import read_alerts

    events = {event_id: at for event_id, at in
              live.query("SELECT event_id, min(ingested_at) FROM match_events GROUP BY event_id")}
    outcomes = {(event_id, int(revision)): at for event_id, revision, at in
                live.query("SELECT event_id, revision, min(ingested_at) FROM verified_outcomes"
                           " GROUP BY event_id, revision")}
    return LiveRun(events, outcomes, read_alerts(live))


def _arrival(message: RawMessage, events: dict, outcomes: dict) -> datetime | None:
    try:
        document = json.loads(message.value)
        if message.topic == MATCH_EVENTS:
            return events.get(document["event_id"])
        return outcomes.get((document["event_id"], int(document.get("revision", 0))))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # not a record: the batch step rejects it, wherever it goes


def replay_as_of_arrival(store: Store, live: LiveRun, events: Path, outcomes: Path, policies: dict,
                         config: CoreConfig = CoreConfig(), cycle_seconds: int = 60,
                         progress: Callable[[int], None] = lambda lines: None,
                         on_reject: Callable[[DeadLetter], None] = lambda letter: None,
                         keyring: Keyring | None = None) -> tuple[ReplayReport, ArrivalReport]:
    """Load the files into ``store`` in the live run's arrival order, a detection cycle every
    ``cycle_seconds`` of arrival time, and compare the incidents with the live run's."""
    if cycle_seconds < 1:
        raise ValueError(f"cycle_seconds must be at least 1, got {cycle_seconds}")
    from fairwatch.detect.cycle import run_detection
    from fairwatch.detect.reads import read_alerts

    migrate(store)
    report, arrival = ReplayReport(), ArrivalReport()
    event_times, outcome_times = live.event_times, live.outcome_times
    timed: list[tuple[datetime, int, RawMessage]] = []
    untimed: list[RawMessage] = []
    for path, kind in ((events, MATCH_EVENTS), (outcomes, VERIFIED_OUTCOMES)):
        for message in lines_of(path, kind):
            report.lines[kind] += 1
            at = _arrival(message, event_times, outcome_times)
            if at is None:
                untimed.append(message)
            else:
                timed.append((at, len(timed), message))
    arrival.without_arrival = len(untimed)
    timed.sort(key=lambda item: (item[0], item[1]))  # by arrival, then events before their outcomes
    loader = ReplayLoader(store, config, report, progress, on_reject, keyring)
    if untimed:  # never counted live: they go first, and are rejected or counted as a plain replay would
        loader.flush(untimed)
    if not timed:
        return report, arrival
    arrival.first_arrival, arrival.last_arrival = timed[0][0], timed[-1][0]
    step = timedelta(seconds=cycle_seconds)
    cycle_at, i, matched = arrival.first_arrival, 0, None
    while i < len(timed) or cycle_at <= arrival.last_arrival:
        batch = []
        while i < len(timed) and timed[i][0] <= cycle_at:
            batch.append(timed[i][2])
            i += 1
        if batch:
            loader.flush(batch)
        if matched is None:
            matched = match_policies(store, policies, report) if policies else {}
        if matched:
            report.alerts += run_detection(store, config, matched, None, cycle_at)
            arrival.cycles += 1
        cycle_at += step
    if matched:
        deployments = {p.deployment for p in matched.values()}
        mine = [a for a in read_alerts(store) if a.deployment in deployments]
        theirs = [a for a in live.alerts if a.deployment in deployments]
        arrival.same, arrival.differences = compare_incidents(theirs, mine, cycle_seconds)
    return report, arrival


def compare_incidents(live: list[Alert], replayed: list[Alert], cycle_seconds: int
                      ) -> tuple[list[Alert], list[Difference]]:
    """Incidents opened at the same bucket by both, and a named difference for every other one
    (same alert opened at another time, or an alert only one side has)."""
    same: list[Alert] = []
    differences: list[Difference] = []
    ids = sorted({a.id for a in live} | {a.id for a in replayed})
    for alert_id in ids:
        theirs = sorted(a.opened_at for a in live if a.id == alert_id)
        mine = sorted(a.opened_at for a in replayed if a.id == alert_id)
        common = sorted(set(theirs) & set(mine))
        same += [a for a in replayed if a.id == alert_id and a.opened_at in common]
        theirs = [t for t in theirs if t not in common]
        mine = [t for t in mine if t not in common]
        for live_at, replay_at in zip(theirs, mine):  # the same alert, opened at another bucket
            differences.append(Difference(alert_id, live_at, replay_at, CYCLE_PHASE.format(cycle=cycle_seconds)))
        differences += [Difference(alert_id, t, None, NOT_REPRODUCED) for t in theirs[len(mine):]]
        differences += [Difference(alert_id, None, t, ONLY_HERE) for t in mine[len(theirs):]]
    return same, differences
