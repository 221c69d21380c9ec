"""End-to-end throughput of one ``fairwatch worker`` against two bare baselines on the same messages.

Run by ``make bench`` (not a test) against the local stack (``scripts/stack up``) or the services
named by FAIRWATCH_KAFKA / FAIRWATCH_CLICKHOUSE. Steps:

1. A workload of N match events and their verified outcomes (``tests.workload.make_workload``,
   no duplicates, no malformed messages) is produced twice to fresh input topics (8 partitions):
   ``single``, one JSON record per Kafka message (kafka-python, keyed by event_id), and
   ``batch100``, batch envelopes of up to 100 records built by the producer SDK
   (``fairwatch.producer.FairwatchProducer``).
2. Each consumer below reads all of one input set in its own consumer group, in its own process,
   alone on the machine (one after the other):

   - ``aiokafka[...]``: a bare AIOKafkaConsumer, ``getmany`` + ``json.loads`` + count of the
     records (an envelope's records are decoded by the same ``json.loads``), commit at the end;
   - ``faust[single]``: a minimal faust app (raw serializers, ``take_events``, ``json.loads`` + count);
   - ``fairwatch[single]`` / ``fairwatch[batch100]``: one ``fairwatch worker`` (table store
     ``--store``, default rocksdb as in production) with its own ClickHouse database (decode,
     join, ClickHouse rows, the flush that recomputes the touched counts and persists the join
     state, offset commits). It runs as in production: its ClickHouse writes in its sink process
     (``fairwatch.stream.write_executor``), both processes with the garbage-collector tuning of
     ``fairwatch.stream.gctuning`` (frozen start-up objects, fewer collections).

Times are wall clock from the process spawn. ``startup`` ends when the consumer is ready (first
message for the baselines; for the worker, when /healthz lists assigned input partitions or,
if earlier, when it began its first batch: ``fairwatch_first_batch_timestamp_seconds``).
``processed`` is when the last message was handled (the baselines count them; the worker's
``fairwatch_consumed_messages`` reaches the total), ``drained`` when the group's committed offsets
reach the end of every input partition (the worker flushes and commits as soon as it has read
every input partition to its end, else every ``FAIRWATCH_COMMIT_SECONDS``); as the aiokafka
baseline reports the time of its one commit, the worker's drain ends at the time of its commit
that got there (``fairwatch_offsets_committed_timestamp_seconds``), not at this script's next
poll. Rates: *records/s* = input records (match events + outcomes) per second of steady state
(ready -> processed / drained); *match events/s* counts only the events. The targets of issue 10:
``fairwatch[batch100]`` >= 100k records/s or >= 1.0x ``aiokafka[batch100]``; ``fairwatch[single]``
>= 4k records/s.

Where the worker's time goes: its ``fairwatch_batch_phase_seconds_total``, and the CPU seconds
used from ready to drained by the worker, its sink process, Kafka and ClickHouse (sampled from
/proc every 50 ms; the services only when they are the local stack's).

Everything the run creates (topics, consumer groups, ClickHouse databases, table data) is
deleted at the end. Prints a table and writes ``benchmarks/results/pipeline.json``.
``--only NAME`` (repeatable) runs some consumers, for a quick look: without the three the targets
need, nothing is judged and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse, urlunparse

from fairwatch.contracts.kafka_link import KafkaLink

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests.* helpers (workload, worker processes)
    sys.path.insert(0, str(REPO))

RESULTS = Path(__file__).parent / "results" / "pipeline.json"
INPUTS = ("match-events", "verified-outcomes")
MARK = "BENCH "  # stdout lines of the baseline subprocesses that carry measurements
POLL = 0.2
CONSUMERS = ("aiokafka[single]", "aiokafka[batch100]", "faust[single]", "fairwatch[single]", "fairwatch[batch100]")


# ---------------------------------------------------------------- baseline processes (children)

def emit(**fields) -> None:
    print(MARK + json.dumps(fields), flush=True)


def run_aiokafka_child() -> None:
    """A bare aiokafka consumer: one process, one consumer group, getmany, json-decode, count."""
    from aiokafka import AIOKafkaConsumer

    kafka, group, total = os.environ["BENCH_KAFKA"], os.environ["BENCH_GROUP"], int(os.environ["BENCH_TOTAL"])
    topics = os.environ["BENCH_TOPICS"].split(",")

    async def main() -> None:
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=kafka, group_id=group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **KafkaLink.from_env().aiokafka_kwargs())
        await consumer.start()
        counts = dict.fromkeys(topics, 0)
        n, first = 0, None
        try:
            while n < total:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                if batch and first is None:
                    first = time.time()
                    emit(first=first)
                for tp, messages in batch.items():
                    records = 0
                    for m in messages:
                        doc = json.loads(m.value)
                        records += len(doc["records"]) if "batch_version" in doc else 1
                    counts[tp.topic] += records
                    n += records
            emit(done=time.time(), count=n, by_topic=counts)
            await consumer.commit()
            emit(committed=time.time())
        finally:
            await consumer.stop()

    asyncio.run(main())


def run_faust_child() -> None:
    """A bare faust agent: raw serializers, take_events batches, json-decode, count."""
    import faust
    from fairwatch.stream.app import broker_credentials

    kafka, group, total = os.environ["BENCH_KAFKA"], os.environ["BENCH_GROUP"], int(os.environ["BENCH_TOTAL"])
    topics = os.environ["BENCH_TOPICS"].split(",")
    app = faust.App(group, broker=f"kafka://{kafka}", store="memory://", web_enabled=False,
                    broker_credentials=broker_credentials(KafkaLink.from_env()),
                    datadir=os.environ["BENCH_DATADIR"],
                    topic_partitions=int(os.environ["BENCH_PARTITIONS"]), consumer_auto_offset_reset="earliest")
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    state = {"n": 0, "by_topic": dict.fromkeys(topics, 0)}

    @app.agent(source, concurrency=1)
    async def count(stream):
        async for events in stream.take_events(5000, within=0.5):
            if state["n"] == 0:
                emit(first=time.time())
            for e in events:
                json.loads(e.message.value)
                state["by_topic"][e.message.topic] += 1
            state["n"] += len(events)
            if state["n"] >= total:
                emit(done=time.time(), count=state["n"], by_topic=state["by_topic"])

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


# ---------------------------------------------------------------- the benchmark (parent)

def kafka_admin(kafka: str):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=kafka, client_id="fairwatch-bench-pipeline",
                            **KafkaLink.from_env().kafka_python_kwargs())


class Lag:
    """Committed-offset lag of a consumer group over the input topics (end offsets fixed after produce)."""

    def __init__(self, kafka: str, topics: list[str], partitions: int):
        from kafka import KafkaConsumer, TopicPartition
        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer = KafkaConsumer(bootstrap_servers=kafka, **KafkaLink.from_env().kafka_python_kwargs())
        self.ends = consumer.end_offsets(self.tps)
        consumer.close()
        self.admin = kafka_admin(kafka)

    def __call__(self, group: str) -> int:
        committed = self.admin.list_group_offsets({group: self.tps}).get(group, {})
        return sum(self.ends[tp] - max(committed[tp].offset, 0) if tp in committed else self.ends[tp]
                   for tp in self.tps)


def produce(kafka: str, prefix: str, messages) -> float:
    from kafka import KafkaProducer
    started = time.perf_counter()
    producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=20, batch_size=512 * 1024, acks=1,
                             **KafkaLink.from_env().kafka_python_kwargs())
    for kind, key, value in messages:
        producer.send(prefix + kind, key=key, value=value)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


class CpuSampler:
    """CPU seconds used by the worker's main process, its sink process, Kafka and ClickHouse,
    sampled every 50 ms from /proc (Linux only; the services only when they are the local stack's,
    whose pid files say which processes they are)."""

    TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, worker_pid: int, service_pids: dict[str, int]):
        self.worker_pid, self.service_pids = worker_pid, service_pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._members: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _seconds(self, pid: int | str) -> tuple[float, int] | None:
        """(user + system CPU seconds, process group) of one process, None once it is gone."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self.TICK, int(fields[2])

    def _sample(self) -> None:
        now, sample = time.time(), {}
        for name, pid in self.service_pids.items():
            found = self._seconds(pid)
            if found:
                sample[name] = found[0]
        if len(self.samples) % 10 == 0:  # the worker runs in its own session: its group is its processes
            self._members = [int(e.name) for e in os.scandir("/proc")
                             if e.name.isdigit() and (self._seconds(e.name) or (0, 0))[1] == self.worker_pid]
        for pid in self._members:
            found = self._seconds(pid)
            if found:  # gone: no longer counted (a sink process replaced mid-run would undercount)
                role = "worker" if pid == self.worker_pid else "sink process"
                sample[role] = sample.get(role, 0.0) + found[0]
        self.samples.append((now, sample))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.05)

    def __enter__(self) -> CpuSampler:
        if Path("/proc/self/stat").exists():
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self._sample()  # one after everything measured (the worker is still running)

    def between(self, start: float, end: float) -> dict | None:
        """CPU seconds per process from the last sample at or before ``start`` to the first at or
        after ``end``; None if the samples do not cover that span."""
        before = [(t, s) for t, s in self.samples if t <= start]
        after = [(t, s) for t, s in self.samples if t >= end]
        if not before or not after:
            return None
        (first_time, first), (last_time, last) = before[-1], after[0]
        used = {name: max(0.0, last.get(name, 0.0) - first.get(name, 0.0)) for name in sorted(set(first) | set(last))}
        return {"seconds": used, "total": sum(used.values()), "wall": last_time - first_time}


