"""Acquisition attempts in: decode, refuse with a reason, write (the worker's and file replay's step).

Attempts need no join: each valid one becomes a row of ``acquisitions``, each refused one a dead
letter with its reason. An attempt delivered again with the same content is stored once (the table
replaces it by ``attempt_id``); the same ``attempt_id`` with other content, within what one intake
has seen, is refused (``conflicting_duplicate``), since counting either would be a guess. With a
keyring, the attempts of a deployment whose entry requires signatures are refused (``unsigned``):
signatures cover match events and verdicts, not yet acquisition attempts.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Callable, Iterable

from fairwatch.contracts.acquisition import Acquisition, decode_acquisition
from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.records import RejectCode, Rejection
from fairwatch.store.acquisitions import ACQUISITION_COLUMNS, acquisition_columns
from fairwatch.store.clickhouse import Store
from fairwatch.store.sink import DEAD_LETTER_COLUMNS
from fairwatch.stream.processor import DeadLetter, RawMessage

__all__ = ["AcquisitionIntake", "IntakeRows", "write_intake"]

IntakeRows = tuple[list[list], list[list]]  # acquisition columns, dead-letter columns


class AcquisitionIntake:
    """Judges acquisition messages batch by batch; remembers each attempt's content to refuse conflicts."""

    def __init__(self, keyring: Keyring | Callable[[], Keyring] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        # a keyring, or what gives the current one (the worker's KeyringFile, read again when it changes)
        self.keyring, self.clock = keyring, clock
        self.seen: dict[str, bytes] = {}  # attempt_id -> digest of its canonical content

    def take(self, messages: Iterable[RawMessage]) -> tuple[IntakeRows, list[DeadLetter]]:
        """The rows to write for ``messages`` (columns, ready for :func:`write_intake`) and their dead letters."""
        now = self.clock().replace(microsecond=0)
        valid: list[Acquisition] = []
        letters: list[DeadLetter] = []
        for message in messages:
            found = decode_acquisition(message.value)
            if isinstance(found, Acquisition):
                found = self._judge(found)
            if isinstance(found, Rejection):
                letters.append(DeadLetter(message, found, now))
                continue
            digest = hashlib.blake2b(found.to_json(), digest_size=16).digest()
            if self.seen.setdefault(found.attempt_id, digest) != digest:
                letters.append(DeadLetter(message, Rejection(
                    RejectCode.CONFLICTING_DUPLICATE,
                    f"attempt {found.attempt_id} was already taken with other content; neither is guessed at",
                    "attempt_id"), now))
                continue
            valid.append(found)
        dead = [list(column) for column in zip(*(letter.to_row() for letter in letters))]
        return (acquisition_columns(valid, now) if valid else [], dead), letters

    def _judge(self, attempt: Acquisition) -> Acquisition | Rejection:
        ring = self.keyring() if callable(self.keyring) else self.keyring
        if ring is not None and ring.requires(attempt.deployment):
            return Rejection(RejectCode.UNSIGNED, f"deployment {attempt.deployment} requires signed input, and "
                                                  "acquisition attempts are not signed yet", None)
        return attempt


def write_intake(store: Store, rows: IntakeRows) -> int:
    """Insert what :meth:`AcquisitionIntake.take` gave; the attempts written."""
    attempts, dead = rows
    if dead:
        store.insert_columns("dead_letters", DEAD_LETTER_COLUMNS, dead)
    return store.insert_columns("acquisitions", ACQUISITION_COLUMNS, attempts) if attempts else 0
