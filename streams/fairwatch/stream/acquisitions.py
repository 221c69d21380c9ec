"""Acquisition attempts in: decode, refuse with a reason, write (file replay's step for them).

Attempts need no join: each valid one becomes a row of ``acquisitions``, each refused one a dead
letter with its reason. An attempt sent twice with the same content is stored once (the table
replaces it); the same ``attempt_id`` with other content is refused (``conflicting_duplicate``),
since counting either would be a guess. With a keyring, the attempts of a deployment whose entry
requires signatures are refused (``unsigned``): a line carries no signature.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Callable, Iterable

from fairwatch.contracts.acquisition import Acquisition, decode_acquisition
from fairwatch.contracts.keyring import Keyring
from fairwatch.contracts.records import RejectCode, Rejection
from fairwatch.store.acquisitions import write_acquisitions
from fairwatch.store.clickhouse import Store
from fairwatch.store.sink import DEAD_LETTER_COLUMNS
from fairwatch.stream.processor import DeadLetter, RawMessage

__all__ = ["AcquisitionIntake"]


class AcquisitionIntake:
    """Takes acquisition messages in batches; remembers each attempt's content to refuse conflicts."""

    def __init__(self, store: Store, keyring: Keyring | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 on_reject: Callable[[DeadLetter], None] = lambda letter: None):
        self.store, self.keyring, self.clock, self.on_reject = store, keyring, clock, on_reject
        self.seen: dict[str, bytes] = {}  # attempt_id -> digest of its canonical content
        self.written = 0
        self.rejected: list[DeadLetter] = []

    def take(self, messages: Iterable[RawMessage]) -> None:
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
            known = self.seen.setdefault(found.attempt_id, digest)
            if known != digest:
                letters.append(DeadLetter(message, Rejection(
                    RejectCode.CONFLICTING_DUPLICATE,
                    f"attempt {found.attempt_id} was already taken with other content; neither is guessed at",
                    "attempt_id"), now))
                continue
            valid.append(found)
        self.written += write_acquisitions(self.store, valid, now)
        if letters:
            self.store.insert_columns("dead_letters", DEAD_LETTER_COLUMNS,
                                      [list(column) for column in zip(*(letter.to_row() for letter in letters))])
            for letter in letters:
                self.on_reject(letter)
            self.rejected += letters

    def _judge(self, attempt: Acquisition) -> Acquisition | Rejection:
        if self.keyring is not None and self.keyring.requires(attempt.deployment):
            return Rejection(RejectCode.UNSIGNED, f"deployment {attempt.deployment} requires signed input; "
                                                  "a replayed line carries no signature", None)
        return attempt
