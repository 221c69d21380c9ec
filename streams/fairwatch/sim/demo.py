"""``fairwatch demo`` (``make demo``): fairwatch catching an injected bias drift, end to end.

One command runs the whole story against real services:

1. **services**: uses ``FAIRWATCH_KAFKA`` / ``FAIRWATCH_CLICKHOUSE`` / ``FAIRWATCH_ALERTMANAGER``
   when all three are set, else the local stack (``scripts/stack up``, started here only if it
   was not running, and then stopped again at the end);
2. **a fresh deployment**: its own topic prefix, consumer group (``FAIRWATCH_APP_ID``) and
   ClickHouse database per run, so a rerun never sees an earlier run's data; topics and
   migrations are created, then ``workers`` ``fairwatch worker`` processes are started;
3. **traffic**: the scenario (packaged ``demo``: one gate, one injected drift, race=Black's FMR
   x5 after one hour; race=Black's acquisition attempts fail 3x as often; a few acted-on
   identifications confirmed by one verifier only) is simulated with its event time ending now,
   written to JSONL with its ground truth (``truth.json``), and published to Kafka (events,
   outcomes and acquisition attempts) paced so that the hours of event time take ``seconds`` of
   wall time, with a progress display (produced, committed, labeled);
4. **drained**: waits until the workers' consumer group has committed every offset of the three topics;
5. **detection**: the workers get the demo's policy (``FAIRWATCH_POLICIES``) and run the
   detection cycle (:func:`fairwatch.detect.cycle.run_detection`) every ``DETECT_SECONDS`` while the
   traffic flows (the progress display shows what they raise); after draining the demo runs one
   more cycle itself, so the final state covers every bucket; incidents go to the ``alerts``
   table, the alerts topic and Alertmanager;
6. **the story**: per-group FMR / FNMR with 95% intervals before and after the drift next to the
   true rates, the differentials, the alerts with their detection delay after the injected
   drift time, failure to acquire per group (naming the highest) and the acted-on
   identifications not confirmed by two people, where the data sits in ClickHouse and a query
   to try; the same, with plots, in
   ``summary.html``; machine-readable in ``summary.json``.

Everything started here (workers, the stack if this run started it) is stopped on the way out,
also on Ctrl-C or SIGTERM.

Examples
--------
The scenario's clock is moved so that its event time ends at a given minute; drifts move along:

>>> from datetime import datetime, timezone
>>> from fairwatch.sim.scenario import load_scenario
>>> demo = load_scenario("demo")
>>> moved = shift_scenario(demo, datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc))
>>> moved.start.isoformat(), moved.drifts[0].at.isoformat()
('2030-01-01T10:00:00+00:00', '2030-01-01T11:00:00+00:00')

An alert is judged against the simulator's truth about which groups the drift touched:

>>> from fairwatch.sim.demo_results import classify_alert
>>> drift = {"at": "2030-01-01T11:00:00Z", "metric": "fmr", "group": {"race": "Black"}, "effects": [
...     {"deployment": "gate-a", "algorithm": "a1", "mode": "verification", "attribute": "race",
...      "label": "Black", "ratio": 3.0},
...     {"deployment": "gate-a", "algorithm": "a1", "mode": "verification", "attribute": "sex",
...      "label": "F", "ratio": 1.8}]}
>>> [classify_alert("gate-a", "a1", g, m, [drift])[0] for g, m in
...  [("race=Black", "fmr"), ("sex=F", "score"), ("race=White", "fmr"), ("race=Black", "fnmr")]]
['injected', 'affected', 'unaffected', 'unaffected']
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse, urlunparse

import numpy as np

from fairwatch.contracts.kafka_link import KafkaLink, role_env
from fairwatch.contracts.records import format_timestamp
from fairwatch.contracts.topics import ACQUISITIONS, MATCH_EVENTS, VERIFIED_OUTCOMES
from fairwatch.core.config import CoreConfig
from fairwatch.detect.policy import load_policy
from fairwatch.sim.demo_results import (
    ACQUISITION_LEAD,
    acquisition_results,
    acquisition_statements,
    alert_results,
    disparity_statements,
    pair_results,
    per_group_results,
    step_series,
    two_person_results,
    two_person_statements,
)
from fairwatch.sim.demo_summary import (
    delay_text,
    differential_rows,
    make_figures,
    render_html,
    short_number,
)
from fairwatch.sim.scenario import RateDrift, Scenario, ScenarioError, load_scenario
from fairwatch.sim.simulator import Simulation, simulate

REPO = Path(__file__).resolve().parents[3]
STACK_SCRIPT = REPO / "scripts" / "stack"
SERVICE_VARS = ("FAIRWATCH_KAFKA", "FAIRWATCH_CLICKHOUSE", "FAIRWATCH_ALERTMANAGER")
# how clients reach them: TLS, users, password files (scripts/stack exports them; external
# services may set them); the ClickHouse migrator and auditor default to FAIRWATCH_CLICKHOUSE
LINK_PREFIXES = tuple(f"FAIRWATCH_{service}_" for service in ("KAFKA", "CLICKHOUSE", "ALERTMANAGER"))
RUN_PREFIX = "fairwatch-demo-"  # topic prefix, consumer group and (with _) database of each run
KEEP_RUNS = 3  # earlier runs' topics and databases beyond this many are removed
DETECT_SECONDS = 10  # the workers' detection timer during the demo (production default 60)

# The demo's alerting policy (schemas/policy.schema.json); the baseline is the scenario's time
# before its first drift: an hour, short, so that the demo is quick; its ~100 false matches per
# group put the bound 1.6-2.0x above the rate, so the band stays at its default (1.0) and a 3x
# drift (the demo's is 5x) is still found within minutes (`fairwatch policy check` shows the power per group).
POLICY_TEMPLATE = """\
# Written by `fairwatch demo` for deployment {deployment}; keys in schemas/policy.schema.json.
deployment: {deployment}
attributes: [{attributes}]
metrics: [fmr, fnmr]
baseline: {{duration: {baseline}}}
baseline_confidence: 0.99
min_evidence: 300
policy_ratio: 10
false_alarms_per_day: 0.1
resolve_after: 30m
lookback: 1d
label_delay: 0s
score_drift: {{quantile: 0.99}}
routing: {{team: fairwatch-demo}}
"""


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


class Interrupted(BaseException):
    """SIGTERM, handled like Ctrl-C."""


# ---- scenario and truth ------------------------------------------------------------------------------


def shift_scenario(scenario: Scenario, end: datetime) -> Scenario:
    """The same scenario with its event time moved to end at ``end`` (drifts move along)."""
    delta = end - scenario.end

    def move(drift):
        changes = {"at": drift.at + delta}
        if isinstance(drift, RateDrift) and drift.until is not None:
            changes["until"] = drift.until + delta
        return replace(drift, **changes)

    return replace(scenario, start=scenario.start + delta, drifts=tuple(move(d) for d in scenario.drifts))


# ---- services ------------------------------------------------------------------------------------------


def _exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            out[name] = value
    return out


@dataclass
class Services:
    """Service addresses, and whether this run started the local stack (and so stops it)."""

    env: dict[str, str] = field(default_factory=dict)
    started_stack: bool = False

    def release(self, say: Callable[[str], None]) -> None:
        if self.started_stack:
            say("stopping the local stack this demo started (scripts/stack down)")
            subprocess.run([sys.executable, str(STACK_SCRIPT), "down"], stdout=subprocess.DEVNULL, check=False)
            self.started_stack = False


def acquire_services(services: Services, environ: dict[str, str], say: Callable[[str], None]) -> None:
    """Fill ``services`` (passed in so that a Ctrl-C during ``stack up`` still stops the stack)."""
    if all(environ.get(v) for v in SERVICE_VARS):
        services.env = {k: v for k, v in environ.items() if k in SERVICE_VARS or k.startswith(LINK_PREFIXES)}
        say("services: FAIRWATCH_KAFKA, FAIRWATCH_CLICKHOUSE and FAIRWATCH_ALERTMANAGER are set; using them")
        return
    stack = [sys.executable, str(STACK_SCRIPT)]
    running = subprocess.run([*stack, "status"], capture_output=True, text=True).returncode == 0
    if running:
        text = subprocess.run([*stack, "env"], capture_output=True, text=True, check=True).stdout
        say("services: the local stack is already running; using it (it stays running)")
    else:
        say("services: starting the local stack (Kafka, ClickHouse, Alertmanager): scripts/stack up")
        services.started_stack = True  # before `up`: a half-started stack is stopped too
        done = subprocess.run([*stack, "up"], stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise DemoError(f"scripts/stack up failed (exit {done.returncode}); see the messages above")
        text = done.stdout
    found = _exports(text)
    missing = [v for v in SERVICE_VARS if not found.get(v)]
    if missing:
        raise DemoError(f"scripts/stack did not give {', '.join(missing)}")
    services.env = {k: v for k, v in found.items() if k in SERVICE_VARS or k.startswith(LINK_PREFIXES)}


# ---- one isolated deployment: names, workers, progress -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url(base: str, database: str) -> str:
    url = urlparse(base)
    if url.scheme != "clickhouse":
        raise DemoError(f"the demo needs a ClickHouse server (FAIRWATCH_CLICKHOUSE=clickhouse://...), got {base!r}: "
                        "workers and the demo cannot share one embedded chDB directory")
    return urlunparse(url._replace(path=f"/{database}"))


class WorkerProcess:
    """One ``fairwatch worker`` in its own session (so a terminal's Ctrl-C reaches only the demo,
    which then stops it in order)."""

    def __init__(self, name: str, env: dict[str, str], out: Path):
        self.name = name
        self.web_port = _free_port()
        self.log_path = out / f"worker-{name}.log"
        worker_env = {**env, "FAIRWATCH_WEB_PORT": str(self.web_port), "FAIRWATCH_DATA_DIR": str(out / f"data-{name}")}
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "fairwatch.cli", "worker", "--loglevel", "warn"],
                                        env=worker_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=out,
                                        start_new_session=True)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> bool:
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def close(self) -> None:
        self._log.close()

    def labeled(self) -> float | None:
        """``fairwatch_labeled_outcomes_total`` from the worker's /metrics, None while it is not up."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=1) as response:
                text = response.read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            if family.name == "fairwatch_labeled_outcomes":
                return sum(s.value for s in family.samples if s.name.endswith("_total"))
        return 0.0

    def owned_partitions(self) -> set[tuple[str, int]] | None:
        """Input partitions assigned to this worker (/healthz), None while it is not serving."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=1) as response:
                return {(kind, int(p)) for kind, p in json.loads(response.read())["input_partitions"]}
        except (OSError, ValueError, KeyError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- worker {self.name} ({self.log_path}) ---\n" + "\n".join(text[-lines:])


def wait_assigned(workers: list[WorkerProcess], partitions: int, timeout: float = 180.0) -> float:
    """Wait until the workers split every input partition between them (the group is stable), so
    that no rebalance happens while the traffic flows; return the seconds it took."""
    began = time.monotonic()
    wanted = {(kind, p) for kind in (MATCH_EVENTS, VERIFIED_OUTCOMES) for p in range(partitions)}
    while True:
        for w in workers:
            if not w.alive():
                raise DemoError(f"worker {w.name} exited with status {w.process.returncode}:\n{w.log_tail()}")
        owned = [w.owned_partitions() for w in workers]
        if all(owned) and set().union(*owned) == wanted and sum(map(len, owned)) == len(wanted):
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise DemoError(f"the workers did not get their partitions within {timeout:.0f} s (owned: {owned})\n"
                            + "\n".join(w.log_tail() for w in workers))
        time.sleep(0.5)


def stop_workers(workers: list[WorkerProcess], timeout: float = 45.0) -> None:
    """SIGTERM to all at once (faust shuts down cleanly), SIGKILL to any still running after ``timeout``."""
    for w in workers:
        w.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for w in workers:
        if not w.wait(max(0.1, deadline - time.monotonic())):
            w.signal(signal.SIGKILL)
            w.wait(30)
        w.close()


class GroupOffsets:
    """Committed vs end offsets of the input topics for the workers' consumer group."""

    def __init__(self, kafka: str, group: str, topics: list[str], partitions: int, link: KafkaLink):
        from kafka import KafkaConsumer, TopicPartition

        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        # never subscribes, so it does not join the group: it only reads the group's offsets
        self.consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False,
                                      client_id="fairwatch-demo", **link.kafka_python_kwargs())

    def read(self) -> tuple[int, int]:
        """``(committed, end)`` summed over the input partitions."""
        ends = self.consumer.end_offsets(self.tps)
        done = sum(min(self.consumer.committed(tp) or 0, ends[tp]) for tp in self.tps)
        return done, sum(ends.values())

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class CountingWriter:
    """Counts what the simulator's writer sends (for the progress display) and lets a stop request through."""

    def __init__(self, inner, stop: threading.Event):
        self.inner, self.stop, self.sent = inner, stop, 0
        self.last_event_time = ""

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self.stop.is_set():
            raise Interrupted("publishing stopped")
        self.inner.send(topic, key, value)
        self.sent += 1

    def close(self) -> None:
        self.inner.close()


