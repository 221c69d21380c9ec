"""Records that need no join, in: decode, refuse with a reason, write (the worker's and file replay's step).

Acquisition attempts and use records are stored as they come: each valid one becomes a row of its
table, each refused one a dead letter with its reason. A record delivered again is stored once (the
table replaces it by its id); one whose id was already taken with other content (for a use, other
than the ``ended_at`` its end adds), within what one intake has seen, is refused
(``conflicting_duplicate``), since keeping either would be a guess. With a keyring, the records of a
deployment whose entry requires signatures are refused (``unsigned``): signatures cover match events
and verdicts, not yet these.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from fairwatch.contracts.acquisition import Acquisition, decode_acquisition
from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.records import RejectCode, Rejection
from fairwatch.contracts.topics import ACQUISITIONS, USES
from fairwatch.contracts.uses import UseRecord, decode_use
from fairwatch.store.acquisitions import ACQUISITION_COLUMNS, acquisition_columns
from fairwatch.store.clickhouse import Store
from fairwatch.store.sink import DEAD_LETTER_COLUMNS
from fairwatch.store.uses import USE_COLUMNS, use_columns
from fairwatch.stream.processor import DeadLetter, RawMessage

__all__ = ["INTAKES", "Intake", "IntakeKind", "IntakeRows", "write_intake"]

# (table, its columns, their data a column at a time, dead-letter columns)
IntakeRows = tuple[str, tuple[str, ...], list[list], list[list]]


@dataclass(frozen=True)
class IntakeKind:
    table: str
    columns: tuple[str, ...]
    decode: Callable[[bytes], Any]
    record_type: type
    id_field: str
    identity: Callable[[Any], bytes]  # what two deliveries of one id must agree on
    columns_of: Callable[[list, datetime], list[list]]


INTAKES = {
    ACQUISITIONS: IntakeKind("acquisitions", ACQUISITION_COLUMNS, decode_acquisition, Acquisition, "attempt_id",
                             Acquisition.to_json, acquisition_columns),
    USES: IntakeKind("uses", USE_COLUMNS, decode_use, UseRecord, "use_id", UseRecord.identity, use_columns),
}


class Intake:
    """Judges one topic's messages batch by batch; remembers each id's content to refuse conflicts."""

    def __init__(self, topic: str, keyring: Keyring | Callable[[], Keyring] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        # a keyring, or what gives the current one (the worker's KeyringFile, read again when it changes)
        self.kind, self.keyring, self.clock = INTAKES[topic], keyring, clock
        self.seen: dict[str, bytes] = {}  # id -> digest of its identity

    def take(self, messages: Iterable[RawMessage]) -> tuple[IntakeRows, list[DeadLetter]]:
        """The rows to write for ``messages`` (ready for :func:`write_intake`) and their dead letters."""
        kind = self.kind
        now = self.clock().replace(microsecond=0)
        valid: list = []
        letters: list[DeadLetter] = []
        for message in messages:
            found = kind.decode(message.value)
            if isinstance(found, kind.record_type):
                found = self._judge(found)
            if isinstance(found, Rejection):
                letters.append(DeadLetter(message, found, now))
                continue
            key = getattr(found, kind.id_field)
            digest = hashlib.blake2b(kind.identity(found), digest_size=16).digest()
            if self.seen.setdefault(key, digest) != digest:
                letters.append(DeadLetter(message, Rejection(
                    RejectCode.CONFLICTING_DUPLICATE,
                    f"{kind.id_field} {key} was already taken with other content; neither is guessed at",
                    kind.id_field), now))
                continue
            valid.append(found)
        dead = [list(column) for column in zip(*(letter.to_row() for letter in letters))]
        return (kind.table, kind.columns, kind.columns_of(valid, now) if valid else [], dead), letters

    def _judge(self, record):
        ring = self.keyring() if callable(self.keyring) else self.keyring
        if ring is not None and ring.requires(record.deployment):
            return Rejection(RejectCode.UNSIGNED, f"deployment {record.deployment} requires signed input, and "
                                                  f"{self.kind.table} records are not signed yet", None)
        return record


def write_intake(store: Store, rows: IntakeRows) -> int:
    """Insert what :meth:`Intake.take` gave; the records written."""
    table, columns, data, dead = rows
    if dead:
        store.insert_columns("dead_letters", DEAD_LETTER_COLUMNS, dead)
    return store.insert_columns(table, columns, data) if data else 0
