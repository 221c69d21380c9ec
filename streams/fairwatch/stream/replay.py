"""File replay: JSONL match events and outcomes through the worker's own batch step, no Kafka.

The same :class:`~fairwatch.stream.processor.BatchProcessor` and :class:`~fairwatch.store.sink.ClickHouseSink`
as the live worker, with the join state in a dict instead of a changelog table, so a replay and
the live path give the same counts for the same records. A bad line is reported with its line
number and reason (and stored in ``dead_letters``) and the replay goes on.

With a keyring (``FAIRWATCH_KEYRING``) the worker's signature rules apply too. A line carries no
Kafka headers, hence no signature: file replay is for deployments whose keyring entry does not
require signatures; the lines of one that does are refused (``unsigned``) as the worker would.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.topics import MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.store.clickhouse import Store
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.input_verification import InputVerifier
from fairwatch.stream.processor import BatchProcessor, DeadLetter, RawMessage

REPLAY_PARTITION = 0  # a file has one partition; its line numbers are the offsets


@dataclass
class ReplayReport:
    lines: Counter = field(default_factory=Counter)  # kind -> lines read
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, reason)
    labeled: int = 0
    alerts: list = field(default_factory=list)  # incidents opened or resolved by the detection pass
    coverage: list = field(default_factory=list)  # per policy: the groups it watched (detect.coverage)
    mismatches: list = field(default_factory=list)  # per policy matching nothing stored: why (PolicyMismatch)


class ReplayLoader:
    """The worker's batch step over replayed lines: join state in a dict, rejections reported."""

    def __init__(self, store: Store, config: CoreConfig, report: ReplayReport,
                 progress: Callable[[int], None] = lambda lines: None,
                 on_reject: Callable[[DeadLetter], None] = lambda letter: None, keyring: Keyring | None = None):
        verifier = InputVerifier(keyring) if keyring is not None else None
        self.processor, self.sink = BatchProcessor(config, verifier=verifier), ClickHouseSink(store, config)
        self.state: dict[str, bytes] = {}
        self.report, self.progress, self.on_reject = report, progress, on_reject

    def flush(self, batch: list[RawMessage]) -> None:
        result = self.processor.process(batch, lambda event_id, partition: self.state.get(event_id))
        self.sink.write(result.sink)
        for event_id, (_, value) in result.state_changes.items():
            if value is None:
                self.state.pop(event_id, None)
            else:
                self.state[event_id] = value
        for letter in result.dead_letters:
            self.report.rejected.append((letter.message.topic, letter.message.offset, str(letter.rejection)))
            self.on_reject(letter)
        self.report.labeled += result.paired
        self.progress(len(batch))


def match_policies(store: Store, policies: dict, report: ReplayReport) -> dict:
    """The policies that match what is stored; each one that matches nothing is reported in
    ``report.mismatches`` (never a silent pass) and the others still run."""
    from fairwatch.detect.coverage import PolicyMismatch, policy_coverage

    others = {p.deployment for p in policies.values()}
    matched = {}
    for name, policy in policies.items():
        try:
            report.coverage.append(policy_coverage(store, policy, others - {policy.deployment}))
            matched[name] = policy
        except PolicyMismatch as exc:
            report.mismatches.append(str(exc))
    return matched


def lines_of(path: Path, kind: str) -> Iterator[RawMessage]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield RawMessage(kind, str(path), REPLAY_PARTITION, number, None, line)


def replay(
    store: Store,
    events: Path,
    outcomes: Path,
    config: CoreConfig = CoreConfig(),
    batch_size: int = 10_000,
    progress: Callable[[int], None] = lambda lines: None,
    on_reject: Callable[[DeadLetter], None] = lambda letter: None,
    policies: dict | None = None,
    delivery=None,
    keyring: Keyring | None = None,
) -> ReplayReport:
    """Replay two JSONL files into ``store``; events first, then outcomes (order does not matter).

    With ``policies`` (deployment -> :class:`~fairwatch.detect.policy.Policy`), the detection cycle then
    runs once over the loaded history, as of the end of its event time, like the live worker's. With
    a ``keyring``, lines of deployments that require signatures are refused (``unsigned``).
    """
    migrate(store)
    report = ReplayReport()
    loader = ReplayLoader(store, config, report, progress, on_reject, keyring)
    for path, kind in ((events, MATCH_EVENTS), (outcomes, VERIFIED_OUTCOMES)):
        batch: list[RawMessage] = []
        for message in lines_of(path, kind):
            report.lines[kind] += 1
            batch.append(message)
            if len(batch) >= batch_size:
                loader.flush(batch)
                batch = []
        if batch:
            loader.flush(batch)
    if policies:
        from fairwatch.detect.cycle import run_detection

        policies = match_policies(store, policies, report)
        rows = store.query("SELECT count(), max(occurred_at) FROM match_events")
        if policies and rows and rows[0][0]:
            # as of the end of the replayed event time, plus the longest resolve spell so that
            # incidents whose condition cleared at the end can resolve
            now = rows[0][1] + timedelta(seconds=config.bucket_seconds + max(p.resolve_after for p in policies.values()))
            report.alerts = run_detection(store, config, policies, delivery, now)
    return report
