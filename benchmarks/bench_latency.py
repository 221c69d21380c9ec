"""End-to-end latency of one ``fairwatch worker`` at half its measured maximum rate.

Run by ``make bench`` (not a test); issue 28, item 4. Against the local stack (``scripts/stack
up``; Kafka, ClickHouse and Alertmanager) or the services named by FAIRWATCH_KAFKA /
FAIRWATCH_CLICKHOUSE / FAIRWATCH_ALERTMANAGER. Two runs, each with its own topics, consumer group
and ClickHouse database (deleted at the end):

1. **maximum rate**: the packaged ``demo`` scenario (``--max-events`` match events and their
   outcomes) produced in batch envelopes before the worker starts, then drained by one worker,
   measured as ``bench_pipeline.py`` measures ``fairwatch[batch100]`` (records/s from ready to
   the commit that drained it). ``--max-rate`` skips this run and uses the rate given.
2. **latency**: a worker with the demo's policy (``FAIRWATCH_POLICIES``, a detection cycle every
   ``--detect-seconds``) and Alertmanager delivery; the ``demo`` scenario (its event time moved
   to end now; race=Black's FMR x5 from its second hour) sized to last about ``--seconds``, sent
   by the producer SDK (100-record envelopes, its default 50 ms linger) in arrival order, paced
   to ``--fraction`` (0.5) of the maximum rate in records/s.

What is timed (wall clock of this machine; every process on it):

- **produce -> counted**: for every event-outcome pair, from the moment its later record was
  handed to the producer SDK to the first poll (every ``POLL`` s) of ``group_counts FINAL`` that
  counts it. Pairs are matched to counts per Kafka partition in the order they were produced
  (a partition is read in order; the worker counts at each flush, every FAIRWATCH_COMMIT_SECONDS).
  Corrections and redeliveries change no count and are not timed.
- **drift -> Alertmanager**: from the moment the first match event at or after the injected
  drift was handed to the producer to the first poll (every ``POLL`` s) of Alertmanager's
  ``/api/v2/alerts`` listing an alert of this run: the first drift alert of any group (error
  rate, disparity or score drift; not the insufficient-evidence notices), and the first on the
  drifted group and metric (``classify_alert``: *injected*).

Reported, never asserted: the p50 / p99 / max of the first, the second, the rate reached, the
worker's RSS and pending joins at the end. Writes ``benchmarks/results/latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline as pipeline  # services, the drained-rate run, metric parsing

RESULTS = Path(__file__).parent / "results" / "latency.json"
POLL = 0.2  # seconds between polls of group_counts and of Alertmanager
RECORDS_PER_EVENT = 1.55  # the demo scenario: about 0.55 outcomes (corrections included) per match event
DRIFT_TYPES = ("error_rate_drift", "disparity_breach", "score_drift")  # not the insufficient-evidence notices


def arrival_order(sim):
    """(kind, index) of every record in the order a deployment sends them (as ``publish``)."""
    times = np.concatenate([sim.time, sim.o_time])
    kinds = np.concatenate([np.zeros(sim.n_events, np.int8), np.ones(sim.n_outcomes, np.int8)])
    positions = np.concatenate([np.arange(sim.n_events), np.arange(sim.n_outcomes)])
    order = np.lexsort((kinds, times))  # at equal times the event goes first
    return kinds[order], positions[order]


def encoded(sim, kinds: np.ndarray, positions: np.ndarray) -> list[tuple[int, str, bytes]]:
    """(kind, event_id, JSON line) of every record, in arrival order."""
    is_event = kinds == 0
    events = iter(zip(sim.event_keys(positions[is_event]), sim.event_lines(positions[is_event])))
    outcomes = iter(zip(sim.outcome_keys(positions[~is_event]), sim.outcome_lines(positions[~is_event])))
    out = []
    for kind in kinds.tolist():
        key, line = next(outcomes if kind else events)
        out.append((kind, key.decode(), line))
    return out


def completions(sim, kinds: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Positions (in arrival order) of the records that complete a pair: the first primary
    outcome of an event whose event came before it (the simulator's outcomes follow their events)."""
    seen_event = np.zeros(sim.n_events, bool)
    labeled = np.zeros(sim.n_events, bool)
    primary = ~sim.o_independent if hasattr(sim, "o_independent") else np.ones(sim.n_outcomes, bool)
    out = []
    for i, (kind, position) in enumerate(zip(kinds.tolist(), positions.tolist())):
        if kind == 0:
            seen_event[position] = True
            continue
        event = sim.o_event[position]
        if primary[position] and seen_event[event] and not labeled[event]:
            labeled[event] = True
            out.append(i)
    return np.array(out, np.int64)


