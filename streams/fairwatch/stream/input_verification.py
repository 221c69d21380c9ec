"""Input signatures checked against the keyring, for the batch processor (before anything is joined).

:class:`InputVerifier` judges every message of a batch: unsigned (None), signed and verified (its
:class:`~fairwatch.contracts.signing.SignatureClaim`), or refused (a
:class:`~fairwatch.contracts.records.Rejection`: ``bad_signature``, ``unknown_key``,
``key_not_for_deployment``, ``revoked_key``, ``expired_key``, ``key_not_yet_valid``). What the
records of a message may say given its verdict (``unsigned``, ``deployment_mismatch``) is the
processor's part (:class:`~fairwatch.stream.processor.BatchProcessor`).

An Ed25519 verification costs about 90 us here, as much as the worker spends on 15 records, and
holds no lock: the live worker (``helper=True``) runs a batch's verifications in a helper process
while it decodes the same batch, so that they cost it only the SHA-256 of each value. File
replay and tests verify in place. Whatever the route, the verdicts are the same.

The keyring is read from its file when the verifier is made and again when the file changes
(checked at most every ``reload_seconds``); a file that no longer parses leaves the last good
keyring in force, and says so in the log.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from fairwatch.contracts.keyring import Keyring, KeyringError, load_keyring
from fairwatch.contracts.records import RejectCode, Rejection
from fairwatch.contracts.signing import SignatureClaim, read_claim, verify_many

log = logging.getLogger("fairwatch.worker")

Verdict = SignatureClaim | Rejection | None


class KeyringFile:
    """The keyring of a file, read again when the file changes (its mtime, size or inode)."""

    def __init__(self, path: str | os.PathLike[str], reload_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.path, self.reload_seconds, self.clock = Path(path), reload_seconds, clock
        self._stamp = self._stat()
        self._keyring = load_keyring(self.path)  # a bad file at start is an error
        self._checked = clock()

    def _stat(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def __call__(self) -> Keyring:
        now = self.clock()
        if now - self._checked < self.reload_seconds:
            return self._keyring
        self._checked = now
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            try:
                keyring = load_keyring(self.path)
            except KeyringError as exc:
                log.error("the keyring changed but cannot be used; the previous one stays in force: %s", exc)
            else:
                log.warning("keyring %s reloaded (sha256 %s)", self.path, keyring.digest[:16])
                self._keyring = keyring
            self._stamp = stamp
        return self._keyring


class _Pending:
    """Verdicts being computed: :meth:`result` gives them, in the order of the messages."""

    def __init__(self, keyring: Keyring, verdicts: list[Verdict], rules: list[Rejection | None],
                 checks: list[tuple[int, bytes, bytes, bytes]], future: concurrent.futures.Future | None):
        # verdicts: claims still to be verified; rules: the keyring's refusal of each, if any
        self.keyring = keyring  # the one these verdicts were judged by (a reload may come meanwhile)
        self._verdicts, self._rules, self._checks, self._future = verdicts, rules, checks, future

    def result(self) -> list[Verdict]:
        verdicts, checks = self._verdicts, self._checks
        if not checks:
            return verdicts
        good = None
        if self._future is not None:
            try:
                good = self._future.result()
            except Exception as exc:  # the helper died (killed, out of memory): verify here
                log.warning("the signature helper process failed (%r); verifying in the worker", exc)
        if good is None:
            good = verify_many([item[1:] for item in checks])
        for (position, _, _, _), ok in zip(checks, good):
            if not ok:
                claim = verdicts[position]
                verdicts[position] = Rejection(
                    RejectCode.BAD_SIGNATURE,
                    f"the signature of key {claim.key_id} does not verify over this message, deployment "
                    f"{claim.deployment!r} and signed_at {claim.signed_at}", "headers")
            elif isinstance(self._rules[position], Rejection):
                verdicts[position] = self._rules[position]
        return verdicts


class InputVerifier:
    """Judges input messages against a keyring (see the module).

    Parameters
    ----------
    keyring
        A :class:`Keyring`, or a callable giving the one in force (:class:`KeyringFile`).
    helper
        Verify in a helper process while the caller decodes (the live worker).
    helper_minimum
        Fewer signed messages than this are verified in place (the round trip costs more).
    """

    def __init__(self, keyring: Keyring | Callable[[], Keyring], helper: bool = False, helper_minimum: int = 8):
        self._keyring = keyring if callable(keyring) else (lambda: keyring)
        self.helper_minimum = helper_minimum
        self._helper: concurrent.futures.ProcessPoolExecutor | None = None
        if helper:
            self._helper = self._new_helper()

    @staticmethod
    def _new_helper() -> concurrent.futures.ProcessPoolExecutor:
        # spawned: no copy of the worker's threads and sockets; it imports the signing module only
        pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(verify_many, [])  # start it now, not at the first batch
        return pool

    @property
    def keyring(self) -> Keyring:
        return self._keyring()

    def start(self, messages: Sequence, kinds: Sequence[str]) -> _Pending:
        """Begin judging ``messages`` (objects with ``headers`` and ``value``; ``kinds[i]`` the record
        kind of message i's topic); the caller decodes meanwhile and then calls ``result()``."""
        keyring = self._keyring()
        verdicts: list[Verdict] = []
        rules: list[Rejection | None] = []
        checks: list[tuple[int, bytes, bytes, bytes]] = []
        for position, (message, kind) in enumerate(zip(messages, kinds)):
            claim = read_claim(message.headers) if message.headers else None
            rule = None
            if isinstance(claim, SignatureClaim):
                key = keyring.key(claim.key_id)
                if key is None:
                    claim = Rejection(RejectCode.UNKNOWN_KEY, f"key {claim.key_id[:80]!r} is not in the keyring",
                                      "headers")
                else:  # the signature first: a forgery is bad_signature, whatever key it names
                    rule = keyring.judge(claim.key_id, claim.deployment, claim.signed_time)
                    value = message.value if isinstance(message.value, bytes) else bytes(message.value or b"")
                    checks.append((position, key.public_key, claim.message(value, kind), claim.signature))
            verdicts.append(claim)
            rules.append(rule)
        future = None
        if self._helper is not None and len(checks) >= self.helper_minimum:
            try:
                future = self._helper.submit(verify_many, [item[1:] for item in checks])
            except concurrent.futures.process.BrokenProcessPool:
                self._helper.shutdown(wait=False, cancel_futures=True)
                self._helper = self._new_helper()
        return _Pending(keyring, verdicts, rules, checks, future)

    def judge(self, messages: Sequence, kinds: Sequence[str]) -> list[Verdict]:
        """The verdicts of ``messages``, at once."""
        return self.start(messages, kinds).result()

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown(wait=False, cancel_futures=True)
            self._helper = None