def service_pids() -> dict[str, int]:
    """Kafka's and ClickHouse's pids when the benchmark uses the local stack (none for external services)."""
    from fairwatch.testing.stack import local_stack_dir
    if os.environ.get("FAIRWATCH_KAFKA") and os.environ.get("FAIRWATCH_CLICKHOUSE"):
        return {}  # services() uses them (local_stack_dir() would start the stack if Alertmanager is unset)
    state = local_stack_dir()
    found = {}
    for name, label in (("kafka", "Kafka"), ("clickhouse", "ClickHouse")):
        try:
            found[label] = int((state / "run" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            pass
    return found


def rates(total: int, events: int, ready: float, processed: float, drained: float) -> dict:
    steady, to_drain = processed - ready, drained - ready
    return {
        "records_per_s": total / steady, "match_events_per_s": events / steady,
        "records_per_s_drained": total / to_drain, "match_events_per_s_drained": events / to_drain,
    }


def run_baseline(kind: str, ctx, inp, group: str, timeout: float) -> dict:
    log_path = ctx.tmp / f"{kind}-{inp.name}.log"
    env = {**os.environ, "BENCH_KAFKA": ctx.kafka, "BENCH_GROUP": group, "BENCH_TOTAL": str(inp.total),
           "BENCH_TOPICS": ",".join(inp.topics), "BENCH_PARTITIONS": str(ctx.partitions),
           "BENCH_DATADIR": str(ctx.tmp / f"{kind}-{inp.name}-data")}
    spawned = time.time()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, __file__, f"--child={kind}"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    ctx.groups.append(group)
    marks: dict = {}
    drained = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for line in log_path.read_text(errors="replace").splitlines():
                if MARK in line:  # faust routes print() through its logging: the mark is mid-line
                    marks.update(json.loads(line[line.index(MARK) + len(MARK):]))
            if "committed" in marks or "done" in marks and inp.lag(group) == 0:
                drained = time.time()
                break
            if process.poll() is not None and "committed" not in marks:
                raise RuntimeError(f"{kind} baseline exited with {process.returncode}:\n{tail(log_path)}")
            time.sleep(POLL)
        else:
            raise RuntimeError(f"{kind} baseline not drained after {timeout:.0f}s:\n{tail(log_path)}")
    finally:
        stop_process(process)
    if marks["count"] != inp.total or marks["by_topic"] != inp.by_topic:
        raise RuntimeError(f"{kind} counted {marks['by_topic']}, expected {inp.by_topic}")
    drained = marks.get("committed", drained)  # aiokafka commits once, synchronously, at the end
    ready, processed = marks["first"], marks["done"]
    return {"startup_s": ready - spawned, "process_s": processed - ready, "drain_s": drained - ready,
            "total_s": drained - spawned, **rates(inp.total, inp.events, ready, processed, drained)}


def run_worker(store: str, ctx, inp, timeout: float) -> dict:
    from fairwatch.testing.live import WorkerProcess

    tag = f"{ctx.tag}_{inp.name}"
    group = f"bench-fairwatch-{ctx.tag}-{inp.name}"
    database = f"bench_pipeline_{tag}"
    base = urlparse(ctx.clickhouse)
    setup = SimpleNamespace(tmp_path=ctx.tmp, env={
        **os.environ,
        "FAIRWATCH_KAFKA": ctx.kafka,
        "FAIRWATCH_CLICKHOUSE": urlunparse(base._replace(path=f"/{database}")),
        "FAIRWATCH_TOPIC_PREFIX": inp.prefix,
        "FAIRWATCH_PARTITIONS": str(ctx.partitions),
        "FAIRWATCH_APP_ID": group,
        "FAIRWATCH_TABLE_STORE": f"{store}://",
        "FAIRWATCH_INTERSECTIONS": "sex&race",
        "FAIRWATCH_SESSION_TIMEOUT": "10",
    })  # batch size / within: the worker's defaults
    ctx.groups.append(group)
    create_database(ctx, database)
    spawned = time.time()
    worker = WorkerProcess(setup, inp.name)
    ready = processed = drained = None
    deadline = time.monotonic() + timeout
    try:
        cpu = CpuSampler(worker.process.pid, ctx.service_pids)
        with cpu:
            while time.monotonic() < deadline:
                if not worker.alive():
                    raise RuntimeError(f"worker died:\n{worker.log_tail()}")
                now = time.time()
                if ready is None:
                    health = worker.health()
                    if health and len(health["input_partitions"]) == len(inp.topics) * ctx.partitions:
                        ready = now
                elif processed is None:
                    if consumed(worker.metrics_text()) >= inp.total:
                        processed = now
                elif inp.lag(group) == 0:
                    # the worker's own time of its last commit, as the aiokafka baseline reports its one
                    # commit: not this loop's polling interval (a later, empty commit only moves it later)
                    text = worker.metrics_text()
                    committed_at = metric_values(text, "fairwatch_offsets_committed_timestamp_seconds", None).get("", 0.0)
                    drained = min(now, committed_at) if committed_at > 0 else now
                    break
                time.sleep(POLL)
            else:
                raise RuntimeError(f"worker[{inp.name}] not drained after {timeout:.0f}s:\n{worker.log_tail()}")
    finally:
        worker.stop()

    # /healthz answers late while a batch blocks the loop: if the first batch began before we saw
    # the worker ready, the steady state starts there (as for the baselines: their first message)
    first_batch = metric_values(text, "fairwatch_first_batch_timestamp_seconds", None).get("", 0.0)
    if 0 < first_batch < ready:
        ready = first_batch
    by_topic = metric_values(text, "fairwatch_consumed_records_total", "topic")
    if by_topic != {kind: float(inp.by_topic[inp.prefix + kind]) for kind in INPUTS}:
        raise RuntimeError(f"worker[{inp.name}] consumed {by_topic}, expected {inp.by_topic}")
    rejected = sum(metric_values(text, "fairwatch_rejected_messages_total", "reason").values())
    phases = metric_values(text, "fairwatch_batch_phase_seconds_total", "phase")
    batches = metric_values(text, "fairwatch_batch_messages_count", None).get("", 0.0)
    return {"startup_s": ready - spawned, "process_s": processed - ready, "drain_s": drained - ready,
            "total_s": drained - spawned, **rates(inp.total, inp.events, ready, processed, drained),
            "phase_seconds": phases, "batches": int(batches), "rejected": int(rejected),
            "cpu": cpu.between(ready, drained)}


def consumed(text: str) -> float:
    return sum(metric_values(text, "fairwatch_consumed_records_total", "topic").values())


def metric_values(text: str, name: str, label: str | None) -> dict[str, float]:
    """Samples of one metric from Prometheus text: label value -> number."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})?\s+(\S+)$")
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            out[labels.get(label, "") if label else ""] = float(m.group(2))
    return out


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def cleanup(ctx) -> None:
    """Delete the benchmark's topics (inputs, outputs, changelogs, assignor), groups and databases."""
    from fairwatch.testing.live import delete_resources

    errors = delete_resources(ctx.kafka, tuple(i.prefix for i in ctx.inputs) + tuple(g + "-" for g in ctx.groups),
                              ctx.groups, migrator(ctx.clickhouse), ctx.databases)
    if ctx.keep_logs:
        print(f"worker logs and data kept in {ctx.tmp}")
    else:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    if errors:
        print("cleanup incomplete: " + "; ".join(errors), file=sys.stderr)


def services() -> tuple[str, str]:
    if os.environ.get("FAIRWATCH_KAFKA") and os.environ.get("FAIRWATCH_CLICKHOUSE"):
        return os.environ["FAIRWATCH_KAFKA"], os.environ["FAIRWATCH_CLICKHOUSE"]
    from fairwatch.testing.stack import ensure_stack, kafka_env
    stack = ensure_stack()
    # every client here, the baseline children and the workers connect as the stack's admin: a
    # benchmark measures throughput, not least privilege (file paths only, no password)
    os.environ.update(kafka_env(stack, "admin"))
    if stack.get("FAIRWATCH_CLICKHOUSE_MIGRATOR"):  # the writer may not create databases (migrator())
        os.environ.setdefault("FAIRWATCH_CLICKHOUSE_MIGRATOR", stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"])
    return stack["FAIRWATCH_KAFKA"], stack["FAIRWATCH_CLICKHOUSE"]


def migrator(clickhouse: str) -> str:
    """The ClickHouse URL allowed DDL: the secure stack's workers write as ``writer``, which may not
    create, migrate or drop the run's databases (FAIRWATCH_CLICKHOUSE_MIGRATOR; else the same URL)."""
    return os.environ.get("FAIRWATCH_CLICKHOUSE_MIGRATOR") or clickhouse


def create_database(ctx, database: str) -> None:
    """The run's database, made and migrated as the migrator before a worker writes to it."""
    from contextlib import closing

    from fairwatch.store.clickhouse import open_store
    from fairwatch.store.migrations import migrate
    from fairwatch.testing.stack import server_url
    ctx.databases.append(database)
    with closing(open_store(server_url(migrator(ctx.clickhouse), database))) as admin:
        migrate(admin)


def produce_batched(kafka: str, prefix: str, workload, partitions: int) -> tuple[float, int]:
    from fairwatch.producer import FairwatchProducer
    started = time.perf_counter()
    with FairwatchProducer(kafka, topic_prefix=prefix, partitions=partitions, max_records=100, linger=0.2,
                           validate=False) as producer:
        for kind, _, value in workload.messages:
            doc = json.loads(value)
            (producer.send_event if kind == "match-events" else producer.send_outcome)(doc)
        messages = producer.sent_messages
    return time.perf_counter() - started, messages


def input_set(ctx, name: str, workload) -> SimpleNamespace:
    prefix = f"bench-{ctx.tag}-{name}."
    inp = SimpleNamespace(name=name, prefix=prefix, topics=[prefix + k for k in INPUTS])
    inp.by_topic = {t: 0 for t in inp.topics}
    for kind, _, _ in workload.messages:
        inp.by_topic[prefix + kind] += 1
    inp.total, inp.events = len(workload.messages), inp.by_topic[prefix + "match-events"]
    ctx.inputs.append(inp)
    return inp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="match events in the workload")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--store", default="rocksdb", help="table store of the worker runs (rocksdb or memory)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this consumer (repeatable), e.g. 'fairwatch[batch100]'; "
                             "ratios and targets need the baselines they compare with")
    parser.add_argument("--keep-logs", action="store_true", help="keep the runs' logs and data directories")
    parser.add_argument("--child", choices=("aiokafka", "faust"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "aiokafka":
        return run_aiokafka_child()
    if args.child == "faust":
        return run_faust_child()

    unknown = set(args.only or ()) - set(CONSUMERS)
    if unknown:
        parser.error(f"--only: no consumer named {', '.join(sorted(unknown))}; choose from {', '.join(CONSUMERS)}")

    from fairwatch.stream.topics import ensure_topics
    from fairwatch.testing.workload import make_workload

    kafka, clickhouse = services()
    tag = uuid.uuid4().hex[:8]
    ctx = SimpleNamespace(kafka=kafka, clickhouse=clickhouse, service_pids=service_pids(), tag=tag,
                          partitions=args.partitions, inputs=[], keep_logs=args.keep_logs,
                          groups=[], databases=[], tmp=Path(tempfile.mkdtemp(prefix="fairwatch-bench-pipeline-")))
    started = time.perf_counter()
    runs: dict[str, dict] = {}
    try:
        workload = make_workload(args.events, seed=7, duplicate_share=0.0, malformed_share=0.0)
        single, batched = input_set(ctx, "single", workload), input_set(ctx, "batch100", workload)
        sizes = [len(v) for _, _, v in workload.messages]
        chosen = args.only or CONSUMERS
        needed = [inp for inp in (single, batched) if any(name.endswith(f"[{inp.name}]") for name in chosen)]
        for inp in needed:
            ensure_topics(kafka, inp.prefix, args.partitions)
        if single in needed:
            single.produce_s, single.messages = produce(kafka, single.prefix, workload.messages), single.total
        if batched in needed:
            batched.produce_s, batched.messages = produce_batched(kafka, batched.prefix, workload, args.partitions)
        del workload
        for inp in needed:
            inp.lag = Lag(kafka, inp.topics, args.partitions)
            print(f"{inp.name}: produced {inp.total:,} records ({inp.events:,} match events + "
                  f"{inp.total - inp.events:,} outcomes, mean {sum(sizes) / len(sizes):.0f} B) in "
                  f"{inp.messages:,} messages to {args.partitions} partitions in {inp.produce_s:.1f}s", flush=True)

        plan = [("aiokafka[single]", lambda: run_baseline("aiokafka", ctx, single, f"bench-aiokafka-s-{tag}", args.timeout)),
                ("aiokafka[batch100]", lambda: run_baseline("aiokafka", ctx, batched, f"bench-aiokafka-b-{tag}", args.timeout)),
                ("faust[single]", lambda: run_baseline("faust", ctx, single, f"bench-faust-{tag}", args.timeout)),
                ("fairwatch[single]", lambda: run_worker(args.store, ctx, single, args.timeout)),
                ("fairwatch[batch100]", lambda: run_worker(args.store, ctx, batched, args.timeout))]
        for name, run in plan:
            if args.only and name not in args.only:
                continue
            runs[name] = run()
            print(f"  {name} done ({runs[name]['total_s']:.1f}s)", flush=True)
    finally:
        cleanup(ctx)

    for name, run in runs.items():
        if name.startswith("fairwatch"):
            kind = name[name.index("["):]
            for basis in (b for b in (f"aiokafka{kind}", "aiokafka[batch100]", "faust[single]") if b in runs):
                run[f"ratio_vs_{basis}"] = run["records_per_s"] / runs[basis]["records_per_s"]
                run[f"ratio_vs_{basis}_drained"] = run["records_per_s_drained"] / runs[basis]["records_per_s_drained"]
    if not {"aiokafka[batch100]", "fairwatch[batch100]", "fairwatch[single]"} <= runs.keys():
        report(runs, ctx, None)
        print("targets not judged: --only left out a run they need; nothing written")
        return
    targets = {
        "batched_records_per_s": runs["fairwatch[batch100]"]["records_per_s_drained"],
        "batched_vs_aiokafka_batch100": runs["fairwatch[batch100]"]["ratio_vs_aiokafka[batch100]_drained"],
        "batched_target_met": runs["fairwatch[batch100]"]["records_per_s_drained"] >= 100_000
        or runs["fairwatch[batch100]"]["ratio_vs_aiokafka[batch100]_drained"] >= 1.0,
        "single_records_per_s": runs["fairwatch[single]"]["records_per_s_drained"],
        "single_target_met": runs["fairwatch[single]"]["records_per_s_drained"] >= 4_000,
    }
    report(runs, ctx, targets)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "workload": {"match_events": single.events, "outcomes": single.total - single.events, "records": single.total,
                     "messages": {i.name: i.messages for i in ctx.inputs}, "partitions": args.partitions,
                     "produce_s": {i.name: i.produce_s for i in ctx.inputs},
                     "mean_record_bytes": sum(sizes) / len(sizes), "table_store": args.store},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_end": os.getloadavg()},
        "runs": runs, "targets": targets, "wall_s": time.perf_counter() - started,
    }, indent=2) + "\n")
    print(f"wrote {args.json}  (whole run {time.perf_counter() - started:.0f}s)")