def produce(kafka: str, prefix: str, partitions: int, records: list, rate: float | None,
            stamps: np.ndarray | None = None) -> float:
    """Send ``records`` with the producer SDK, paced to ``rate`` records/s (None: at once); the
    wall time each was handed over goes to ``stamps``. Returns the seconds it took."""
    from fairwatch.producer import FairwatchProducer

    started = time.monotonic()
    with FairwatchProducer(kafka, topic_prefix=prefix, partitions=partitions, max_records=100,
                           validate=False) as producer:
        topics = (producer.events_topic, producer.outcomes_topic)
        for i, (kind, event_id, line) in enumerate(records):
            if rate and i % 50 == 0:  # pace in small steps, not per record
                ahead = started + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if stamps is not None:
                stamps[i] = time.time()
            producer.send_encoded(topics[kind], event_id, line)
    return time.monotonic() - started


class Poller:
    """Polls ``group_counts`` (counted pairs per partition) and Alertmanager (alerts of this run)."""

    def __init__(self, store_url: str, alertmanager: str | None, am_env: dict, deployment: str):
        from fairwatch.store.clickhouse import open_store
        self.store = open_store(store_url)
        self.am = None
        if alertmanager:
            from fairwatch.detect.delivery import alertmanager_client
            self.am = alertmanager_client(alertmanager, environ=am_env)
        self.deployment = deployment
        self.counts: list[tuple[float, dict[int, int]]] = []
        self.alerts: dict[str, dict] = {}  # fingerprint -> {"seen": time, "labels": ...}
        self.before = self._alert_list() if self.am else []
        self._known = {a["fingerprint"] for a in self.before}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-poller", daemon=True)

    def _alert_list(self) -> list[dict]:
        response = self.am.get("/api/v2/alerts")
        response.raise_for_status()
        return response.json()

    def _poll(self) -> None:
        rows = self.store.query_values(
            "SELECT kafka_partition, toUInt64(sum(impostor_n + genuine_n)) FROM group_counts FINAL "
            "WHERE attribute = '*' GROUP BY kafka_partition")
        self.counts.append((time.time(), {int(p): int(n) for p, n in rows}))
        if self.am is not None:
            now = time.time()
            for alert in self._alert_list():
                fingerprint = alert["fingerprint"]
                if fingerprint not in self._known and alert["labels"].get("deployment") == self.deployment:
                    self._known.add(fingerprint)
                    self.alerts[fingerprint] = {"seen": now, "labels": alert["labels"],
                                                "starts_at": alert.get("startsAt")}

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - a slow or refused poll is a gap in the series, said at the end
                self.counts.append((time.time(), {"error": str(exc)[:200]}))
            self._stop.wait(max(0.0, POLL - (time.monotonic() - started)))

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.store.close()
        if self.am is not None:
            self.am.close()


def counted_latencies(stamps: np.ndarray, done_at: np.ndarray, homes: np.ndarray, series) -> np.ndarray:
    """Seconds from produce to counted of each completed pair (NaN: never seen counted)."""
    latencies = np.full(len(done_at), np.nan)
    good = [(t, c) for t, c in series if "error" not in c]
    times = np.array([t for t, _ in good])
    if not len(times):
        return latencies
    for partition in np.unique(homes):
        mine = np.flatnonzero(homes == partition)  # in produce order
        counted = np.array([c.get(int(partition), 0) for _, c in good])
        # the k-th pair of the partition is counted at the first poll whose count reaches k
        first = np.searchsorted(np.maximum.accumulate(counted), np.arange(1, len(mine) + 1), side="left")
        seen = first < len(times)
        latencies[mine[seen]] = times[first[seen]] - stamps[done_at[mine[seen]]]
    return latencies


