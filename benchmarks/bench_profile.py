"""Where each microsecond per record goes: file replay and the worker's batched path, by phase.

Run by ``make bench`` (not a test); issue 28, item 1. Every path gets the same simulated workload
(``fairwatch simulate``'s default scenario, ``--events`` match events and their outcomes); replay
and worker are each run three times, every run in a fresh process:

1. **plain**: no instrumentation, the CPU and wall time the phases are compared with;
2. **phases**: chosen functions of fairwatch wrapped by timers of CPU and wall time (exclusive: a
   phase nested in another is taken out of it), so each phase is the time spent in its own code
   per input record; a timed call costs about a microsecond, measured in the run and taken out per
   call, so the phases add up to about the plain run's CPU time (both are printed);
3. **cProfile**: every function, saved as pstats (``--pstats DIR``), drawn as an icicle chart
   (``--image``: each bar a function, its width the time spent in it and its callees).

Paths:

- ``replay``: :func:`fairwatch.stream.replay.replay` into a fresh embedded chDB store, as
  ``fairwatch replay --store chdb://DIR events.jsonl outcomes.jsonl`` runs it.
- ``worker``: what the live worker does with batch envelopes, without Kafka: the records in arrival
  order put into 100-record envelopes over 8 partitions by the producer SDK's ``BatchBuilder``,
  sub-batches of 4 MB (a backlog's steady state), :meth:`BatchProcessor.process` against the
  resident joins, the sink's row inserts every ``ROW_WRITE_ROWS`` rows, and a flush (join state
  export, counts) every ``MAX_PENDING_RECORDS`` records and at the end. The live worker runs the
  sink in a second process; here it runs in the same one, one step after the other, so the table
  shows CPU per record of both. Inserts go to the ClickHouse server of ``--clickhouse`` (default:
  FAIRWATCH_CLICKHOUSE_MIGRATOR or FAIRWATCH_CLICKHOUSE, else the local stack, started if need
  be) in a database of its own, dropped at the end; with ``--no-server`` the rows are built and
  not sent (insert 0). The server's own CPU is not in the table; when it is the local stack's, the
  CPU seconds it used during the plain run are printed beside it.
  Kafka is not here: fetching, faust, the join-log changelog and offset commits are in ``live``.
- ``live`` (not with ``--quick``): the same envelopes produced to fresh topics, then drained by one
  ``fairwatch worker`` (rocksdb table store, its sink process, Kafka and ClickHouse of the local
  stack or FAIRWATCH_KAFKA / FAIRWATCH_CLICKHOUSE), twice: plain, for the CPU per record of the
  worker's main thread, its other threads (the Kafka clients), its sink process, Kafka and
  ClickHouse from its first batch to drained (sampled from /proc; the services when they are the
  local stack's); and under ``python -m cProfile`` (main thread only), for the cumulative time per
  record of the main thread's steps (``LIVE_FUNCTIONS``).

Writes ``benchmarks/results/profile.json`` (``--out``) and ``docs/img/profile.png`` (``--image``).
Rerun it after a change to fill a performance table's "after" column with the same workload.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import multiprocessing
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "profile.json"
IMAGE = REPO / "docs" / "img" / "profile.png"
PARTITIONS = 8

# The phases of the table, in its order; the workload's records divide each phase's seconds.
PHASES = {
    "replay": [
        ("decode", "JSON text to Python objects (json.loads, one line at a time)"),
        ("envelope fast path", "decode_valid_batch tried on each line (a line is no envelope: declined)"),
        ("validation", "the contract's checks and record objects (parse_match_event / parse_verified_outcome)"),
        ("join", "LabelJoin.update: pairing, duplicates, revisions, deltas"),
        ("hashing: fingerprints", "the join's fingerprints of events and outcomes (redelivery checks)"),
        ("join state (per event)", "load each id's state, restore it into a one-batch join, compare after"),
        ("state encoding", "EventState.to_bytes / from_bytes (the replay's per-id state)"),
        ("column building", "rows as column lists (event_columns, outcome_columns, labeled_columns)"),
        ("insert: JSON encoding", "EmbeddedStore.insert: json.dumps of every row"),
        ("insert: engine", "chDB parsing JSONEachRow and storing parts"),
        ("counts", "ClickHouseSink.recompute: INSERT ... SELECT FINAL per batch in chDB"),
        ("read lines", "reading the files line by line (lines_of)"),
        ("setup", "migrations of the fresh store (once per replay)"),
        ("other", "the processor's bookkeeping (per message: kinds, ids, partitions, rows), the replay loop"),
    ],
    "worker": [
        ("decode", "msgspec decode of each envelope (worker), again in the sink (shapes_of_valid_batch)"),
        ("validation", "decode_valid_batch's column checks (quotes, ids, labels, names)"),
        ("timestamps", "timestamp regex and datetime.fromisoformat per record"),
        ("record objects", "MatchEvent / VerifiedOutcome per record (_records)"),
        ("hashing: partitions", "partition of each event_id (murmur2 in Python, partitions_for)"),
        ("hashing: fingerprints", "the join's fingerprints of events and outcomes (redelivery checks)"),
        ("join", "LabelJoin.update (columnar path), its id index included"),
        ("counts", "ResidentJoins.count -> BucketCounts.update, and counts export at a flush"),
        ("column building", "numpy columns of the rows (event_frames, outcome_frames, labeled_frames, counts)"),
        ("insert", "clickhouse-driver: encoding the columns, sending, waiting for the server"),
        ("join state export", "ResidentJoins.persist: blobs of the changed join states (the join log)"),
        ("other", "the processor's bookkeeping (grouping by partition, SinkBatch), this harness's loop"),
    ],
}


# ------------------------------------------------------------------ exclusive phase timers

class PhaseTimer:
    """Wall and CPU time per phase, exclusive: entering a phase pauses the one it was called from.

    CPU time (``time.process_time``: every thread of this process, chDB's included) is the
    measure that survives a shared machine; wall time also holds waits (for a server, for the CPU).
    ``wrap(owner, name, phase)`` replaces ``owner.name`` by a timed wrapper (for the run's
    process only: it is never undone).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []

    def timed(self, phase: str, function):
        stack, seconds, cpu, calls = self._stack, self.seconds, self.cpu, self.calls
        clock, cpu_clock = time.perf_counter, time.process_time

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            now, used = clock(), cpu_clock()
            if stack:
                top = stack[-1]
                seconds[top[0]] += now - top[1]
                cpu[top[0]] += used - top[2]
            frame = [phase, now, used]
            stack.append(frame)
            calls[phase] += 1
            try:
                return function(*args, **kwargs)
            finally:
                end, used = clock(), cpu_clock()
                stack.pop()
                seconds[phase] += end - frame[1]
                cpu[phase] += used - frame[2]
                if stack:
                    stack[-1][1], stack[-1][2] = end, used
        return wrapper

    def timed_generator(self, phase: str, function):
        """A generator function whose every step (``next``) is timed as ``phase``."""
        timed = self.timed

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            step = timed(phase, function(*args, **kwargs).__next__)
            while True:
                try:
                    item = step()
                except StopIteration:
                    return
                yield item
        return wrapper

    def wrap(self, owner, name: str, phase: str) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        if isinstance(original, classmethod):
            setattr(owner, name, classmethod(self.timed(phase, original.__func__)))
        elif isinstance(original, staticmethod):
            setattr(owner, name, staticmethod(self.timed(phase, original.__func__)))
        else:
            setattr(owner, name, self.timed(phase, original))

    def inherit(self, owner, name: str, phases: set[str], otherwise: str) -> None:
        """``owner.name`` counts as ``otherwise`` unless called under one of ``phases`` (then as that)."""
        original = getattr(owner, name)
        timed = self.timed(otherwise, original)
        stack = self._stack

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if stack and stack[-1][0] in phases:
                return original(*args, **kwargs)
            return timed(*args, **kwargs)
        setattr(owner, name, wrapper)


def timer_cost(calls: int = 200_000) -> float:
    """CPU seconds one timed call adds (two clock pairs and the stack), measured here: the phase
    table subtracts it per call, so the phases add up to about the plain run."""
    def noop():
        return None
    timer = PhaseTimer()
    timed = timer.timed("inner", noop)

    def bare():
        for _ in range(calls):
            noop()

    def wrapped():
        for _ in range(calls):
            timed()
    best = []
    for body in (bare, timer.timed("outer", wrapped)):
        started = time.process_time()
        body()
        best.append(time.process_time() - started)
    return max(0.0, (best[1] - best[0]) / calls)


class _TimedDecoder:
    """A msgspec decoder whose ``decode`` is timed (msgspec's C methods cannot be wrapped in place)."""

    def __init__(self, decoder, timer: PhaseTimer, phase: str):
        self.decode = timer.timed(phase, decoder.decode)


def instrument_common(timer: PhaseTimer) -> None:
    """Timers shared by both paths (the join, its hashing)."""
    from fairwatch.core import join
    timer.wrap(join.LabelJoin, "update", "join")
    for name in ("_fingerprints", "_fingerprint", "_text_hash", "_extras_hash"):
        timer.wrap(join, name, "hashing: fingerprints")


def instrument_replay(timer: PhaseTimer) -> None:
    from fairwatch.contracts import envelopes
    from fairwatch.core.join import EventState
    from fairwatch.store import clickhouse, sink
    from fairwatch.stream import processor, replay

    instrument_common(timer)
    timer.wrap(envelopes, "load_json", "decode")
    for kind, parse in list(envelopes.PARSERS.items()):
        envelopes.PARSERS[kind] = timer.timed("validation", parse)
    timer.wrap(processor, "decode_valid_batch", "envelope fast path")
    timer.wrap(processor.BatchProcessor, "_join_partition", "join state (per event)")
    timer.wrap(EventState, "to_bytes", "state encoding")
    timer.wrap(EventState, "from_bytes", "state encoding")
    timer.wrap(sink, "_write_records", "column building")
    timer.wrap(sink, "_write_labeled", "column building")
    timer.wrap(clickhouse.EmbeddedStore, "insert", "insert: JSON encoding")
    timer.inherit(clickhouse.EmbeddedStore, "_run", {"counts", "setup"}, "insert: engine")
    timer.wrap(sink.ClickHouseSink, "recompute", "counts")
    timer.wrap(replay, "migrate", "setup")
    replay.lines_of = timer.timed_generator("read lines", replay.lines_of)


def instrument_worker(timer: PhaseTimer) -> None:
    from fairwatch.contracts import envelopes
    from fairwatch.store import clickhouse, sink
    from fairwatch.stream import processor

    instrument_common(timer)
    for kind, decoder in list(envelopes._BATCH_DECODERS.items()):
        envelopes._BATCH_DECODERS[kind] = _TimedDecoder(decoder, timer, "decode")
    timer.wrap(processor, "decode_valid_batch", "validation")
    timer.wrap(envelopes, "_timestamps", "timestamps")
    timer.wrap(envelopes, "_records", "record objects")
    timer.wrap(processor, "partitions_for", "hashing: partitions")
    timer.wrap(processor.ResidentJoins, "count", "counts")
    timer.wrap(processor.ResidentJoins, "persist", "join state export")
    from fairwatch.core.counts import BucketCounts
    timer.wrap(BucketCounts, "export_cells", "counts")
    timer.wrap(BucketCounts, "take_changed", "counts")
    for name in ("event_frames", "outcome_frames", "labeled_frames", "counts_frames"):
        timer.wrap(sink, name, "column building")
    for name in ("insert_frames", "insert_columns", "insert"):
        timer.wrap(clickhouse.ServerStore, name, "insert")


# ------------------------------------------------------------------ the workload

def make_workload(events: int, directory: Path) -> dict:
    """The default scenario with ``events`` match events: JSONL files (replay) and the records in
    arrival order as encoded lines (worker)."""
    from fairwatch.sim.scenario import load_scenario
    from fairwatch.sim.simulator import simulate
    from fairwatch.sim.writers import write_jsonl

    sim = simulate(load_scenario("default"), events=events)
    paths = write_jsonl(sim, directory)
    return {"events": str(paths["events"]), "outcomes": str(paths["outcomes"]),
            "match_events": sim.n_events, "verified_outcomes": sim.n_outcomes}


def arrival_messages(events_path: str, outcomes_path: str) -> list:
    """The workload's records in arrival order (an outcome at its verified_at, an event at its
    occurred_at: the simulator's times) put into batch envelopes as the producer SDK makes them,
    as the RawMessages a worker owning every partition would read."""
    import json as _json

    from fairwatch.contracts.topics import MATCH_EVENTS, VERIFIED_OUTCOMES
    from fairwatch.producer import BatchBuilder
    from fairwatch.stream.processor import RawMessage

    lines = []
    for path, kind, field in ((events_path, MATCH_EVENTS, "occurred_at"), (outcomes_path, VERIFIED_OUTCOMES, "verified_at")):
        with open(path, "rb") as handle:
            for line in handle:
                line = line.rstrip(b"\n")
                doc = _json.loads(line)
                lines.append((doc[field], kind == VERIFIED_OUTCOMES, kind, doc["event_id"], line))
    lines.sort(key=lambda x: (x[0], x[1]))  # the same text format throughout: sorts as time
    builder = BatchBuilder(PARTITIONS, max_records=100, linger=1e9)
    envelopes = []
    for _, _, kind, event_id, line in lines:
        envelopes += builder.add(kind, event_id, line, 0.0)
    envelopes += builder.drain()
    offsets: dict = defaultdict(int)
    messages = []
    for env in envelopes:
        offset = offsets[env.topic, env.partition]
        offsets[env.topic, env.partition] += 1
        messages.append(RawMessage(env.topic, env.topic, env.partition, offset, env.key, env.value))
    return messages


# ------------------------------------------------------------------ the two paths (in a child process)

def prepare_replay(workload: dict, store_dir: str):
    """The replay, ready to run (modules imported, the chDB store open): ``run_replay()`` is timed."""
    from fairwatch.core.config import CoreConfig
    from fairwatch.store.clickhouse import open_store
    from fairwatch.stream import replay as replay_module

    store = open_store(f"chdb://{store_dir}")

    def run_replay() -> dict:
        try:
            report = replay_module.replay(store, Path(workload["events"]), Path(workload["outcomes"]), CoreConfig())
        finally:
            store.close()
        return {"records": sum(report.lines.values()), "labeled": report.labeled, "rejected": len(report.rejected)}
    return run_replay


def prepare_worker(workload: dict, store_url: str | None):
    """The worker's batched path, ready to run (envelopes made, modules imported, the server's
    database migrated, the sink connected): ``run_worker()`` is timed."""
    from fairwatch.core.config import CoreConfig
    from fairwatch.store.clickhouse import open_store
    from fairwatch.store.migrations import migrate
    from fairwatch.store.sink import ClickHouseSink, SinkBatch, row_inserts
    from fairwatch.stream.app import ROW_WRITE_ROWS
    from fairwatch.stream.batching import MAX_PENDING_RECORDS, MAX_SUB_BATCH_BYTES
    from fairwatch.stream.processor import BatchProcessor, ResidentJoins

    messages = arrival_messages(workload["events"], workload["outcomes"])
    config = CoreConfig(intersections=(("sex", "race"),))  # as bench_pipeline's worker (sex&race)
    store = open_store(store_url) if store_url else _NullStore()
    if store_url:
        migrate(store)
        store.prepare()
    sink = ClickHouseSink(store, config)
    resident = ResidentJoins(config, lambda partition: [])
    processor = BatchProcessor(config, partitions=PARTITIONS)

    def run_worker() -> dict:
        records = labeled = rejected = pending = log_writes = 0
        waiting: list[SinkBatch] = []

        def send_rows() -> None:
            if not waiting:
                return
            for _, write in row_inserts(waiting):
                write(store)
            waiting.clear()

        def flush() -> None:
            nonlocal log_writes, pending
            send_rows()
            counts = {}
            for partition in resident.joins():
                persisted = resident.persist(partition)
                log_writes += len(persisted.writes)
                if persisted.counts is not None:
                    counts[partition] = persisted.counts
            if counts:
                sink.write_counts(counts)
            pending = 0

        batch, size = [], 0
        for message in messages + [None]:
            if message is not None:
                batch.append(message)
                size += len(message.value)
            if batch and (message is None or size >= MAX_SUB_BATCH_BYTES):
                result = processor.process(batch, resident=resident)
                records += sum(result.records.values())
                labeled += result.paired
                rejected += sum(result.rejected.values())
                pending += sum(result.records.values())
                waiting.append(result.sink)
                if sum(map(len, waiting)) >= ROW_WRITE_ROWS:
                    send_rows()
                if pending >= MAX_PENDING_RECORDS:
                    flush()
                batch, size = [], 0
        flush()
        store.close()
        return {"records": records, "labeled": labeled, "rejected": rejected, "join_log_writes": log_writes}
    return run_worker


class _NullStore:
    """A server store that takes every write and keeps nothing (``--no-server``): rows are built, not sent."""

    external_tables = True
    url = "null://"

    def insert_frames(self, *args, **kwargs) -> None:
        pass

    def insert_columns(self, table, columns, data) -> int:
        return 0

    def execute(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds a process has used (user + system), None if it cannot be read."""
    return None if pid is None else cpu_seconds(Path(f"/proc/{pid}/stat"))


def _child(path: str, mode: str, workload: dict, target: str | None, pstats_path: str | None,
           server_pid: int | None = None) -> dict:
    """One run of one path in this (fresh) process: plain, phases or cprofile; ``server_pid``: the
    ClickHouse server's, whose CPU during the run is reported too (worker path)."""
    from fairwatch.stream.gctuning import tune_garbage_collector

    run = (prepare_replay if path == "replay" else prepare_worker)(workload, target)
    tune_garbage_collector()  # as the worker and its sink process run
    timer = PhaseTimer()
    if mode == "phases":
        (instrument_replay if path == "replay" else instrument_worker)(timer)
        run = timer.timed("other", run)
    profile = cProfile.Profile() if mode == "cprofile" else None
    server = process_cpu(server_pid)
    started, cpu = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    outcome = run()
    if profile is not None:
        profile.disable()
        profile.dump_stats(pstats_path)
    outcome["wall_s"] = time.perf_counter() - started
    outcome["cpu_s"] = time.process_time() - cpu
    if server is not None and process_cpu(server_pid) is not None:
        outcome["server_cpu_s"] = process_cpu(server_pid) - server
    if mode == "phases":
        outcome["phase_seconds"] = dict(timer.seconds)
        outcome["phase_cpu_seconds"] = dict(timer.cpu)
        outcome["phase_calls"] = dict(timer.calls)
        outcome["timer_cost_s"] = timer_cost()
    return outcome


def in_fresh_process(*args) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_child, *args).result()


# ------------------------------------------------------------------ ClickHouse server for the worker path

def server_database(url: str | None) -> tuple[str | None, str | None]:
    """(URL of a fresh database on the server, its name), or (None, None) without a server."""
    if not url:
        return None, None
    from fairwatch.testing.stack import server_url
    name = f"bench_profile_{uuid.uuid4().hex[:8]}"
    return server_url(url, name), name


def drop_database(url: str, name: str) -> None:
    from contextlib import closing

    from fairwatch.store.clickhouse import ServerStore
    from fairwatch.testing.stack import server_url
    with closing(ServerStore(server_url(url, "default"), create_database=False)) as client:
        client.execute(f"DROP DATABASE IF EXISTS {name}")


# ------------------------------------------------------------------ the live worker (Kafka)

# main-thread functions of the live worker whose cumulative time per record the cProfile run
# reports (file suffix, function name) -> row; nested rows are part of the rows above them
LIVE_FUNCTIONS = [
    (("stream/app.py", "handle"), "batch step (app.handle)"),
    (("stream/processor.py", "process"), "  BatchProcessor.process"),
    (("contracts/envelopes.py", "decode_valid_batch"), "    decode + validation"),
    (("core/join.py", "update"), "    LabelJoin.update"),
    (("stream/processor.py", "count"), "    ResidentJoins.count"),
    (("stream/app.py", "flush"), "flush (app.flush)"),
    (("stream/processor.py", "persist"), "  ResidentJoins.persist"),
    (("stream/committer.py", "commit"), "offset commits (LedgerCommitter.commit)"),
    (("stream/worker_metrics.py", "record_batch"), "metrics (record_batch)"),
    (("faust/transport/consumer.py", "_drain_messages"), "faust: messages to the stream"),
    (("faust/streams.py", "take_events"), "faust: take_events"),
]


def cpu_seconds(stat_path: Path) -> float | None:
    """User + system CPU seconds of a /proc stat file (a process or a thread), None if unreadable."""
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class ThreadSampler:
    """CPU seconds of the worker's main thread, its other threads, its sink process (its process
    group), Kafka and ClickHouse (the local stack's), sampled every 100 ms from /proc."""

    def __init__(self, pid: int, services: dict[str, int]):
        import threading
        self.pid, self.services, self.samples = pid, services, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict:
        main = cpu_seconds(Path(f"/proc/{self.pid}/task/{self.pid}/stat")) or 0.0
        whole = cpu_seconds(Path(f"/proc/{self.pid}/stat")) or 0.0
        out = {"worker: main thread": main, "worker: other threads": max(0.0, whole - main), "sink process": 0.0}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and int(entry.name) != self.pid:
                try:
                    group = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[2])
                except (OSError, IndexError, ValueError):
                    continue
                if group == self.pid:
                    out["sink process"] += cpu_seconds(Path(f"/proc/{entry.name}/stat")) or 0.0
        for name, pid in self.services.items():
            out[name] = cpu_seconds(Path(f"/proc/{pid}/stat")) or 0.0
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.sample()))
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> dict:
        before = [s for t, s in self.samples if t <= start] or [self.samples[0][1]]
        after = [s for t, s in self.samples if t >= end] or [self.samples[-1][1]]
        return {k: max(0.0, after[0].get(k, 0.0) - before[-1].get(k, 0.0)) for k in after[0]}


