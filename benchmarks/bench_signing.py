"""Cost of signed input: the worker's batched path and the producer SDK, each with and without.

Run by ``make bench`` (not a test). Everything below is measured in the same run, the variants of
each part interleaved (``--repeats`` rounds, medians reported), on the same records:

1. **The worker's batched path**, in process (no Kafka, no ClickHouse: the worker's own CPU is
   its bottleneck, see ``bench_pipeline.py``): a workload of match events and outcomes
   (``fairwatch.testing.workload``) of one deployment in the producer SDK's envelopes
   (``BatchBuilder``, 100 and 500 records each), and of two deployments (a key each: then an
   outcome is checked against the deployment of the event the join holds), handed to :class:`~fairwatch.stream.processor.BatchProcessor` with
   :class:`~fairwatch.stream.processor.ResidentJoins` in sub-batches of 500 messages, as the live
   worker calls them (decode, signature rules, join, resident counts, sink rows left unbuilt):

   - ``unsigned``: no keyring, unsigned envelopes (the baseline);
   - ``verified``: the same envelopes signed (``fairwatch.contracts.signing``), a keyring that
     requires signatures, the verifier as the live worker runs it (Ed25519 checks in a helper
     process while the batch is decoded);
   - ``verified[in place]``: the checks in the worker's own process (file replay's route).

   Reported: records/s (wall clock, the median round), CPU seconds of the worker process and of
   the helper process (the least of the rounds), and the ratios to ``unsigned`` (throughput,
   worker CPU, all CPU). The target (the evidence issue): verification costs less than 10% of the
   batched throughput. The helper's checks are free throughput only when a core is free for it: on
   a busy machine the throughput ratio falls towards the all-CPU ratio (the load average is
   printed with the results).
2. **The producer SDK**, in process (no Kafka): records encoded and batched as
   ``FairwatchProducer`` does (``encode_record`` + ``BatchBuilder``), with and without signing each
   envelope (:class:`~fairwatch.producer.InputSigner`); records/s and the ratio.
3. ``--live`` adds ``fairwatch worker`` runs on the stack (``bench_pipeline.run_worker``: the
   worker's drained records/s from ready to its last commit), per envelope size (100, 500
   records): one over unsigned envelopes without a keyring and one over the same records signed,
   with a keyring that requires signatures. One run each: expect the noise of a shared machine.

Writes ``benchmarks/results/signing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fairwatch.contracts.keyring import parse_keyring
from fairwatch.contracts.keys import generate_key, write_signing_key
from fairwatch.contracts.partitioning import partition_for
from fairwatch.contracts.signing import sign_value
from fairwatch.core.config import CoreConfig
from fairwatch.producer import BatchBuilder, InputSigner, encode_record
from fairwatch.stream.input_verification import InputVerifier
from fairwatch.stream.processor import BatchProcessor, RawMessage, ResidentJoins
from fairwatch.testing.workload import make_workload

RESULTS = Path(__file__).parent / "results" / "signing.json"
CONFIG = CoreConfig(intersections=(("sex", "race"),))
PARTITIONS = 8
SUB_BATCH = 500  # messages per processing batch (the live worker's sub-batches are about this size)
DEPLOYMENT = "site-0"
KINDS = {"match-events": "match_event", "verified-outcomes": "verified_outcome"}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def envelopes(workload, max_records: int) -> list[tuple[str, int, bytes, bytes, str]]:
    """(kind, partition, key, value, deployment) of the workload in the SDK's envelopes, in arrival
    order: one producer per deployment (a signed envelope holds one deployment's records; an
    outcome goes with its event's deployment)."""
    builders: dict[str, BatchBuilder] = {}
    out = []
    for kind, _, value in workload.messages:
        doc = json.loads(value)
        event = workload.events.get(doc["event_id"])
        deployment = event["deployment"] if event is not None else DEPLOYMENT
        builder = builders.setdefault(deployment, BatchBuilder(PARTITIONS, max_records=max_records,
                                                               max_bytes=1 << 20, linger=1e9))
        event_id, encoded = encode_record(doc, validate=False)
        out += [(e.topic, e.partition, e.key, e.value, deployment) for e in builder.add(kind, event_id, encoded, 0.0)]
    for deployment, builder in builders.items():
        out += [(e.topic, e.partition, e.key, e.value, deployment) for e in builder.drain()]
    return out


def worker_path(workload, records: int, max_records: int, repeats: int) -> dict:
    deployments = sorted({doc["deployment"] for doc in workload.events.values()})
    keys = {d: generate_key(f"{d}-bench") for d in deployments}
    keyring = parse_keyring("keyring_version: 1\nrequire_signatures: true\ndeployments:\n" + "".join(
        f"  {d}:\n    keys: [{{key: \"{keys[d].verifier.text()}\"}}]\n" for d in deployments))
    plain = envelopes(workload, max_records)
    unsigned = [RawMessage(kind, kind, partition, n, k, value) for n, (kind, partition, k, value, _) in enumerate(plain)]
    signed = [RawMessage(kind, kind, partition, n, k, value,
                         tuple(sign_value(keys[d], d, KINDS[kind], value)), 1_700_000_000_000 + n)
              for n, (kind, partition, k, value, d) in enumerate(plain)]
    helper = InputVerifier(keyring, helper=True)
    helper_pid = next(iter(helper._helper._processes))  # the helper process, started with the verifier
    variants = {"unsigned": (None, unsigned), "verified": (helper, signed),
                "verified[in place]": (InputVerifier(keyring), signed)}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (verifier, messages) in variants.items():
            processor = BatchProcessor(CONFIG, partitions=PARTITIONS, verifier=verifier)
            resident = ResidentJoins(CONFIG, lambda partition: [])
            helper_before = cpu_of(helper_pid)
            started, cpu = time.perf_counter(), time.process_time()
            rejected = 0
            for i in range(0, len(messages), SUB_BATCH):
                result = processor.process(messages[i : i + SUB_BATCH], resident=resident)
                rejected += len(result.dead_letters)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            if rejected:
                raise RuntimeError(f"{name}: {rejected} messages refused; the benchmark's input is all valid")
            runs[name].append({"wall_s": wall, "worker_cpu_s": cpu,
                               "helper_cpu_s": cpu_of(helper_pid) - helper_before if verifier is helper else 0.0})
    helper.close()
    out = {}
    for name, samples in runs.items():
        # throughput: the median round; CPU: the least any round needed (what the work costs, without
        # what other processes on the machine add to it)
        wall = statistics.median(s["wall_s"] for s in samples)
        out[name] = {"records_per_s": records / wall, "wall_s": wall,
                     "worker_cpu_s": min(s["worker_cpu_s"] for s in samples),
                     "helper_cpu_s": min(s["helper_cpu_s"] for s in samples),
                     "records_per_s_each": [records / s["wall_s"] for s in samples]}
    base = out["unsigned"]
    for name in ("verified", "verified[in place]"):
        run = out[name]
        run["throughput_ratio"] = run["records_per_s"] / base["records_per_s"]
        run["worker_cpu_ratio"] = run["worker_cpu_s"] / base["worker_cpu_s"]
        run["all_cpu_ratio"] = (run["worker_cpu_s"] + run["helper_cpu_s"]) / base["worker_cpu_s"]
    mean_bytes = sum(len(v) for _, _, _, v, _ in plain) / len(plain)
    return {"deployments": len(deployments), "messages": len(plain), "records_per_message": records / len(plain),
            "mean_message_bytes": mean_bytes, "runs": out}


def producer_path(workload, max_records: int, repeats: int, key_path: Path) -> dict:
    docs = [(kind, json.loads(value)) for kind, _, value in workload.messages]
    signer = InputSigner(key_path, DEPLOYMENT, "")  # topics without prefix: "match-events", ...
    results: dict[str, list[float]] = {"unsigned": [], "signed": []}
    for _ in range(repeats):
        for name in results:
            builder = BatchBuilder(PARTITIONS, max_records=max_records, linger=1e9)
            started = time.perf_counter()
            closed = []
            for kind, doc in docs:
                event_id, encoded = encode_record(doc, validate=False)
                closed += builder.add(kind, event_id, encoded, 0.0)
            closed += builder.drain()
            if name == "signed":
                for envelope in closed:
                    signer.headers(envelope.topic, envelope.value)
            results[name].append(time.perf_counter() - started)
    out = {name: {"records_per_s": len(docs) / statistics.median(times)} for name, times in results.items()}
    out["signed"]["throughput_ratio"] = out["signed"]["records_per_s"] / out["unsigned"]["records_per_s"]
    return out


def live_workers(events: int, timeout: float, key_path: Path, key) -> dict:
    """`fairwatch worker` runs on the stack, per envelope size (100, 500 records): unsigned without
    a keyring, and the same records signed with a keyring that requires signatures."""
    sys.path.insert(0, str(Path(__file__).parent))
    import uuid
    from contextlib import closing
    from types import SimpleNamespace

    import bench_pipeline as pipeline
    from fairwatch.producer import FairwatchProducer
    from fairwatch.store.clickhouse import open_store
    from fairwatch.store.migrations import migrate
    from fairwatch.stream.topics import ensure_topics
    from fairwatch.testing.stack import ensure_stack, server_url

    kafka, clickhouse = pipeline.services()
    migrator = os.environ.get("FAIRWATCH_CLICKHOUSE_MIGRATOR") or clickhouse
    if not os.environ.get("FAIRWATCH_CLICKHOUSE"):
        migrator = ensure_stack().get("FAIRWATCH_CLICKHOUSE_MIGRATOR", clickhouse)
    tag = uuid.uuid4().hex[:8]
    ctx = SimpleNamespace(kafka=kafka, clickhouse=clickhouse, service_pids=pipeline.service_pids(), tag=tag,
                          partitions=PARTITIONS, inputs=[], keep_logs=False, groups=[], databases=[],
                          tmp=Path(tempfile.mkdtemp(prefix="fairwatch-bench-signing-")))
    keyring_path = ctx.tmp / "keyring.yaml"
    keyring_path.write_text(f"keyring_version: 1\nrequire_signatures: true\ndeployments:\n  {DEPLOYMENT}:\n"
                            f"    keys: [{{key: \"{key.verifier.text()}\"}}]\n")
    workload = make_workload(events, seed=9, duplicate_share=0.0, malformed_share=0.0, deployments=1)
    out: dict[str, dict] = {}
    try:
        for size in (100, 500):
            runs = out[f"batch{size}"] = {}
            for name, signing in (("unsigned", {}), ("verified", {"signing_key": key_path, "deployment": DEPLOYMENT})):
                inp = pipeline.input_set(ctx, f"{name}{size}", workload)
                ensure_topics(kafka, inp.prefix, PARTITIONS)
                with FairwatchProducer(kafka, topic_prefix=inp.prefix, partitions=PARTITIONS, max_records=size,
                                       linger=0.2, validate=False, **signing) as producer:
                    for kind, _, value in workload.messages:
                        doc = json.loads(value)
                        (producer.send_event if kind == "match-events" else producer.send_outcome)(doc)
                inp.lag = pipeline.Lag(kafka, inp.topics, PARTITIONS)
                # the worker writes as the stack's writer, which may not create its database: the migrator does
                with closing(open_store(server_url(migrator, f"bench_pipeline_{tag}_{inp.name}"))) as store:
                    migrate(store)
                if signing:
                    os.environ["FAIRWATCH_KEYRING"] = str(keyring_path)
                try:
                    runs[name] = pipeline.run_worker("rocksdb", ctx, inp, timeout)
                finally:
                    os.environ.pop("FAIRWATCH_KEYRING", None)
                if runs[name]["rejected"]:
                    raise RuntimeError(f"live {name}: {runs[name]['rejected']} messages refused")
                print(f"  live {name}, envelopes of {size}: {runs[name]['records_per_s_drained']:,.0f} records/s "
                      "drained", flush=True)
            runs["verified"]["throughput_ratio"] = (runs["verified"]["records_per_s_drained"]
                                                    / runs["unsigned"]["records_per_s_drained"])
            print(f"  envelopes of {size}: verified / unsigned drained throughput "
                  f"{runs['verified']['throughput_ratio']:.3f}", flush=True)
    finally:
        ctx.clickhouse = migrator  # who may drop the databases
        pipeline.cleanup(ctx)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="match events in the workload")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (throughput: median; CPU: least)")
    parser.add_argument("--live", action="store_true", help="also two live workers on the stack (about 2 minutes)")
    parser.add_argument("--live-events", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    workload = make_workload(args.events, seed=7, duplicate_share=0.0, malformed_share=0.0, deployments=1)
    records = len(workload.messages)
    assert all(partition_for(json.loads(v)["event_id"], PARTITIONS) >= 0 for _, _, v in workload.messages[:10])
    result: dict = {"workload": {"match_events": args.events, "records": records, "partitions": PARTITIONS,
                                 "sub_batch_messages": SUB_BATCH},
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()}}
    print(f"{records:,} records ({args.events:,} match events + outcomes), {args.repeats} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    result["worker"] = {}
    two = make_workload(args.events, seed=7, duplicate_share=0.0, malformed_share=0.0, deployments=2)
    for name, load, size in (("batch100", workload, 100), ("batch500", workload, 500),
                             ("batch100_2deployments", two, 100)):
        part = worker_path(load, len(load.messages), size, args.repeats)
        result["worker"][name] = part
        runs = part["runs"]
        base = runs["unsigned"]
        print(f"\nworker batched path, envelopes of {size} records, {part['deployments']} deployment(s) "
              f"({part['messages']:,} messages of {part['mean_message_bytes'] / 1024:.1f} KiB):")
        print(f"  {'variant':<20} {'records/s':>10} {'ratio':>7} {'worker CPU s':>13} {'ratio':>7}"
              f" {'helper CPU s':>13} {'all CPU ratio':>14}")
        for name, run in runs.items():
            print(f"  {name:<20} {run['records_per_s']:>10,.0f} {run.get('throughput_ratio', 1.0):>7.3f}"
                  f" {run['worker_cpu_s']:>13.3f} {run.get('worker_cpu_ratio', 1.0):>7.3f}"
                  f" {run['helper_cpu_s']:>13.3f} {run.get('all_cpu_ratio', 1.0):>14.3f}")
        cost = 1 - runs["verified"]["throughput_ratio"]
        print(f"  verification costs {cost:.1%} of the batched throughput (target < 10%): "
              f"{'met' if cost < 0.10 else 'NOT met'}; {runs['verified']['worker_cpu_ratio'] - 1:.1%} more CPU in the "
              f"worker, {runs['verified']['all_cpu_ratio'] - 1:.1%} more with its helper; verifying in the worker's "
              f"own process costs {1 - runs['verified[in place]']['throughput_ratio']:.1%} of the throughput")
        del base
    with tempfile.TemporaryDirectory() as tmp:
        key = generate_key("site-0-bench")
        key_path = write_signing_key(key, Path(tmp) / "site-0.key")
        result["producer"] = producer_path(workload, 100, args.repeats, key_path)
        p = result["producer"]
        print(f"\nproducer SDK in process (encode + batch, envelopes of 100): unsigned "
              f"{p['unsigned']['records_per_s']:,.0f} records/s, signed {p['signed']['records_per_s']:,.0f} "
              f"({p['signed']['throughput_ratio']:.3f}x)")
        if args.live:
            print("\nlive workers on the stack:")
            result["live"] = live_workers(args.live_events, args.timeout, key_path, key)
    target = result["worker"]["batch100"]["runs"]["verified"]["throughput_ratio"]
    result["target"] = {"verified_vs_unsigned_batch100": target, "met": target > 0.90}
    result["wall_s"] = time.perf_counter() - started
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json} (whole run {result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