def percentiles(values: np.ndarray) -> dict:
    values = values[~np.isnan(values)]
    if not len(values):
        return {"n": 0}
    return {"n": int(len(values)), "p50_s": float(np.percentile(values, 50)), "p90_s": float(np.percentile(values, 90)),
            "p99_s": float(np.percentile(values, 99)), "max_s": float(values.max()), "mean_s": float(values.mean())}


def rss_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_pressure() -> str | None:
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def max_rate_run(ctx, events: int, timeout: float) -> dict:
    """The worker's drained rate on a backlog of the demo scenario, as bench_pipeline measures it."""
    from fairwatch.sim.scenario import load_scenario
    from fairwatch.sim.simulator import simulate
    from fairwatch.stream.topics import ensure_topics

    sim = simulate(load_scenario("demo"), seed=7, events=events)
    kinds, positions = arrival_order(sim)
    records = encoded(sim, kinds, positions)
    inp = SimpleNamespace(name="max", prefix=f"bench-lat-{ctx.tag}-max.")
    inp.topics = [inp.prefix + k for k in pipeline.INPUTS]
    inp.by_topic = {inp.topics[0]: sim.n_events, inp.topics[1]: sim.n_outcomes}
    inp.total, inp.events = len(records), sim.n_events
    ctx.inputs.append(inp)
    ensure_topics(ctx.kafka, inp.prefix, ctx.partitions)
    seconds = produce(ctx.kafka, inp.prefix, ctx.partitions, records, None)
    print(f"max rate: produced {inp.total:,} records in {seconds:.1f} s; draining with one worker", flush=True)
    inp.lag = pipeline.Lag(ctx.kafka, inp.topics, ctx.partitions)
    return pipeline.run_worker("memory", ctx, inp, timeout)


def unique_deployments(scenario, tag: str):
    """The scenario with its deployments renamed for this run: Alertmanager keys an alert by its
    labels, so an earlier run's alert, still active, would otherwise hide this run's."""
    from dataclasses import replace

    names = {d.name: f"{d.name}-{tag}" for d in scenario.deployments}
    drifts = tuple(replace(d, deployments=tuple(names.get(n, n) for n in d.deployments))
                   if getattr(d, "deployments", None) else d for d in scenario.drifts)
    return replace(scenario, deployments=tuple(replace(d, name=names[d.name]) for d in scenario.deployments),
                   drifts=drifts)