def run_live(workload: dict, mode: str, kafka: str, clickhouse: str, pstats_path: str, timeout: float = 300) -> dict:
    """The workload's envelopes produced to fresh topics, then drained by one ``fairwatch worker``
    (plain, or under ``python -m cProfile``); CPU per thread and process from ready to drained."""
    import signal

    from fairwatch.contracts.kafka_link import KafkaLink
    from fairwatch.store.clickhouse import open_store
    from fairwatch.store.migrations import migrate
    from fairwatch.stream.topics import ensure_topics
    from fairwatch.testing.live import delete_resources, free_port
    from fairwatch.testing.stack import server_url
    from kafka import KafkaProducer

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_pipeline as pipeline

    tag = uuid.uuid4().hex[:8]
    prefix, group, database = f"bench-profile-{tag}.", f"bench-profile-{tag}", f"bench_profile_live_{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="fairwatch-bench-profile-live-"))
    messages = arrival_messages(workload["events"], workload["outcomes"])
    process = None
    try:
        ensure_topics(kafka, prefix, PARTITIONS)
        with __import__("contextlib").closing(open_store(server_url(clickhouse, database))) as admin:
            migrate(admin)
        producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=20, batch_size=512 * 1024, acks=1,
                                 max_request_size=2 << 20, **KafkaLink.from_env().kafka_python_kwargs())
        for m in messages:
            producer.send(prefix + m.kind, key=m.key, value=m.value, partition=m.partition)
        producer.flush()
        producer.close()
        lag = pipeline.Lag(kafka, [prefix + k for k in pipeline.INPUTS], PARTITIONS)
        port = free_port()
        env = {**os.environ, "FAIRWATCH_KAFKA": kafka, "FAIRWATCH_CLICKHOUSE": server_url(clickhouse, database),
               "FAIRWATCH_TOPIC_PREFIX": prefix, "FAIRWATCH_PARTITIONS": str(PARTITIONS), "FAIRWATCH_APP_ID": group,
               "FAIRWATCH_TABLE_STORE": "rocksdb://", "FAIRWATCH_INTERSECTIONS": "sex&race",
               "FAIRWATCH_SESSION_TIMEOUT": "10", "FAIRWATCH_WEB_PORT": str(port), "FAIRWATCH_DATA_DIR": str(tmp / "data")}
        profiler = ["-m", "cProfile", "-o", pstats_path] if mode == "cprofile" else []
        with open(tmp / "worker.log", "wb") as log:
            process = subprocess.Popen([sys.executable, *profiler, "-m", "fairwatch.cli", "worker", "--loglevel", "warn"],
                                       env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        records = workload["match_events"] + workload["verified_outcomes"]
        services = {name: pid for name, pid in (("Kafka", _stack_pid("kafka", kafka)),
                                                ("ClickHouse", _stack_pid("clickhouse", clickhouse))) if pid}
        with ThreadSampler(process.pid, services) as sampler:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{(tmp / 'worker.log').read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker not drained after {timeout:.0f} s")
                if lag(group) == 0:
                    seen_drained = time.time()
                    break
                time.sleep(0.2)
            text = _metrics(port)
        values = lambda name, label=None: pipeline.metric_values(text, name, label)
        first = values("fairwatch_first_batch_timestamp_seconds").get("", 0.0)
        drained = min(seen_drained, values("fairwatch_offsets_committed_timestamp_seconds").get("", seen_drained))
        consumed = sum(values("fairwatch_consumed_records_total", "topic").values())
        if consumed != records:
            raise RuntimeError(f"the worker consumed {consumed:.0f} records, expected {records}")
        cpu = sampler.between(first, drained)
        return {"records": records, "steady_s": drained - first, "records_per_s": records / (drained - first),
                "cpu_s": cpu, "phase_seconds": values("fairwatch_batch_phase_seconds_total", "phase")}
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # cProfile writes its file as the worker exits
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        delete_resources(kafka, (prefix, group + "-"), [group], clickhouse, [database])
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


STACK_PORTS = {"kafka": ("FAIRWATCH_KAFKA_PORT", 19092), "clickhouse": ("FAIRWATCH_CLICKHOUSE_PORT", 19000)}


def _stack_pid(name: str, address: str) -> int | None:
    """The pid of the local stack's service ``name`` (kafka, clickhouse) when ``address`` (host:port
    or a URL) is on its port (scripts/stack's defaults, or FAIRWATCH_*_PORT), else None."""
    from urllib.parse import urlparse

    from fairwatch.testing.stack import configured_stack_dir
    variable, default = STACK_PORTS[name]
    port = urlparse(address if "://" in address else f"//{address}").port
    if port != int(os.environ.get(variable) or default):
        return None
    try:
        return int((configured_stack_dir() / "run" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _metrics(port: int) -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def live_functions(stats_path: str, records: int) -> list[dict]:
    """Cumulative microseconds per record of LIVE_FUNCTIONS in a cProfile run of the worker."""
    raw = pstats.Stats(stats_path).stats
    rows = []
    for (suffix, name), label in LIVE_FUNCTIONS:
        found = [v for (f, _, n), v in raw.items() if n == name and f.replace(os.sep, "/").endswith(suffix)]
        cumulative = sum(v[3] for v in found)
        rows.append({"row": label, "calls": sum(v[1] for v in found), "cum_s": cumulative,
                     "us_per_record": 1e6 * cumulative / records})
    return rows


# ------------------------------------------------------------------ report

def table(result: dict) -> list[dict]:
    """Per path and phase: CPU and wall seconds and microseconds per input record, and the CPU per
    record less the timers' own cost (calls x the measured cost of one), the table's main column."""
    rows = []
    for path, run in result["paths"].items():
        phases = run["phases"]
        records, wall, cpu = phases["records"], phases["phase_seconds"], phases["phase_cpu_seconds"]
        calls, cost = phases["phase_calls"], phases["timer_cost_s"]
        net = {p: max(0.0, cpu.get(p, 0.0) - calls.get(p, 0) * cost) for p, _ in PHASES[path]}
        total = sum(net.values())
        for phase, meaning in PHASES[path]:
            rows.append({"path": path, "phase": phase, "cpu_s": cpu.get(phase, 0.0), "wall_s": wall.get(phase, 0.0),
                         "calls_per_record": calls.get(phase, 0) / records,
                         "cpu_us_per_record_measured": 1e6 * cpu.get(phase, 0.0) / records,
                         "cpu_us_per_record": 1e6 * net[phase] / records,
                         "wall_us_per_record": 1e6 * wall.get(phase, 0.0) / records,
                         "share_of_cpu": net[phase] / total if total else 0.0, "meaning": meaning})
        unknown = set(wall) - {p for p, _ in PHASES[path]}
        if unknown:
            raise RuntimeError(f"phases timed but not in the table: {sorted(unknown)}")
    return rows


def print_live(live: dict) -> None:
    plain = live["plain"]
    records = plain["records"]
    print(f"\nlive worker: {records:,} records drained in {plain['steady_s']:.2f} s from its first batch "
          f"({plain['records_per_s']:,.0f} records/s); CPU per record from the first batch to drained:")
    for name, seconds in plain["cpu_s"].items():
        print(f"  {name:<24}{1e6 * seconds / records:>8.1f} us/record")
    print(f"  {'total':<24}{1e6 * sum(plain['cpu_s'].values()) / records:>8.1f} us/record")
    print("  main thread under cProfile (cumulative; cProfile slows Python code down):")
    for row in live["cprofile"]["main_thread"]:
        print(f"  {row['row']:<44}{row['us_per_record']:>8.1f} us/record")


def print_table(result: dict) -> None:
    for path, run in result["paths"].items():
        records = run["phases"]["records"]
        plain = run["plain"]
        rows = [r for r in result["table"] if r["path"] == path]
        net = sum(r["cpu_us_per_record"] for r in rows)
        print(f"\n{path}: {records:,} records ({run['phases']['labeled']:,} labeled); plain run "
              f"{plain['wall_s']:.2f} s wall, {plain['cpu_s']:.2f} s CPU = {1e6 * plain['cpu_s'] / records:.1f} "
              f"CPU us/record ({records / plain['wall_s']:,.0f} records/s); phases add up to {net:.1f} CPU us/record "
              f"(timers' cost taken out: {1e6 * run['phases']['timer_cost_s']:.2f} us a call)"
              + (f"; under cProfile {run['cprofile']['wall_s']:.2f} s" if "cprofile" in run else ""))
        if plain.get("server_cpu_s") is not None:
            print(f"  the ClickHouse server used {plain['server_cpu_s']:.2f} CPU s during the plain run "
                  f"({1e6 * plain['server_cpu_s'] / records:.1f} us/record; not in the table)")
        print(f"  {'phase':<24}{'CPU us/rec':>11}{'measured':>10}{'wall us/rec':>12}{'calls/rec':>10}{'CPU share':>10}")
        for row in rows:
            print(f"  {row['phase']:<24}{row['cpu_us_per_record']:>11.2f}{row['cpu_us_per_record_measured']:>10.2f}"
                  f"{row['wall_us_per_record']:>12.2f}{row['calls_per_record']:>10.3f}{row['share_of_cpu']:>9.0%}")


def top_functions(stats_path: str, n: int = 25) -> list[dict]:
    stats = pstats.Stats(stats_path)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:n]
    return [{"function": f"{Path(f).name}:{line}({name})", "calls": nc, "tottime_s": tt, "cumtime_s": ct}
            for (f, line, name), (cc, nc, tt, ct, callers) in rows]


def draw(result: dict, stats_paths: dict[str, str], image: Path) -> None:
    """Stacked bars of microseconds per record by phase, and an icicle chart of each cProfile run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = list(result["paths"])
    fig, axes = plt.subplots(1 + len(paths), 1, figsize=(16, 4 + 5 * len(paths)),
                             gridspec_kw={"height_ratios": [1.2] + [2.5] * len(paths)})
    ax = axes[0]
    cmap = plt.get_cmap("tab20")
    for y, path in enumerate(paths):
        left = 0.0
        for i, (phase, _) in enumerate(PHASES[path]):
            row = next(r for r in result["table"] if r["path"] == path and r["phase"] == phase)
            width = row["cpu_us_per_record"]
            if width <= 0:
                continue
            ax.barh(y, width, left=left, color=cmap(i % 20), edgecolor="white")
            if width > 1.5:
                ax.text(left + width / 2, y, f"{phase}\n{width:.1f}", ha="center", va="center", fontsize=6.5)
            left += width
    ax.set_yticks(range(len(paths)), [f"{p}\n({result['paths'][p]['phases']['records']:,} records)" for p in paths])
    ax.set_xlabel("CPU microseconds per input record (phase timers, exclusive time)")
    ax.set_title(f"fairwatch at {result['commit'][:10]}: where each record's time goes")
    for ax, path in zip(axes[1:], paths):
        icicle(ax, pstats.Stats(stats_paths[path]), path)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=90)
    plt.close(fig)


def icicle(ax, stats: pstats.Stats, path: str, depth: int = 9, smallest: float = 0.012) -> None:
    """An icicle chart (a flame graph drawn downwards) of a cProfile run, from its root function:
    each function's width is its cumulative time along the call edge from its parent, the parent's
    share split among its callees in proportion (cProfile keeps edges, not whole stacks)."""
    root_name = "run_replay" if path == "replay" else "run_worker"
    raw = stats.stats
    root = next(f for f in raw if f[2] == root_name)
    children: dict = defaultdict(list)
    for func, (_, _, _, _, callers) in raw.items():
        for caller, edge in callers.items():
            children[caller].append((edge[3], func))
    total = raw[root][3]
    groups = {"contracts": 0, "core": 1, "store": 2, "stream": 3, "sim": 4}
    cmap = __import__("matplotlib.pyplot").pyplot.get_cmap("Pastel1")

    def colour(func):
        parts = Path(func[0]).parts
        if "fairwatch" in parts:
            return cmap(groups.get(parts[parts.index("fairwatch") + 1], 5))
        return cmap(7 if func[0] == "~" else 8)

    def label(func):
        name = func[2] if func[0] == "~" else f"{Path(func[0]).stem}.{func[2]}"
        return name.replace("<built-in method ", "").replace("<method ", "").rstrip(">")

    def place(func, left, width, level, seen):
        ax.barh(-level, width, left=left, height=0.95, color=colour(func), edgecolor="white", linewidth=0.5)
        if width > total * 0.03:
            text = label(func)
            room = int(190 * width / total)  # characters that fit at this font size
            ax.text(left + width / 2, -level, text if len(text) <= room else text[: max(room - 1, 1)] + "~",
                    ha="center", va="center", fontsize=6)
        own = raw[func][3]
        if level >= depth or own <= 0:
            return
        x = left
        for edge, kid in sorted(children.get(func, ()), key=lambda e: -e[0]):
            share = width * min(edge / own, 1.0)
            if kid in seen or share < total * smallest:
                continue
            place(kid, x, share, level + 1, seen | {kid})
            x += share

    place(root, 0.0, total, 0, {root})
    ax.set_xlim(0, total)
    ax.set_yticks([])
    ax.set_xlabel("seconds under cProfile")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=cmap(i), label=name)
                       for name, i in (*groups.items(), ("built-in", 7), ("other", 8))],
              loc="lower right", fontsize=7, ncol=6, title="package", title_fontsize=7)
    ax.set_title(f"{path}: icicle chart of the cProfile run (a function's callees below it, width: time under it)")


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "streams"], cwd=REPO, capture_output=True, text=True,
                               check=False)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg": os.getloadavg(), "cpu_pressure": cpu_pressure()}


def cpu_pressure() -> str | None:
    """The kernel's CPU pressure line (share of time some task waited for a CPU): other load on a shared machine."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="match events of the default scenario")
    parser.add_argument("--quick", action="store_true", help="20,000 events, no cProfile runs and no image")
    parser.add_argument("--path", choices=("replay", "worker", "live"), action="append",
                        help="only this path (repeatable); live needs Kafka")
    parser.add_argument("--clickhouse", default=os.environ.get("FAIRWATCH_CLICKHOUSE_MIGRATOR")
                        or os.environ.get("FAIRWATCH_CLICKHOUSE"), help="server for the worker path's inserts")
    parser.add_argument("--no-server", action="store_true", help="worker path: build rows, send nothing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--pstats", type=Path, help="keep the cProfile runs' pstats files in this directory")
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events
    paths = args.path or (["replay", "worker"] if args.quick else ["replay", "worker", "live"])
    if args.no_server and "live" in paths:
        parser.error("--no-server: the live worker writes to a server; leave out --path live")
    server = kafka = None
    if "live" in paths:  # as bench_pipeline: FAIRWATCH_KAFKA / FAIRWATCH_CLICKHOUSE, or the local stack
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_pipeline as pipeline
        kafka, writer = pipeline.services()
        server = args.clickhouse or pipeline.migrator(writer)
    if "worker" in paths and not args.no_server and server is None:
        server = args.clickhouse
        if not server:
            from fairwatch.testing.stack import ensure_stack
            stack = ensure_stack()
            server = stack.get("FAIRWATCH_CLICKHOUSE_MIGRATOR") or stack["FAIRWATCH_CLICKHOUSE"]

    server_pid = _stack_pid("clickhouse", server) if server else None
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="fairwatch-bench-profile-"))
    keep = args.pstats or tmp
    keep.mkdir(parents=True, exist_ok=True)
    result = {"commit": commit(), "machine_at_start": machine(), "events": events, "scenario": "default",
              "server_inserts": bool(server), "paths": {}}
    stats_paths = {}
    try:
        workload = make_workload(events, tmp / "sim")
        result["workload"] = {k: v for k, v in workload.items() if k in ("match_events", "verified_outcomes")}
        modes = ("plain", "phases") if args.quick else ("plain", "phases", "cprofile")
        for path in [p for p in paths if p != "live"]:
            runs = {}
            for mode in modes:
                stats_paths[path] = str(keep / f"{path}.pstats")
                name = None
                if path == "replay":
                    target = str(tmp / f"chdb-{mode}")
                else:
                    target, name = server_database(server)
                try:
                    runs[mode] = in_fresh_process(path, mode, workload, target, stats_paths[path],
                                                  server_pid if path == "worker" else None)
                finally:
                    if name:
                        drop_database(server, name)
                print(f"{path} {mode}: {runs[mode]['wall_s']:.2f} s", flush=True)
            if "cprofile" in runs:
                runs["cprofile"]["top_functions"] = top_functions(stats_paths[path])
            result["paths"][path] = runs
        if "live" in paths:
            live = {}
            for mode in ("plain", "cprofile"):
                live[mode] = run_live(workload, mode, kafka, server, str(keep / "live.pstats"))
                print(f"live {mode}: {live[mode]['steady_s']:.2f} s from the first batch to drained", flush=True)
            live["cprofile"]["main_thread"] = live_functions(str(keep / "live.pstats"), live["cprofile"]["records"])
            result["live"] = live
        result["table"] = table(result)
        if not args.quick and result["paths"]:
            draw(result, stats_paths, args.image)
            result["image"] = str(args.image.relative_to(REPO)) if args.image.is_relative_to(REPO) else str(args.image)
    finally:  # the workload and the stores; --pstats names a directory of its own, kept
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine_at_end"] = machine()
    print_table(result)
    if "live" in result:
        print_live(result["live"])
    from fairwatch.testing.bench import write_results
    write_results(args.out, result, started)


if __name__ == "__main__":
    main()
