"""The coefficients of the capacity model (``fairwatch plan``) that no other benchmark measures.

Run by ``make bench`` (not a test): ``benchmarks/bench_capacity.py`` (100,000 simulated match
events and their verified outcomes, about two minutes) or ``--quick`` (20,000). Writes
``benchmarks/results/capacity.json`` with the date, the machine, the commit and the command.

The workload is :func:`fairwatch.sim.simulator.simulate` of the packaged default scenario (seed 3,
N events spread over its 24 hours), twice: with the simulator's ids (``sim-3-00001``, 11
characters, sequential: they compress far better than real ids) and with the same records under
UUIDs (36 characters, in no order), as ``bench_memory.py`` does. For each:

- **ClickHouse bytes on disk per stored row**: ``fairwatch replay`` (the worker's batch step) into
  a fresh chDB store with the sex&race and sex&race&age intersections counted (41 groups and the
  overall row per deployment), then ``fairwatch audit seal``'s :func:`~fairwatch.audit.evidence_log.seal`
  with a fresh key (the evidence log a sealed deployment keeps), then ``OPTIMIZE TABLE ... FINAL``
  of every table; ``system.parts`` (active parts): ``bytes_on_disk`` (compressed columns, marks,
  primary index, checksums) over ``rows``, per table. chDB is ClickHouse 26.x with its default LZ4;
  Debian's 18.16 server was not measured here.
- **Kafka bytes per input record**: the records in 100-record batch envelopes over 8 partitions,
  built by the producer SDK's :class:`~fairwatch.producer.BatchBuilder`, as the envelopes' bytes
  over the records (uncompressed: the SDK sets no compression; Kafka's own record-batch framing,
  some 70 bytes a message, is not counted).
- **join-log bytes per held id**: every record through a :class:`~fairwatch.core.join.LabelJoin`
  and :meth:`~fairwatch.core.join.LabelJoin.export_slots` of every id it holds: the blob the
  worker writes to its changelog topic (and its rocksdb table) for each id.
- **join memory of paired ids**: in a fresh process, RSS growth per id of a
  :class:`~fairwatch.core.join.LabelJoin` fed 1,000,000 match events under UUIDs (copies of
  simulated ones), then an outcome for each: ``bench_memory.py`` measures pending ids only, and a
  join holds paired ones for its TTL as well.

Once, from the simulation: the verified share (events with a primary verdict), outcomes per
verified event (revisions and independent reviews included) and the mean label delay (first
verdict after its event): the defaults of ``fairwatch plan``'s ``--verified-share`` and
``--label-delay-hours``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from fairwatch.core.config import CoreConfig
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.testing.bench import write_results

RESULTS = Path(__file__).parent / "results" / "capacity.json"
INTERSECTIONS = (("sex", "race"), ("sex", "race", "age"))
PARTITIONS = 8
PER_ENVELOPE = 100


def with_ids(lines: list[bytes], ids: dict[bytes, bytes]) -> list[bytes]:
    """``lines`` with each ``"event_id":"X"`` renamed to ids[X]."""
    out = []
    for line in lines:
        head, rest = line.split(b'"event_id":"', 1)
        old, tail = rest.split(b'"', 1)
        out.append(head + b'"event_id":"' + ids[old] + b'"' + tail)
    return out


def stored_bytes(directory: Path, events: Path, outcomes: Path, seal_log: bool) -> dict:
    """Replay into a fresh chDB store, seal, merge; per table: rows and bytes on disk."""
    from fairwatch.audit.evidence_log import seal
    from fairwatch.contracts.keys import generate_key
    from fairwatch.store.clickhouse import open_store
    from fairwatch.stream.replay import replay

    shutil.rmtree(directory, ignore_errors=True)
    store = open_store(f"chdb://{directory}")
    try:
        report = replay(store, events, outcomes, config=CoreConfig(intersections=INTERSECTIONS))
        if report.rejected:
            raise SystemExit(f"error: replay refused {len(report.rejected)} simulated lines: {report.rejected[0]}")
        if seal_log:
            seal(store, generate_key("bench-capacity"))
        tables = [row[0] for row in store.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'")]
        for table in tables:
            store.execute(f"OPTIMIZE TABLE {table} FINAL")
        rows = store.query(
            "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes), sum(data_uncompressed_bytes),"
            " count() FROM system.parts WHERE active AND database = currentDatabase() GROUP BY table ORDER BY table")
    finally:
        store.close()
    return {table: {"rows": int(n), "bytes_on_disk": int(disk), "compressed": int(comp), "uncompressed": int(raw),
                    "parts": int(parts), "bytes_per_row": disk / n if n else None}
            for table, n, disk, comp, raw, parts in rows}


def envelope_bytes(event_lines: list[bytes], outcome_lines: list[bytes], event_ids: list[str],
                   outcome_ids: list[str]) -> dict:
    """Bytes of the producer SDK's 100-record envelopes per record, per input topic."""
    from fairwatch.producer import BatchBuilder

    out = {}
    for kind, lines, ids in (("match_event", event_lines, event_ids), ("verified_outcome", outcome_lines, outcome_ids)):
        builder = BatchBuilder(PARTITIONS, max_records=PER_ENVELOPE, linger=1e9)
        envelopes = [env for line, event_id in zip(lines, ids) for env in builder.add(kind, event_id, line, now=0.0)]
        envelopes += builder.due(now=2e9)
        total = sum(len(env.value) for env in envelopes)
        out[kind] = {"records": len(lines), "envelopes": len(envelopes), "bytes": total,
                     "bytes_per_record": total / len(lines), "line_bytes_per_record": sum(map(len, lines)) / len(lines)}
    return out