def prune_old_runs(kafka: str, clickhouse: str, current: str, keep: int, say: Callable[[str], None],
                   link: KafkaLink | None = None) -> None:
    """Remove the topics (and producer grants) and databases of earlier demo runs beyond the newest ``keep``."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import UnknownTopicOrPartitionError

    from fairwatch.store.clickhouse import open_store
    from fairwatch.stream.topics import producer_acls

    link = link or KafkaLink.from_env()
    admin = KafkaAdminClient(bootstrap_servers=kafka, client_id="fairwatch-demo-prune", **link.kafka_python_kwargs())
    run_of = re.compile(re.escape(RUN_PREFIX) + r"\d{14}-[0-9a-f]{4}")  # also in its -changelog topics' names
    try:
        topics = [t for t in admin.list_topics() if run_of.match(t)]
        runs = sorted({run_of.match(t).group(0) for t in topics} - {current.rstrip(".")})
        stale = set(runs[:max(0, len(runs) - keep)])
        doomed = [t for t in topics if run_of.match(t).group(0) in stale]
        for topic in doomed:  # one at a time: a topic already being deleted is no reason to stop
            try:
                admin.delete_topics([topic])
            except UnknownTopicOrPartitionError:
                pass
        if stale and link.sasl:
            admin.delete_acls([acl for run in sorted(stale) for acl in producer_acls(f"{run}.")])
    finally:
        admin.close()
    server = open_store(urlunparse(urlparse(clickhouse)._replace(path="/default")))
    try:
        prefix = RUN_PREFIX.replace("-", "_")
        names = sorted(r[0] for r in server.query("SELECT name FROM system.databases")
                       if r[0].startswith(prefix) and r[0] != current.rstrip(".").replace("-", "_"))
        for name in names[:max(0, len(names) - keep)]:
            server.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        server.close()
    if doomed or names[:max(0, len(names) - keep)]:
        say(f"removed {len(stale)} earlier demo run(s) (kept the newest {keep})")


# ---- results ---------------------------------------------------------------------------------------------


# ---- plots and the HTML summary ----------------------------------------------------------------------------


# ---- the run -------------------------------------------------------------------------------------------------


@dataclass
class DemoOptions:
    """What ``fairwatch demo`` runs: the scenario (name or file), overrides of its size and seed,
    the wall time its event time is compressed into, workers, partitions and the output directory."""

    scenario: str = "demo"
    events: int | None = None
    seed: int | None = None
    seconds: float = 60.0
    workers: int = 2
    partitions: int = 4
    out: Path = Path("demo-output")


def run_demo(options: DemoOptions, console=None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the demo; return the summary (also written to ``out/summary.json``). Stops what it starts."""
    from rich.console import Console

    console = console or Console()
    environ = dict(os.environ if environ is None else environ)
    say = lambda text: console.print(f"[dim]{text}[/dim]")  # noqa: E731
    services = Services()
    workers: list[WorkerProcess] = []
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if threading.current_thread() is threading.main_thread() else None
    try:
        return _run(options, console, environ, say, services, workers, stop)
    finally:
        stop.set()
        # a second Ctrl-C must not cut the cleanup short
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if previous is not None else None
        try:
            if workers:
                say(f"stopping {len(workers)} worker(s)")
                stop_workers(workers)
            services.release(say)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, previous)


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(f"signal {signum}")