def latency_run(ctx, stack: dict, rate: float, seconds: float, detect_seconds: float, timeout: float) -> dict:
    from datetime import datetime, timezone

    from fairwatch.contracts.partitioning import partitions_for
    from fairwatch.sim.demo import _write_policies, shift_scenario
    from fairwatch.sim.demo_results import classify_alert
    from fairwatch.sim.scenario import load_scenario
    from fairwatch.sim.simulator import simulate
    from fairwatch.sim.writers import write_truth
    from fairwatch.stream.topics import ensure_topics
    from fairwatch.testing.live import WorkerProcess
    from fairwatch.testing.stack import server_url

    events = max(10_000, int(rate * seconds / RECORDS_PER_EVENT))
    scenario = shift_scenario(unique_deployments(load_scenario("demo"), ctx.tag),
                              datetime.now(timezone.utc).replace(second=0, microsecond=0))
    sim = simulate(scenario, events=events)
    truth = json.loads(write_truth(sim, ctx.tmp / "truth.json").read_text())
    kinds, positions = arrival_order(sim)
    records = encoded(sim, kinds, positions)
    done_at = completions(sim, kinds, positions)
    homes = partitions_for([records[i][1] for i in done_at.tolist()], ctx.partitions)
    drift_us = int(min(d.at for d in scenario.drifts).timestamp() * 1_000_000)  # the simulator's times are us
    event_time = np.where(kinds == 0, sim.time[np.where(kinds == 0, positions, 0)], -1)
    first_drifted = int(np.argmax(event_time >= drift_us))

    name = "lat"
    prefix, group = f"bench-lat-{ctx.tag}-{name}.", f"bench-lat-{ctx.tag}"
    database = f"bench_latency_{ctx.tag}"
    ctx.inputs.append(SimpleNamespace(prefix=prefix))
    ctx.groups.append(group)
    ensure_topics(ctx.kafka, prefix, ctx.partitions, app_id=group)
    pipeline.create_database(ctx, database)
    policies = _write_policies(scenario, ctx.tmp / "policies")
    deployment = scenario.deployments[0].name
    store_url = server_url(ctx.clickhouse, database)
    am_env = {k: v for k, v in stack.items() if k.startswith("FAIRWATCH_ALERTMANAGER")}
    env = {**os.environ, **am_env, "FAIRWATCH_KAFKA": ctx.kafka, "FAIRWATCH_CLICKHOUSE": store_url,
           "FAIRWATCH_TOPIC_PREFIX": prefix, "FAIRWATCH_PARTITIONS": str(ctx.partitions), "FAIRWATCH_APP_ID": group,
           "FAIRWATCH_TABLE_STORE": "memory://", "FAIRWATCH_INTERSECTIONS": "", "FAIRWATCH_SESSION_TIMEOUT": "10",
           "FAIRWATCH_POLICIES": str(policies[0].parent), "FAIRWATCH_DETECT_SECONDS": str(detect_seconds)}
    worker = WorkerProcess(SimpleNamespace(tmp_path=ctx.tmp, env=env), name)
    stamps = np.full(len(records), np.nan)
    poller = None
    result: dict = {"events": sim.n_events, "outcomes": sim.n_outcomes, "records": len(records),
                    "pairs": int(len(done_at)), "target_records_per_s": rate, "detect_seconds": detect_seconds,
                    "poll_s": POLL, "deployment": deployment}
    try:
        deadline = time.monotonic() + 180
        while True:  # ready: every input partition assigned
            if not worker.alive():
                raise RuntimeError(f"worker died:\n{worker.log_tail()}")
            health = worker.health()
            if health and len(health["input_partitions"]) == 2 * ctx.partitions:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready after 180 s:\n{worker.log_tail()}")
            time.sleep(0.5)
        poller = Poller(store_url, stack.get("FAIRWATCH_ALERTMANAGER"), am_env, deployment).start()
        print(f"latency: {len(records):,} records ({sim.n_events:,} events) at {rate:,.0f} records/s, "
              f"detection every {detect_seconds:g} s", flush=True)
        sent_s = produce(ctx.kafka, prefix, ctx.partitions, records, rate, stamps)
        result["produce_s"] = sent_s
        result["records_per_s_reached"] = len(records) / sent_s
        print(f"  produced in {sent_s:.1f} s ({len(records) / sent_s:,.0f} records/s)", flush=True)
        inp_lag = pipeline.Lag(ctx.kafka, [prefix + k for k in pipeline.INPUTS], ctx.partitions)
        expected = {int(p): int(n) for p, n in zip(*np.unique(homes, return_counts=True))}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # every pair counted, and an alert of the drift (or the time is up)
            if not worker.alive():
                raise RuntimeError(f"worker died:\n{worker.log_tail()}")
            latest = next((c for _, c in reversed(poller.counts) if "error" not in c), {})
            counted = all(latest.get(p, 0) >= n for p, n in expected.items())
            injected = any(a["labels"].get("type") in DRIFT_TYPES and classify_alert(
                a["labels"].get("deployment"), a["labels"].get("algorithm"), a["labels"].get("group"),
                a["labels"].get("metric"), truth["drifts"])[0] == "injected" for a in poller.alerts.values())
            if counted and injected and inp_lag(group) == 0:
                break
            time.sleep(0.5)
        result["drained"] = inp_lag(group) == 0
        text = worker.metrics_text()
        result["worker_rss_bytes"] = rss_of(worker.process.pid)
        result["pending_joins"] = sum(pipeline.metric_values(text, "fairwatch_pending_joins", None).values())
        result["phase_seconds"] = pipeline.metric_values(text, "fairwatch_batch_phase_seconds_total", "phase")
    finally:
        if poller is not None:
            poller.stop()
        worker.stop()
    latencies = counted_latencies(stamps, done_at, homes, poller.counts)
    result["produce_to_counted"] = percentiles(latencies)
    result["pairs_never_seen_counted"] = int(np.isnan(latencies).sum())
    result["poll_errors"] = [c["error"] for _, c in poller.counts if "error" in c][:5]
    t_drift = stamps[first_drifted]
    alerts = sorted(poller.alerts.values(), key=lambda a: a["seen"])
    for a in alerts:
        a["class"] = classify_alert(a["labels"].get("deployment"), a["labels"].get("algorithm"),
                                    a["labels"].get("group"), a["labels"].get("metric"), truth["drifts"])[0]
    first_any = next((a for a in alerts if a["labels"].get("type") in DRIFT_TYPES), None)
    first_injected = next((a for a in alerts if a["class"] == "injected" and a["labels"].get("type") in DRIFT_TYPES),
                          None)
    result["first_drifted_event_produced_after_s"] = float(t_drift - np.nanmin(stamps))
    result["drift_to_first_alert_s"] = None if first_any is None else first_any["seen"] - t_drift
    result["drift_to_injected_alert_s"] = None if first_injected is None else first_injected["seen"] - t_drift
    result["alerts"] = [{"seen_after_drift_s": a["seen"] - t_drift, "class": a["class"],
                         **{k: a["labels"].get(k) for k in ("alertname", "group", "metric", "type")}} for a in alerts]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-events", type=int, default=100_000, help="demo-scenario events of the max-rate run")
    parser.add_argument("--max-rate", type=float, help="records/s to take as the maximum (skips the max-rate run)")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the maximum rate, for the latency run")
    parser.add_argument("--seconds", type=float, default=90.0, help="about how long the latency run produces")
    parser.add_argument("--detect-seconds", type=float, default=10.0,
                        help="the worker's detection interval (FAIRWATCH_DETECT_SECONDS; production default 60)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per run at most, after producing")
    parser.add_argument("--quick", action="store_true", help="30,000 events for the max rate, 30 s of latency run")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.max_events, args.seconds = 30_000, 30.0

    from fairwatch.testing.bench import write_results
    from fairwatch.testing.stack import ensure_stack

    started = time.perf_counter()
    kafka, clickhouse = pipeline.services()
    stack = ensure_stack()
    ctx = SimpleNamespace(kafka=kafka, clickhouse=clickhouse, service_pids=pipeline.service_pids(),
                          tag=uuid.uuid4().hex[:8], partitions=args.partitions, inputs=[], keep_logs=False,
                          groups=[], databases=[], tmp=Path(tempfile.mkdtemp(prefix="fairwatch-bench-latency-")))
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform(), "loadavg_at_start": os.getloadavg(),
                                "cpu_pressure_at_start": cpu_pressure()}}
    try:
        if args.max_rate:
            result["max_rate"] = {"records_per_s_drained": args.max_rate, "given": True}
        else:
            run = max_rate_run(ctx, args.max_events, args.timeout)
            result["max_rate"] = {k: run[k] for k in ("records_per_s_drained", "records_per_s", "process_s", "drain_s",
                                                      "phase_seconds", "cpu")}
            print(f"  max rate {run['records_per_s_drained']:,.0f} records/s drained", flush=True)
        rate = args.fraction * result["max_rate"]["records_per_s_drained"]
        result["latency"] = latency_run(ctx, stack, rate, args.seconds, args.detect_seconds, args.timeout)
    finally:
        pipeline.cleanup(ctx)
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    result["machine"].update(loadavg_at_end=os.getloadavg(), cpu_pressure_at_end=cpu_pressure())
    lat = result["latency"]
    c = lat["produce_to_counted"]
    print(f"\nmax rate {result['max_rate']['records_per_s_drained']:,.0f} records/s; latency run at "
          f"{lat['target_records_per_s']:,.0f} records/s ({args.fraction:g}x), reached {lat['records_per_s_reached']:,.0f}")
    if c.get("n"):
        print(f"produce -> counted in ClickHouse: p50 {c['p50_s']:.2f} s, p99 {c['p99_s']:.2f} s, max {c['max_s']:.2f} s "
              f"over {c['n']:,} pairs (poll every {POLL} s; {lat['pairs_never_seen_counted']} never seen counted)")
    for key, label in (("drift_to_first_alert_s", "first drift alert"),
                       ("drift_to_injected_alert_s", "first alert on the drifted group")):
        value = lat[key]
        print(f"first drifted event -> {label} in Alertmanager: " + ("none" if value is None else f"{value:.1f} s"))
    rss = lat.get("worker_rss_bytes")
    print(f"worker RSS at the end {rss / 2**20:,.0f} MiB with {lat['pending_joins']:,.0f} pending joins" if rss else "")
    write_results(args.json, result, started)


if __name__ == "__main__":
    main()