def join_log_bytes(event_lines: list[bytes], outcome_lines: list[bytes]) -> dict:
    """Blob bytes per id held by a join that took every record (the worker's changelog form)."""
    from fairwatch.contracts.records import decode_match_event, decode_verified_outcome
    from fairwatch.core.join import LabelJoin

    join = LabelJoin(CoreConfig(), capacity=len(event_lines))
    for lines, decode in ((event_lines, decode_match_event), (outcome_lines, decode_verified_outcome)):
        for lo in range(0, len(lines), 10_000):
            output = join.update([decode(line) for line in lines[lo:lo + 10_000]])
            if output.rejected:
                raise SystemExit(f"error: the join rejected a simulated record: {output.rejected[0].rejection}")
    slots, _ = join.take_changes()
    blob = join.export_slots(slots)
    return {"ids_held": len(slots), "pending": join.counters.pending, "blob_bytes": len(blob),
            "bytes_per_id": len(blob) / len(slots)}


def paired_memory(n: int) -> dict:
    """In a fresh process: RSS growth per id of a join fed ``n`` match events (all pending), then
    an outcome for each (all paired); bench_memory.py measures pending ids only."""
    import gc

    from bench_memory import rss_bytes
    from fairwatch.contracts.records import decode_match_event, decode_verified_outcome
    from fairwatch.core.join import LabelJoin

    sim = simulate(load_scenario("default"), seed=3, events=2_000)
    firsts = {}
    for line, event in zip(sim.outcome_lines(np.arange(sim.n_outcomes)), sim.o_event.tolist()):
        firsts.setdefault(event, line)
    events = [sim.event_lines([i])[0] for i in sorted(firsts)]
    pairs = [(e.split(b'"event_id":"')[0], e.split(b'"event_id":"')[1].split(b'"', 1)[1],
              o.split(b'"event_id":"')[0], o.split(b'"event_id":"')[1].split(b'"', 1)[1])
             for e, o in zip(events, (firsts[i] for i in sorted(firsts)))]

    def lines(start: int, stop: int, outcome: bool) -> list[bytes]:
        out = []
        for i in range(start, stop):
            head, tail = pairs[i % len(pairs)][2:] if outcome else pairs[i % len(pairs)][:2]
            out.append(head + b'"event_id":"' + str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % (1 << 128))).encode()
                       + b'"' + tail)
        return out

    join = LabelJoin(CoreConfig())
    gc.collect()
    rss = [rss_bytes()]
    for outcome, decode in ((False, decode_match_event), (True, decode_verified_outcome)):
        for lo in range(0, n, 20_000):
            output = join.update([decode(line) for line in lines(lo, min(n, lo + 20_000), outcome)])
            assert not output.rejected, output.rejected[0].rejection
        gc.collect()
        rss.append(rss_bytes())
    counters = join.counters
    return {"ids": n, "pending_after_events": n, "paired_after_outcomes": counters.paired,
            "pending_after_outcomes": counters.pending, "rss_before": rss[0],
            "rss_growth_per_id_pending": (rss[1] - rss[0]) / n, "rss_growth_per_id_paired": (rss[2] - rss[0]) / n}