def _run(options: DemoOptions, console, environ, say, services: Services, workers: list[WorkerProcess],
         stop: threading.Event) -> dict[str, Any]:
    from fairwatch.sim.demo_evidence import chain_of_custody
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    from fairwatch.sim.writers import open_kafka_writer, publish, write_jsonl
    from fairwatch.store.clickhouse import open_store, without_passwords
    from fairwatch.store.migrations import migrate
    from fairwatch.stream.topics import ensure_topics, grant_producer

    timings: dict[str, float] = {}
    began = time.monotonic()
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        scenario = load_scenario(options.scenario)
    except ScenarioError as exc:
        raise DemoError(f"invalid scenario: {exc}") from None
    if options.workers < 1 or options.partitions < options.workers:
        raise DemoError(f"need 1 <= workers <= partitions, got {options.workers} worker(s), {options.partitions} partitions")

    acquire_services(services, environ, say)
    kafka, clickhouse, alertmanager = (services.env[v] for v in SERVICE_VARS)
    timings["services"] = time.monotonic() - began

    run = f"{RUN_PREFIX}{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    prefix, database = f"{run}.", run.replace("-", "_")
    # least privilege: the migrator makes and migrates the run's database, the workers and this
    # process write as the writer, the commands printed at the end read as the auditor
    migrator = services.env.get("FAIRWATCH_CLICKHOUSE_MIGRATOR", clickhouse)
    store_url = _database_url(clickhouse, database)
    admin_link = KafkaLink.from_env(role_env(services.env, "admin"))
    producer_link = KafkaLink.from_env(role_env(services.env, "producer"))
    try:
        prune_old_runs(kafka, migrator, prefix, KEEP_RUNS, say, link=admin_link)
    except Exception as exc:  # housekeeping of earlier runs: said, never a reason to stop this one
        say(f"could not remove earlier demo runs ({without_passwords(str(exc))[:300]}); continuing")
    ensure_topics(kafka, prefix, options.partitions, app_id=run, link=admin_link)
    if producer_link.sasl:  # the simulated systems may write this run's input topics, nothing more
        grant_producer(kafka, prefix, link=admin_link)
    with closing(open_store(_database_url(migrator, database))) as admin:
        migrate(admin)
    store = open_store(store_url)
    say(f"run {run}: topics {prefix}*, consumer group {run}, ClickHouse database {database}")

    env = {**environ, **services.env, "FAIRWATCH_KAFKA": kafka, "FAIRWATCH_CLICKHOUSE": store_url,
           "FAIRWATCH_ALERTMANAGER": alertmanager,
           "FAIRWATCH_TOPIC_PREFIX": prefix, "FAIRWATCH_APP_ID": run, "FAIRWATCH_PARTITIONS": str(options.partitions),
           "FAIRWATCH_TABLE_STORE": "memory://", "FAIRWATCH_INTERSECTIONS": "", "FAIRWATCH_BATCH_WITHIN": "0.3",
           "FAIRWATCH_SESSION_TIMEOUT": "10", "FAIRWATCH_INSTANCE_ID": "",
           # workers that run the detection cycle on a timer do it every few seconds of the demo
           "FAIRWATCH_POLICIES": str(out / "policies"), "FAIRWATCH_DETECT_SECONDS": str(DETECT_SECONDS),
           **role_env(services.env, "worker")}  # the workers connect as the `worker` principal
    # the scenario, moved so that its event time ends now, to files (with the truth) and its policy
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    scenario = shift_scenario(scenario, now)
    sim: Simulation = simulate(scenario, seed=options.seed, events=options.events)
    paths = write_jsonl(sim, out / "sim")
    truth = json.loads(paths["truth"].read_text())
    policies = _write_policies(scenario, out / "policies")
    attempts = _acquisition_records(sim, paths)
    total = sim.n_events + sim.n_outcomes + (len(attempts[0]) if attempts else 0)
    expected_labeled = len(np.unique(sim.o_event))

    for i in range(options.workers):
        workers.append(WorkerProcess(f"w{i + 1}", env, out))
    say(f"started {len(workers)} fairwatch worker(s): pids {', '.join(str(w.pid) for w in workers)}; logs in {out}")
    with console.status("waiting for the workers to join the consumer group and split the partitions"):
        waited = wait_assigned(workers, options.partitions)
    say(f"the workers own all {2 * options.partitions} input partitions ({waited:.0f} s)")
    (out / "pids.json").write_text(json.dumps({"workers": [w.pid for w in workers],
                                               "stack_started": services.started_stack}))
    timings["setup"] = time.monotonic() - began - timings["services"]

    writer = CountingWriter(open_kafka_writer(kafka, link=producer_link), stop)
    rate = sim.n_events / max(1.0, options.seconds)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            publish(sim, writer, prefix=prefix, rate=rate, sleep=lambda s: stop.wait(s), acquisitions=attempts)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)

    hours = scenario.duration_hours
    tries = f", {len(attempts[0])} acquisition attempts" if attempts else ""
    console.print(f"[bold]Simulating[/bold] {sim.n_events} match events{tries} and {sim.n_outcomes} verified outcomes: "
                  f"{hours:g} h of event time ({format_timestamp(scenario.start)} .. {format_timestamp(scenario.end)}) "
                  f"in ~{options.seconds:.0f} s of wall time; "
                  + "; ".join(f"drift [yellow]{d.name}[/yellow] at {format_timestamp(d.at)}" for d in scenario.drifts))
    offsets = GroupOffsets(kafka, run, [prefix + t for t in (MATCH_EVENTS, VERIFIED_OUTCOMES, ACQUISITIONS)],
                           options.partitions, admin_link)
    started = time.monotonic()
    thread = threading.Thread(target=produce, name="fairwatch-demo-publish", daemon=True)
    thread.start()
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*columns, console=console)
    alerts_line = Text("alerts raised by the workers: none yet", style="dim")
    last_alert_check = 0.0
    try:
        with Live(Group(bar, alerts_line), console=console, refresh_per_second=4):
            produced_task = bar.add_task("produced to Kafka", total=total)
            committed_task = bar.add_task("committed by the workers", total=total)
            labeled_task = bar.add_task("labeled outcomes (joined)", total=expected_labeled)
            deadline = None
            while True:
                if time.monotonic() - last_alert_check > 2.0:
                    last_alert_check = time.monotonic()
                    raised = _raised_so_far(store)
                    if raised:
                        alerts_line.plain = "alerts raised by the workers: " + ", ".join(raised)
                        alerts_line.stylize("bold red")
                for w in workers:
                    if not w.alive():
                        raise DemoError(f"worker {w.name} exited with status {w.process.returncode}:\n{w.log_tail()}")
                if failure:
                    raise DemoError(f"publishing to Kafka failed: {failure[0]!r}")
                done, end = offsets.read()
                labeled = sum(x for x in (w.labeled() for w in workers) if x is not None)
                bar.update(produced_task, completed=writer.sent)
                bar.update(committed_task, completed=done)
                bar.update(labeled_task, completed=min(labeled, expected_labeled))
                if not thread.is_alive():
                    if "publish" not in timings:
                        timings["publish"] = time.monotonic() - started
                        deadline = time.monotonic() + max(300.0, 5 * options.seconds)
                    if end >= total and done >= end:
                        break
                    if time.monotonic() > deadline:
                        raise DemoError(f"the workers did not drain in time: {end - done} messages not committed\n"
                                        + "\n".join(w.log_tail() for w in workers))
                time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=10)
        offsets.close()
        if not console.is_terminal:
            console.print()  # Live leaves its last frame without a line end when the output is a file
    timings["drain"] = time.monotonic() - started - timings["publish"]
    console.print(f"drained: {total} messages committed by the consumer group {run} "
                  f"({timings['publish']:.0f} s publishing, {timings['drain']:.0f} s more to drain)")
    # drained: the workers' timers (estimate snapshots, detection) would go on writing audit records,
    # some after the seal below, which would then not cover the run; stopped now, it covers all of it
    worker_pids = [w.pid for w in workers]
    say(f"stopping {len(workers)} worker(s)")
    stop_workers(workers)
    workers.clear()

    # detection: the workers ran the cycle on a timer (when they have that wiring); one more cycle
    # now covers every bucket, so the final state does not depend on the timer's phase
    live = _incidents(store)
    detected_at = time.monotonic()
    detection = _detect(store, policies, env)
    timings["detection"] = time.monotonic() - detected_at
    sealed_at = time.monotonic()
    auditor_url = services.env.get("FAIRWATCH_CLICKHOUSE_AUDITOR", clickhouse)
    evidence = chain_of_custody(store, migrator, auditor_url, database, run, out, _database_url, say)
    timings["evidence"] = time.monotonic() - sealed_at
    if not evidence["verified"]["ok"] or evidence["tampered"]["ok"]:
        raise DemoError("the chain of custody did not hold: intact store "
                        f"{'verified' if evidence['verified']['ok'] else 'failed'} "
                        f"({'; '.join(evidence['verified']['findings'][:3])}), tampered copy "
                        f"{'passed' if evidence['tampered']['ok'] else 'failed'}")
    result = summarize(store, store_url, run, scenario, truth, paths, policies, detection, out,
                       worker_pids, timings, began, live, stack_stops=services.started_stack,
                       auditor_url=auditor_url, evidence=evidence)
    _print_story(console, result)
    store.close()
    return result


