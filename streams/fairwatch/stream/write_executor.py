"""The live worker's ClickHouse writes, run one after another in a thread or in a child process.

Encoding rows for the ClickHouse driver costs about as much Python time as decoding and joining
them; in a thread it holds the worker's GIL for that long. With a server store the writes run in
one child process instead (the worker sends envelope bytes and join deltas, not row tuples: see
:meth:`fairwatch.store.sink.SinkBatch.built`). Either way there is one executor with one worker, so
writes run in the order they were submitted and a failed write is retried, in place, until it
succeeds: a later recompute never runs before the rows it must count, a later flush's counts never
before an earlier one's.

An embedded chDB store stays in a thread: chDB allows one process per data directory.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import threading
import time
from typing import Callable

from fairwatch.core.config import CoreConfig
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import (
    ClickHouseSink,
    SinkBatch,
    row_inserts,
    split_by_partition,
)
from fairwatch.stream.intake import write_intake
from fairwatch.stream.gctuning import tune_garbage_collector

log = logging.getLogger("fairwatch.store.sink")

# what the executor's worker keeps between calls (per thread: a process may hold several executors)
_local = threading.local()


class SinkClosed(RuntimeError):
    """The executor was closed while a write was still being retried."""


def _start(url: str, config: CoreConfig, failures, stop, own_process: bool) -> None:
    _local.state = dict(url=url, config=config, failures=failures, stop=stop, concurrent=own_process)
    if own_process:  # it builds millions of row tuples, as the worker builds records
        tune_garbage_collector()


def _sink() -> ClickHouseSink:
    _state = _local.state
    if "sink" not in _state:  # opened lazily where it is used, retried like any other write
        store = open_store(_state["url"])
        migrate(store)
        _state["sink"] = ClickHouseSink(store, _state["config"])
    return _state["sink"]


def _retrying(work: Callable[[ClickHouseSink], None]) -> float:
    """Run ``work`` until it succeeds; the seconds of the attempt that did."""
    _state = _local.state
    attempt = 0
    while True:
        try:
            started = time.perf_counter()
            work(_sink())
            return time.perf_counter() - started
        except Exception as exc:  # socket, timeout and server errors alike: wait and retry
            attempt += 1
            with _state["failures"].get_lock():
                _state["failures"].value += 1
            if attempt % 5 == 0:
                _state.pop("sink", None)  # reconnect
            log.warning("ClickHouse write failed (attempt %d), retrying: %s", attempt, exc)
            if _state["stop"].wait(min(10.0, 0.2 * 2 ** min(attempt, 6))):
                raise SinkClosed("the sink was closed while a ClickHouse write was failing") from exc


def _write_rows(batches: SinkBatch | list[SinkBatch]) -> float:
    if not _local.state["concurrent"]:
        return _retrying(lambda sink: sink.write_rows(batches))
    return _retrying(lambda sink: _insert_concurrently(batches))


def _write_intake(rows) -> float:
    return _retrying(lambda sink: write_intake(sink.store, rows))


def _insert_concurrently(batches: SinkBatch | list[SinkBatch]) -> None:
    """Each table's rows built and inserted on its own connection, at once: while the server
    stores one table's block, this process encodes the next (the driver waits without the GIL)."""
    _at_once(row_inserts(batches))


def _recompute(touched: dict[int, set[int]]) -> float:
    if not _local.state["concurrent"]:
        return _retrying(lambda sink: sink.recompute(touched))
    return _retrying(lambda sink: _recompute_concurrently(sink, touched))


def _write_counts(counts: dict[int, bytes], version: int | None) -> float:
    version = time.time_ns() if version is None else version  # one version for every part
    if not _local.state["concurrent"] or len(counts) < 2:
        return _retrying(lambda sink: sink.write_counts(counts, version))
    return _retrying(lambda sink: _write_counts_concurrently(counts, version))


COUNTS_STATEMENTS = 2  # the server stores each insert in one thread: halves of the partitions use two cores


def _write_counts_concurrently(counts: dict[int, bytes], version: int) -> None:
    """The partitions' counts in inserts run at once on their own connections (their rows never
    overlap: kafka_partition is in group_counts' key), dealt by blob size."""
    config = _local.state["config"]
    _at_once([(f"counts-{i}", lambda store, share=share: ClickHouseSink(store, config).write_counts(share, version))
              for i, share in enumerate(split_by_partition(counts, COUNTS_STATEMENTS))])


RECOMPUTE_STATEMENTS = 2  # a recompute reads with FINAL (one stream) and sorts one insert: two use two cores


def _recompute_concurrently(sink: ClickHouseSink, touched: dict[int, set[int]]) -> None:
    """The partitions' recomputes split into statements run at once on their own connections
    (their rows never overlap: kafka_partition is in group_counts' key)."""
    shares = split_by_partition(touched, RECOMPUTE_STATEMENTS)
    if len(shares) < 2:
        return sink.recompute(touched)
    config = _local.state["config"]
    _at_once([(f"recompute-{i}", lambda store, share=share: ClickHouseSink(store, config).recompute(share))
              for i, share in enumerate(shares)])