def workload_facts(sim) -> dict:
    """The verified share, outcomes per verified event and the label delay of the simulation."""
    independent = np.asarray(sim.o_independent, bool)
    first = (np.asarray(sim.o_revision) == 0) & ~independent
    delay_hours = (sim.o_time[first] - sim.time[sim.o_event[first]]) / 3.6e9
    verified = len(np.unique(sim.o_event[first]))
    return {"events": int(sim.n_events), "outcomes": int(sim.n_outcomes), "verified_events": verified,
            "verified_share": verified / sim.n_events, "outcomes_per_verified_event": sim.n_outcomes / verified,
            "label_delay_hours_mean": float(delay_hours.mean()),
            "label_delay_hours_median": float(np.median(delay_hours)),
            "label_delay_hours_p99": float(np.quantile(delay_hours, 0.99))}


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=Path(__file__).parent).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=None, help="match events (default 100,000; 20,000 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-seal", action="store_true", help="leave the evidence log out")
    parser.add_argument("--paired-ids", type=int, default=None,
                        help="ids of the paired-join memory run (default 1,000,000; 200,000 with --quick)")
    args = parser.parse_args()
    started = time.perf_counter()
    n = args.events or (20_000 if args.quick else 100_000)
    args.paired_ids = args.paired_ids or (200_000 if args.quick else 1_000_000)
    sim = simulate(load_scenario("default"), seed=3, events=n)
    facts = workload_facts(sim)
    event_lines = sim.event_lines(np.arange(sim.n_events))
    outcome_lines = sim.outcome_lines(np.arange(sim.n_outcomes))
    sim_ids = sim.event_ids
    print(f"{len(event_lines):,} match events + {len(outcome_lines):,} outcomes; verified share"
          f" {facts['verified_share']:.4f}, {facts['outcomes_per_verified_event']:.4f} outcomes per verified event,"
          f" label delay mean {facts['label_delay_hours_mean']:.2f} h")
    rename = {old.encode(): str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15 + 1) % (1 << 128))).encode()
              for i, old in enumerate(sim_ids)}
    styles = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for style in ("seq", "uuid"):
            events = event_lines if style == "seq" else with_ids(event_lines, rename)
            outcomes = outcome_lines if style == "seq" else with_ids(outcome_lines, rename)
            ids = sim_ids if style == "seq" else [rename[i.encode()].decode() for i in sim_ids]
            outcome_ids = [ids[i] for i in sim.o_event.tolist()]
            paths = tmp / f"events-{style}.jsonl", tmp / f"outcomes-{style}.jsonl"
            paths[0].write_bytes(b"\n".join(events) + b"\n")
            paths[1].write_bytes(b"\n".join(outcomes) + b"\n")
            t0 = time.perf_counter()
            tables = stored_bytes(tmp / f"store-{style}", *paths, seal_log=not args.no_seal)
            styles[style] = {"id_length": len(ids[0]), "tables": tables,
                             "kafka": envelope_bytes(events, outcomes, ids, outcome_ids),
                             "join_log": join_log_bytes(events, outcomes)}
            print(f"\n{style} ids ({len(ids[0])} characters), stored in {time.perf_counter() - t0:.1f} s:")
            print(f"  {'table':<24} {'rows':>9} {'bytes on disk':>14} {'B/row':>8}")
            for table, t in tables.items():
                if t["rows"]:
                    print(f"  {table:<24} {t['rows']:>9,} {t['bytes_on_disk']:>14,} {t['bytes_per_row']:>8.1f}")
            for kind, k in styles[style]["kafka"].items():
                print(f"  kafka {kind}: {k['bytes_per_record']:.1f} B/record in envelopes"
                      f" ({k['line_bytes_per_record']:.1f} B a line)")
            j = styles[style]["join_log"]
            print(f"  join log: {j['bytes_per_id']:.1f} B per held id ({j['ids_held']:,} ids)")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:  # a fresh heap
        memory = pool.submit(paired_memory, args.paired_ids).result()
    print(f"\njoin memory, {memory['ids']:,} UUID ids: {memory['rss_growth_per_id_pending']:.1f} B of RSS per id pending,"
          f" {memory['rss_growth_per_id_paired']:.1f} B once all {memory['paired_after_outcomes']:,} are paired")
    write_results(RESULTS, {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]), "commit": commit(),
        "machine": {"platform": platform.platform(), "cpu": cpu_name(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "scenario": "default", "seed": 3, "intersections": ["&".join(c) for c in INTERSECTIONS],
        "sealed": not args.no_seal, "workload": facts, "styles": styles, "join_memory": memory}, started)


if __name__ == "__main__":
    main()