def summarize(store, store_url: str, run: str, scenario: Scenario, truth: dict[str, Any], paths: dict[str, Path],
              policies: list[Path], detection: str, out: Path, worker_pids: list[int], timings: dict[str, float],
              began: float, live: set[tuple[str, str]] = frozenset(), stack_stops: bool = False,
              auditor_url: str | None = None, evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything shown at the end, from the store and the truth; writes summary.html and summary.json."""
    database = run.replace("-", "_")
    config = CoreConfig(bucket_seconds=60)
    groups, differentials = per_group_results(store, truth, config)
    alerts = alert_results(store, truth) if detection.startswith("ran") else []
    for a in alerts:
        a["raised_by"] = "worker" if (a["id"], a["opened_at"]) in live else "demo"
    by_workers = [a for a in alerts if a["raised_by"] == "worker"]
    if by_workers:  # counted as the alerts table below shows them: alerts, and info notices apart
        notices = sum(a["verdict"] == "notice" for a in by_workers)
        detection += (f"; the workers' own detection timer had already raised {len(by_workers) - notices} of these"
                      f" alert(s) and {notices} info notice(s)")
    deployment = scenario.deployments[0].name
    algorithm = scenario.deployments[0].algorithm
    over_time = step_series(store, deployment, ("*", *scenario.attributes), scenario.start, scenario.end, config)
    checked = [g for g in groups if g["covered"] is not None]
    coverage = {"covered": sum(g["covered"] for g in checked), "total": len(checked)}
    result = {
        "run": run, "out": str(out), "workers": len(worker_pids), "worker_pids": worker_pids,
        "deployment": deployment, "algorithm": algorithm, "truth": {k: v for k, v in truth.items() if k != "cells"},
        "files": {k: str(v) for k, v in paths.items()}, "policies": [str(p) for p in policies],
        "groups": groups, "differentials": differentials, "alerts": alerts, "coverage": coverage,
        "impostor_pairs": pair_results(store, truth, config),
        "acquisition": acquisition_results(store, truth, config, "acquisitions" in paths),
        "two_person": two_person_results(store, truth),
        "detection": detection,
        "clickhouse": _clickhouse_hints(store_url, auditor_url or store_url, database, scenario, deployment, out),
        # the commands to try need the stack: say how to start it again when the demo stops it
        "stack_stops": stack_stops,
        "policy_ratio": min((load_policy(p).policy_ratio for p in policies), default=None),
        "evidence": evidence,
    }
    audits = result["clickhouse"]["audit_commands"]  # the same numbers, as an auditor gets them
    if result["acquisition"]:
        audits.append(f"fairwatch audit acquisition --store {shlex.quote(result['clickhouse']['url_redacted'])}"
                      f" --from {format_timestamp(scenario.start - ACQUISITION_LEAD)}"
                      f" --to {format_timestamp(scenario.end)}")
    if result["two_person"]:
        audits.append(f"fairwatch audit two-person --store {shlex.quote(result['clickhouse']['url_redacted'])}"
                      f" --from {format_timestamp(scenario.start)} --to {format_timestamp(scenario.end)}")
    result["monitoring"] = monitoring_report(store, scenario, policies, out, evidence)
    result["verdict"] = _verdict(result)
    figures = make_figures(result, over_time)
    timings["total"] = time.monotonic() - began
    result["timings"] = {k: round(v, 2) for k, v in timings.items()}
    html_path = out / "summary.html"
    html_path.write_text(render_html(result, figures), encoding="utf-8")
    result["html"] = str(html_path)
    result["figures"] = len(figures)
    (out / "summary.json").write_text(json.dumps(result, indent=1, default=str, allow_nan=False) + "\n")
    return result


def monitoring_report(store, scenario: Scenario, policies: list[Path], out: Path,
                      evidence: dict[str, Any] | None) -> dict[str, Any]:
    """The run's post-market monitoring report (``fairwatch report --kind monitoring``), written as
    monitoring.html and monitoring.json beside the summary; what it names, for the summary."""
    from fairwatch.audit.monitoring import build_monitoring_report
    from fairwatch.audit.report_render import to_html, to_json
    from fairwatch.audit.window import Window

    policy = load_policy(policies[0]) if policies else None
    config = CoreConfig(bucket_seconds=60, policy_ratio=policy.policy_ratio if policy else None)
    window = Window(scenario.start - ACQUISITION_LEAD, scenario.end + timedelta(minutes=1))
    report = build_monitoring_report(store, window, config, policy=policies[0] if policies else None,
                                     evidence_origin=evidence["base"] if evidence else None)
    html_path, json_path = out / "monitoring.html", out / "monitoring.json"
    html_path.write_text(to_html(report), encoding="utf-8")
    json_path.write_text(to_json(report), encoding="utf-8")
    document = report.document
    return {"html": str(html_path), "json": str(json_path),
            "highest_fta": [h for h in document["acquisition"]["highest"] if h["distinguishable"]],
            "not_confirmed_by_two": sum(len(d["exceptions"]) for d in document["two_person"]["deployments"]),
            "evidence": document["evidence"] and document["evidence"]["statement"]}


def _acquisition_records(sim: Simulation, paths: dict[str, Path]) -> tuple[np.ndarray, list[bytes], list[bytes]] | None:
    """The acquisition attempts to publish (times in microseconds, keys, lines): the lines of
    ``acquisitions.jsonl`` as written, None when the scenario has no ``acquisition`` block."""
    if "acquisitions" not in paths:
        return None
    from fairwatch.sim.acquisitions import simulate_acquisitions

    attempts = simulate_acquisitions(sim)  # the same draws as the file's (the simulation's seed)
    lines = paths["acquisitions"].read_bytes().splitlines()
    if len(lines) != attempts.n_attempts:
        raise DemoError(f"{paths['acquisitions']} has {len(lines)} lines for {attempts.n_attempts} attempts")
    return attempts.occurred_us(), [i.encode() for i in attempts.attempt_ids()], lines


def _raised_so_far(store) -> list[str]:
    """Groups with an open drift incident in the run's alerts table (the progress display)."""
    try:
        rows = store.query("SELECT DISTINCT group_label, metric FROM alerts FINAL"
                           " WHERE type != 'insufficient_evidence' ORDER BY group_label, metric")
    except Exception:  # noqa: BLE001 - a display nicety; the table is read properly at the end
        return []
    return [f"{group} {metric}" for group, metric in rows]


def _incidents(store) -> set[tuple[str, str]]:
    try:
        from fairwatch.detect.reads import read_alerts
    except ImportError:
        return set()
    return {(a.id, format_timestamp(a.opened_at)) for a in read_alerts(store)}


def _write_policies(scenario: Scenario, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    first = min((d.at for d in scenario.drifts), default=scenario.start + timedelta(hours=1))
    minutes = max(10, int((first - scenario.start).total_seconds() // 60))
    paths = []
    for d in scenario.deployments:
        path = directory / f"{d.name}.yaml"
        path.write_text(POLICY_TEMPLATE.format(deployment=d.name, attributes=", ".join(scenario.attributes),
                                               baseline=f"{minutes}m"))
        paths.append(path)
    return paths


def _detect(store, policy_paths: list[Path], env: dict[str, str]) -> str:
    """Run one detection cycle now; return how it went (shown to the user)."""
    try:
        from fairwatch.detect.cycle import run_detection
        from fairwatch.detect.policy import load_policy
    except ImportError as exc:
        return f"not run: the detection cycle is not available in this checkout ({exc})"
    policies = [load_policy(p) for p in policy_paths]
    delivery = None
    try:
        from fairwatch.detect.delivery import delivery_from_env

        # the run's destinations and their link settings (TLS, users, password files)
        delivery = delivery_from_env({k: v for k, v in env.items() if k == "FAIRWATCH_TOPIC_PREFIX"
                                      or k.startswith(("FAIRWATCH_KAFKA", "FAIRWATCH_ALERTMANAGER"))})
    except ImportError:
        pass
    try:
        changed = run_detection(store, CoreConfig(bucket_seconds=60), policies, delivery=delivery,
                                now=datetime.now(timezone.utc))
    finally:
        if delivery is not None:
            delivery.close(timeout=15)
    where = "the alerts table, the alerts topic and Alertmanager" if delivery is not None else "the alerts table"
    return f"ran one detection cycle after draining ({len(changed)} incident change(s) written to {where})"


def _client_config(auditor_url: str, out: Path) -> Path | None:
    """A clickhouse-client config (0600) for a TLS store URL: the user, the password from its file
    and the CA, so that the printed command needs no secret on its command line; None without TLS."""
    from fairwatch.store.clickhouse import link_options

    url = urlparse(auditor_url)
    link = link_options(url.query)
    if not link.get("secure"):
        return None
    from xml.sax.saxutils import escape

    ca = link.get("ca_certs")
    password = link.get("password", unquote(url.password or ""))
    text = ("<config>\n    <secure>true</secure>\n"
            f"    <user>{escape(url.username or 'default')}</user>\n    <password>{escape(password)}</password>\n"
            "    <openSSL>\n        <client>\n"
            + (f"            <loadDefaultCAFile>false</loadDefaultCAFile>\n            <caConfig>{escape(ca)}</caConfig>\n"
               if ca else "            <loadDefaultCAFile>true</loadDefaultCAFile>\n")
            + "            <verificationMode>strict</verificationMode>\n"
            "            <invalidCertificateHandler><name>RejectCertificateHandler</name></invalidCertificateHandler>\n"
            "        </client>\n    </openSSL>\n</config>\n")
    path = out / "clickhouse-client.xml"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _clickhouse_hints(store_url: str, auditor_url: str, database: str, scenario: Scenario, deployment: str,
                      out: Path) -> dict[str, str]:
    from fairwatch.store.clickhouse import redacted_url

    url = urlparse(auditor_url)
    redacted = redacted_url(_database_url(auditor_url, database))
    query = ("SELECT toDateTime(intDiv(toUInt32(bucket), 600) * 600, 'UTC') AS t, group_label AS race,"
             " round(sum(impostor_w_err) / sum(impostor_w), 4) AS fmr, sum(impostor_errors) AS false_matches"
             " FROM group_counts FINAL WHERE attribute = 'race' AND mode = 'verification'"
             " GROUP BY t, race ORDER BY t, race")
    config = _client_config(auditor_url, out)
    who = (f"--config-file {shlex.quote(str(config))}" if config is not None
           else f"--user {url.username or 'default'}")
    client = (f"clickhouse-client {who} --host {url.hostname} --port {url.port or 9000}"
              f' --database {database} --query "{query}"')  # the query holds no shell specials
    metrics = (f"fairwatch metrics --store {shlex.quote(redacted)} --from {format_timestamp(scenario.start)}"
               f" --to {format_timestamp(scenario.end)} --deployment {deployment}")
    return {"url": store_url, "url_redacted": redacted, "database": database, "query": query,
            "query_command": client, "metrics_command": metrics, "audit_commands": [],
            "tables": "match_events, verified_outcomes, labeled_outcomes, group_counts, alerts, acquisitions,"
                      " dead_letters"}


def _verdict(result: dict[str, Any]) -> str:
    if not result["detection"].startswith("ran"):
        return f"Detection {result['detection']}."
    drifts = result["truth"]["drifts"]
    injected = [a for a in result["alerts"] if a["verdict"] == "injected" and a["type"] != "insufficient_evidence"]
    false_alarms = [a for a in result["alerts"] if a["verdict"] == "unaffected" and a["type"] != "insufficient_evidence"]
    affected = [a for a in result["alerts"] if a["verdict"] == "affected"]
    notices = [a for a in result["alerts"] if a["verdict"] == "notice"]
    parts = []
    for d in drifts:
        mine = [a for a in injected if a["drift"] == d["name"]]
        group = ", ".join(f"{k}={v}" for k, v in (d.get("group") or {}).items())
        if mine:
            first = min(mine, key=lambda a: a["opened_at"])
            parts.append(f"The injected drift ({group} {d.get('metric', '').upper()} x{d.get('factor')}) was alerted "
                         f"{delay_text(first['delay_seconds'])} of event time after it began ({first['type']}).")
        else:
            parts.append(f"The injected drift ({group}) was NOT alerted.")
    if affected:
        names = sorted({a["group"] for a in affected})
        parts.append(f"Also alerted: {', '.join(names)}, whose true rate the drift raised too (they contain drifted subjects).")
    if notices:
        parts.append(f"Info notices (insufficient_evidence: a cycle found fewer than min_evidence baseline comparisons, "
                     f"e.g. before all of the baseline's outcomes had arrived) for "
                     f"{', '.join(sorted({a['group'] for a in notices}))}: not claims of drift.")
    parts.append("No alert on a group the drift did not touch." if not false_alarms else
                 f"False alarms on groups the drift did not touch: {', '.join(sorted({a['group'] for a in false_alarms}))}.")
    return " ".join(parts)


def weighted_note(truth: dict[str, Any]) -> str:
    """Why an estimate is not errors / verified, with the scenario's verification probabilities."""
    spec = (truth.get("scenario_spec") or {}).get("verification") or {}
    design = ", ".join(f"{what} with probability {spec[key]:g}" for key, what in
                       (("match_prob", "matches"), ("non_match_prob", "non-matches")) if key in spec)
    return ("An estimate is not errors / verified where only part of the comparisons were verified"
            + (f" (here {design})" if design else "") + ": each verified comparison stands for 1 / (its probability"
            " of being verified) comparisons, so the rate is the weighted share of errors.")


def _print_story(console, result: dict[str, Any]) -> None:
    from rich.table import Table

    from fairwatch.sim.tables import print_table

    truth = result["truth"]
    segments = truth["segments"]
    console.rule("[bold]what fairwatch saw")
    shown = {g["metric"] for g in result["groups"]}
    for metric, title in (("fmr", "False match rate (FMR)"), ("fnmr", "False non-match rate (FNMR)"),
                          ("fpir", "Identification searches: false positive identification rate (FPIR)"),
                          ("fnir", "Identification searches: false negative identification rate (FNIR)")):
        if metric not in shown:
            continue
        table = Table(title=f"{title} by group, 95% intervals, vs the simulator's true rate "
                            f"({result['deployment']}, {result['algorithm']})")
        table.add_column("group")
        for seg in segments:
            span = f"{seg['start'][11:16]}-{seg['end'][11:16]}"
            table.add_column(f"{span}\nverified (errors)", justify="right")
            table.add_column(f"{span}\nestimate [95% CI]", justify="right")
            table.add_column(f"{span}\ntrue", justify="right")
        rows: dict[tuple, dict[int, dict]] = {}
        for g in result["groups"]:
            if g["metric"] == metric:
                rows.setdefault((g["attribute"], g["group"]), {})[g["segment"]] = g
        for key in sorted(rows, key=lambda k: (k[0] != "*", k)):
            cells = [("all" if key[0] == "*" else f"{key[0]}={key[1]}")]
            for seg in segments:
                g = rows[key].get(seg["index"])
                if g is None:
                    cells += ["-", "-", "-"]
                    continue
                mark = "" if g["covered"] is None else (" [green]✓[/green]" if g["covered"] else " [red]✗[/red]")
                cells += [f"{g['n']} ({g['errors']})", f"{short_number(g['rate'])} [{short_number(g['low'])}, {short_number(g['high'])}]",
                          f"{short_number(g['truth'])}{mark}"]
            table.add_row(*cells)
        print_table(table, console)
    cov = result["coverage"]
    console.print(f"{cov['covered']} of {cov['total']} 95% intervals contain the true rate (about 95% are expected to; "
                  "✗ marks the others).")
    if any(g["n"] and g["rate"] is not None and abs(g["rate"] - g["errors"] / g["n"]) > 1e-9 for g in result["groups"]):
        console.print(weighted_note(truth), markup=False, highlight=False)
    diffs = Table(title="Differentials between the groups of each attribute (max/min ratio, max/geometric mean), 95% CI")
    for column in ("attribute", "rate", "differential", *(f"{s['start'][11:16]}-{s['end'][11:16]}" for s in segments)):
        diffs.add_column(column)
    for row in differential_rows(result):
        diffs.add_row(*row)
    print_table(diffs, console)
    for line in disparity_statements(result):  # the truth against the policy, and what the data can tell
        console.print(line, markup=False, highlight=False)
    claims = [a for a in result["alerts"] if a["verdict"] != "notice"]
    notices = [a for a in result["alerts"] if a["verdict"] == "notice"]
    if claims:
        alerts = Table(title=f"Alerts ({result['detection']})")
        for column in ("opened (event time)", "after drift", "type", "metric", "group", "estimate [CI]", "baseline",
                       "state", "raised by", "truth"):
            alerts.add_column(column)
        for a in claims:
            verdict = {"injected": "[green]injected drift[/green]", "affected": "[green]drift-affected[/green]",
                       "unaffected": "[red]not drifted[/red]", "notice": "[dim]not tested (info)[/dim]"}[a["verdict"]]
            alerts.add_row(a["opened_at"][11:19], delay_text(a["delay_seconds"]), a["type"], a["metric"], a["group"],
                           f"{short_number(a['estimate'])} [{short_number(a['low'])}, {short_number(a['high'])}]", short_number(a["baseline"]),
                           a["state"], a.get("raised_by", "demo"), verdict)
        print_table(alerts, console)
    else:
        console.print(f"Alerts: none ({result['detection']}).")
    if notices:
        console.print(f"[dim]{len(notices)} info notice(s) (insufficient_evidence): "
                      + ", ".join(f"{a['group']} {a['metric']}" for a in notices) + "[/dim]")
    console.print(f"[bold]{result['verdict']}[/bold]")
    _print_acquisition_and_two_person(console, result)
    evidence = result.get("evidence")
    if evidence:
        verified, tampered = evidence["verified"], evidence["tampered"]
        console.print(f"Chain of custody: {evidence['sealed_rows']} evidence rows in {len(evidence['logs'])} signed "
                      f"Merkle logs; audit verify: {'ok' if verified['ok'] else 'FAILED'} ({verified['rows']} rows, "
                      f"{verified['seconds']} s). A copy with {tampered['row']} changed ({tampered['change']}): "
                      f"{'passed (wrong!)' if tampered['ok'] else 'TAMPERED'}, "
                      f"{tampered['findings'][0] if tampered['findings'] else ''}", markup=False, highlight=False)
    ch = result["clickhouse"]
    console.print(f"\nThe data is in ClickHouse database [bold]{ch['database']}[/bold] ({ch['url_redacted']}): "
                  f"{ch['tables']}.", soft_wrap=True)
    if result.get("stack_stops"):
        console.print('The demo stopped the local stack it had started; its data stays. To try the commands below,'
                      ' start it again first (in this shell):\n  eval "$(scripts/stack up)"', soft_wrap=True,
                      markup=False, highlight=False)
    console.print("Try (each command is one line; the terminal may wrap it):", soft_wrap=True)
    commands = (ch["query_command"], ch["metrics_command"], *ch.get("audit_commands", []),
                *([evidence["verify_command"]] if evidence else []))
    for command in commands:  # whole lines, never cut inside an argument
        console.print(f"  {command}", soft_wrap=True, markup=False, highlight=False)
    files = [result["files"][k] for k in ("events", "outcomes", "acquisitions", "truth") if k in result["files"]]
    console.print(f"Files: {', '.join(files)}; "
                  f"policy {', '.join(result['policies'])}")
    console.print(f"[bold]HTML summary:[/bold] {result['html']}   (took {result['timings']['total']:.0f} s)")
    if result.get("monitoring"):
        console.print(f"[bold]Monitoring report:[/bold] {result['monitoring']['html']}")


def _print_acquisition_and_two_person(console, result: dict[str, Any]) -> None:
    from rich.table import Table

    from fairwatch.sim.tables import print_table

    acquisition = result.get("acquisition")
    if acquisition:
        table = Table(title="Failure to acquire (FTA) by group over the run, 95% intervals, vs the simulator's true FTA")
        for column in ("group", "attempts (failures)", "FTA [95% CI]", "true"):
            table.add_column(column, justify="left" if column == "group" else "right")
        for g in acquisition["groups"]:
            mark = "" if g["covered"] is None else (" [green]✓[/green]" if g["covered"] else " [red]✗[/red]")
            table.add_row("all" if g["attribute"] == "*" else f"{g['attribute']}={g['group']}",
                          f"{g['attempts']} ({g['failures']})",
                          f"{short_number(g['fta'])} [{short_number(g['fta_low'])}, {short_number(g['fta_high'])}]",
                          f"{short_number(g['truth'])}{mark}")
        print_table(table, console)
        for line in acquisition_statements(acquisition):
            console.print(line, markup=False, highlight=False)
    if result.get("two_person"):
        console.print("[bold]Two-person verification[/bold] (EU AI Act Art. 14(5)): acted-on identifications "
                      "confirmed by two distinct verifiers")
        for line in two_person_statements(result["two_person"]):
            console.print(line, markup=False, highlight=False)


# ---- command line -------------------------------------------------------------------------------------------