_AT_ONCE_THREADS = max(len(row_inserts(SinkBatch())), RECOMPUTE_STATEMENTS, COUNTS_STATEMENTS)  # one per job


def _at_once(jobs: list[tuple[str, Callable]]) -> None:
    """Run ``(connection name, work(store))`` jobs at once, each on the connection of its name
    (opened on first use, kept between calls); wait for every one, then raise the first failure."""
    state = _local.state
    if "pool" not in state:
        state["pool"] = concurrent.futures.ThreadPoolExecutor(_AT_ONCE_THREADS, "fairwatch-sink")
        state["stores"] = {}
    stores = state["stores"]

    def run(name: str, work: Callable) -> None:
        if name not in stores:
            stores[name] = open_store(state["url"])
        work(stores[name])

    futures = [state["pool"].submit(run, name, work) for name, work in jobs]
    failed = [f.exception() for f in futures if f.exception() is not None]  # waits for every job
    if failed:
        stores.clear()  # reconnect: a failed connection may be left mid-protocol
        raise failed[0]


def _ready() -> bool:
    """Connect before the first batch (its write would otherwise wait for the connections and for
    the driver's numpy modules to import); a failure here is only logged: every write retries."""
    state = _local.state
    try:
        _sink().store.prepare()
        if state["concurrent"]:
            names = [table for table, _ in row_inserts(SinkBatch())] + [f"counts-{i}" for i in range(COUNTS_STATEMENTS)]
            _at_once([(name, lambda store: store.prepare()) for name in names])
    except Exception as exc:  # e.g. ClickHouse not up yet
        log.info("the ClickHouse sink could not connect yet (%s); its first write will", exc)
    return True


class SinkExecutor:
    """Ordered, retried ClickHouse writes: :meth:`write_rows`, :meth:`write_counts` and
    :meth:`recompute` return futures of the seconds the successful attempt took; :attr:`failures`
    counts failed attempts."""

    def __init__(self, url: str, config: CoreConfig, in_process: bool | None = None):
        self.url, self.config = url, config
        self.in_process = not url.startswith("chdb") if in_process is None else in_process
        if self.in_process:
            self._context = multiprocessing.get_context("spawn")  # no copy of the worker's threads and sockets
            self.failures, self._stop = self._context.Value("q", 0), self._context.Event()
            self._executor: concurrent.futures.Executor = self._new_process_pool()
        else:
            self.failures, self._stop = multiprocessing.Value("q", 0), threading.Event()
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="fairwatch-sink", initializer=_start,
                initargs=(url, self.config, self.failures, self._stop, False))

    def _new_process_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            1, mp_context=self._context, initializer=_start,
            initargs=(self.url, self.config, self.failures, self._stop, True))

    def restart(self, broken: concurrent.futures.Future) -> None:
        """A new child process after the one that ran ``broken`` died (once, however many writes
        saw it die); the writes it had are submitted again by their callers."""
        if self.in_process and not self._stop.is_set() and getattr(broken, "_executor", None) is self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_process_pool()

    def start(self) -> concurrent.futures.Future:
        """Start the worker now (a child process takes a second to import) rather than at the first write."""
        return self._executor.submit(_ready)

    def write_rows(self, batches: SinkBatch | list[SinkBatch]) -> concurrent.futures.Future:
        """The rows of one batch or several, one insert per table for all (:func:`row_inserts`)."""
        return self._submit(_write_rows, batches)

    def write_intake(self, rows) -> concurrent.futures.Future:
        """Records stored as they come and their dead letters, as :meth:`fairwatch.stream.intake.Intake.take` gave them."""
        return self._submit(_write_intake, rows)

    def recompute(self, touched: dict[int, set[int]]) -> concurrent.futures.Future:
        return self._submit(_recompute, touched)

    def write_counts(self, counts: dict[int, bytes], version: int | None = None) -> concurrent.futures.Future:
        """A flush's resident cells' totals (partition -> counts blob) taken at ``version`` (ns)."""
        return self._submit(_write_counts, counts, version)

    def _submit(self, function, *args) -> concurrent.futures.Future:
        executor = self._executor
        try:
            future = executor.submit(function, *args)
        except concurrent.futures.process.BrokenProcessPool:  # died since: its writes come again
            future = concurrent.futures.Future()
            future.set_exception(concurrent.futures.process.BrokenProcessPool("the sink process died"))
        future._executor = executor  # which pool ran it: restart() replaces that one only
        return future

    def close(self) -> None:
        """Finish the writes under way; one still failing stops retrying (nothing after it was committed)."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