def report(runs: dict[str, dict], ctx, targets: dict | None) -> None:
    single = ctx.inputs[0]
    print(f"\n{single.total:,} input records = {single.events:,} match events + {single.total - single.events:,} "
          "outcomes; steady state = ready -> last record processed (-> offsets committed)")
    header = (f"{'consumer (1 process)':<20} {'startup s':>9} {'steady s':>15} {'records/s':>17} "
              f"{'match events/s':>15} {'vs aiokafka[same]':>18} {'vs aiokafka[batch100]':>22}")
    print(header)
    print("-" * len(header))
    for name, r in runs.items():
        same = next((v for k, v in r.items() if k.startswith("ratio_vs_aiokafka") and k.endswith("_drained")
                     and name[name.index("["):] in k), None)
        batch = r.get("ratio_vs_aiokafka[batch100]_drained")
        print(f"{name:<20} {r['startup_s']:>9.1f} {r['process_s']:>6.1f} ({r['drain_s']:>6.1f}) "
              f"{r['records_per_s']:>8,.0f} ({r['records_per_s_drained']:>6,.0f}) {r['match_events_per_s']:>15,.0f} "
              f"{'-' if same is None else f'{same:.3f}':>18} {'-' if batch is None else f'{batch:.3f}':>22}")
    for name, r in runs.items():
        if "phase_seconds" in r:
            phases = ", ".join(f"{p} {s:.1f}s" for p, s in sorted(r["phase_seconds"].items(), key=lambda x: -x[1]))
            rest = r["process_s"] - sum(r["phase_seconds"].values())
            print(f"{name} batch phases: {phases}; outside the batch phases (faust, fetch, waits) {rest:.1f}s; "
                  f"{r['batches']} batches")
        if r.get("cpu"):
            used = ", ".join(f"{p} {s:.2f}" for p, s in r["cpu"]["seconds"].items())
            print(f"{name} CPU seconds from ready to drained: {used}; total {r['cpu']['total']:.2f} in "
                  f"{r['cpu']['wall']:.2f}s = {r['cpu']['total'] / r['cpu']['wall']:.2f} of {os.cpu_count()} cores")
    if targets is None:
        return
    print(f"targets (drained rates): batched {targets['batched_records_per_s']:,.0f} records/s, "
          f"{targets['batched_vs_aiokafka_batch100']:.3f}x aiokafka[batch100] -> "
          f"{'met' if targets['batched_target_met'] else 'NOT met'} (>= 100k/s or >= 1.0x); single "
          f"{targets['single_records_per_s']:,.0f} records/s -> {'met' if targets['single_target_met'] else 'NOT met'} (>= 4k/s)")


if __name__ == "__main__":
    main()
