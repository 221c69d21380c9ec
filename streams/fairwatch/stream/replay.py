"""File replay: JSONL match events and outcomes through the worker's own batch step, no Kafka.

The same :class:`~fairwatch.stream.processor.BatchProcessor` and :class:`~fairwatch.store.sink.ClickHouseSink`
as the live worker, with the join state in a dict instead of a changelog table, so a replay and
the live path give the same counts for the same records. A bad line is reported with its line
number and reason (and stored in ``dead_letters``) and the replay goes on.

Consecutive lines are handed to the processor as one batch envelope when the contract's C-speed
decoder takes them all as valid (:func:`~fairwatch.contracts.envelopes.decode_valid_batch`), as a
producer's envelopes reach the worker; any chunk it does not take, and every line with a
backslash escape, goes line by line through the full decoder, so a refused line is named by its
own line number and reason as before. A record refused later (by the join) inside an envelope is
reported and stored with its own line, as if it had come alone.

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

from fairwatch.contracts.envelopes import decode_valid_batch
from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.records import MAX_MESSAGE_BYTES
from fairwatch.contracts.topics import ACQUISITIONS, MATCH_EVENTS, USES, VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.core.join import EventState
from fairwatch.store.clickhouse import Store
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.intake import Intake, write_intake
from fairwatch.stream.input_verification import InputVerifier
from fairwatch.stream.processor import RECORD_KINDS, BatchProcessor, DeadLetter, RawMessage

REPLAY_PARTITION = 0  # a file has one partition; its line numbers are the offsets
CHUNK_LINES = 2_000  # lines per envelope handed to the processor
_ENVELOPE_HEAD = b'{"batch_version":1,"bucket":0,"partitions":1,"records":['
_ENVELOPE_TAIL = b"]}"
CHUNK_BYTES = MAX_MESSAGE_BYTES - len(_ENVELOPE_HEAD) - len(_ENVELOPE_TAIL) - CHUNK_LINES  # commas


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
        self.processor.state_objects = True
        self.state: dict[str, EventState] = {}
        self.report, self.progress, self.on_reject = report, progress, on_reject
        # id of an envelope message -> its lines (line numbers, bytes), to name a refused record's line
        self.chunks: dict[int, tuple[list[int], list[bytes]]] = {}

    def flush(self, batch: list[RawMessage], lines: int | None = None) -> None:
        result = self.processor.process(batch, lambda event_id, partition: self.state.get(event_id))
        if self.chunks and result.dead_letters:
            result.dead_letters[:] = [self._as_line(letter) for letter in result.dead_letters]
            result.sink.dead_letters[:] = [letter.to_row() for letter in result.dead_letters]
        self.chunks.clear()
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
        self.progress(len(batch) if lines is None else lines)

    def _as_line(self, letter: DeadLetter) -> DeadLetter:
        """A record refused inside an envelope of replayed lines, as if its line had come alone."""
        chunk = self.chunks.get(id(letter.message))
        if chunk is None or letter.record_index is None:
            return letter
        numbers, lines = chunk
        message = letter.message
        alone = RawMessage(message.kind, message.topic, message.partition, numbers[letter.record_index], None,
                           lines[letter.record_index])
        return DeadLetter(alone, letter.rejection, letter.rejected_at)


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


def messages_of(path: Path, kind: str, record_kind: str, chunks: dict[int, tuple[list[int], list[bytes]]]
                ) -> Iterator[tuple[RawMessage, int]]:
    """The file's lines as messages, in order, each with the lines it holds: envelopes of
    consecutive lines the fast decoder takes whole (noted in ``chunks`` under the message's id),
    single lines otherwise."""
    numbers: list[int] = []
    texts: list[bytes] = []
    size = 0

    def release() -> Iterator[tuple[RawMessage, int]]:
        if not numbers:
            return
        envelope = _ENVELOPE_HEAD + b",".join(texts) + _ENVELOPE_TAIL
        if len(numbers) > 1 and decode_valid_batch(envelope, record_kind) is not None:
            message = RawMessage(kind, str(path), REPLAY_PARTITION, numbers[0], None, envelope)
            chunks[id(message)] = (list(numbers), list(texts))
            yield message, len(numbers)
        else:
            for number, text in zip(numbers, texts):
                yield RawMessage(kind, str(path), REPLAY_PARTITION, number, None, text), 1
        numbers.clear()
        texts.clear()

    for single in lines_of(path, kind):
        line = single.value
        if b"\\" in line or len(line) > CHUNK_BYTES // 4:
            yield from release()
            size = 0
            yield single, 1
            continue
        if len(numbers) >= CHUNK_LINES or size + len(line) > CHUNK_BYTES:
            yield from release()
            size = 0
        numbers.append(single.offset)
        texts.append(line)
        size += len(line)
    yield from release()


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
    acquisitions: Path | None = None,
    uses: Path | None = None,
) -> ReplayReport:
    """Replay two JSONL files into ``store``; events first, then outcomes (order does not matter),
    then the acquisition attempts of ``acquisitions`` and the use records of ``uses`` when given
    (:mod:`fairwatch.stream.intake`).

    With ``policies`` (deployment -> :class:`~fairwatch.detect.policy.Policy`), the detection cycle then
    runs once over the loaded history, as of the end of its event time, like the live worker's. With
    a ``keyring``, lines of deployments that require signatures are refused (``unsigned``).
    """
    migrate(store)
    report = ReplayReport()
    loader = ReplayLoader(store, config, report, progress, on_reject, keyring)
    for path, kind in ((events, MATCH_EVENTS), (outcomes, VERIFIED_OUTCOMES)):
        batch: list[RawMessage] = []
        held = 0
        # a keyring's rules judge whole messages: each line stays its own message there
        messages = ((m, 1) for m in lines_of(path, kind)) if keyring is not None else messages_of(
            path, kind, RECORD_KINDS[kind], loader.chunks)
        for message, lines in messages:
            report.lines[kind] += lines
            batch.append(message)
            held += lines
            if held >= batch_size:
                loader.flush(batch, held)
                batch, held = [], 0
        if batch:
            loader.flush(batch, held)
    for path, topic in ((acquisitions, ACQUISITIONS), (uses, USES)):
        if path is None:
            continue
        intake = Intake(topic, keyring)
        batch = []
        for message in [*lines_of(path, topic), None]:
            if message is not None:
                report.lines[topic] += 1
                batch.append(message)
            if batch and (message is None or len(batch) >= batch_size):
                rows, letters = intake.take(batch)
                write_intake(store, rows)
                for letter in letters:
                    report.rejected.append((letter.message.topic, letter.message.offset, str(letter.rejection)))
                    on_reject(letter)
                progress(len(batch))
                batch = []
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
