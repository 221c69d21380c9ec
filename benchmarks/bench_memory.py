"""Memory of pending joins: bytes per match event waiting for its outcome, and RSS at 10M of them.

Run by ``make bench`` (not a test); issue 28, item 5 (target: <= 200 B per pending entry). One
fresh process per id style feeds match events without outcomes through the live worker's own
batch step: batch envelopes of 100 records over 8 partitions (as the producer SDK sends them),
:meth:`BatchProcessor.process` against :class:`ResidentJoins` (the worker's resident joins), and a
flush's :meth:`ResidentJoins.persist` every ``MAX_PENDING_RECORDS`` records, its join-log writes
dropped (the worker hands them to Kafka). At each checkpoint it reads, after a garbage collection:

- **RSS** (``/proc/self/statm``): the whole process, allocator and fragmentation included; the
  growth over the RSS before the first event, divided by the events pending, is *bytes per
  pending entry*;
- **accounted** bytes: what the joins hold by their own structures (numpy columns at their
  allocated capacity, the id index, the id strings), the lower bound RSS growth tends to.

The process imports what a worker imports (faust, aiokafka, the sink) but runs no faust app, no
Kafka client and no sink process: a live worker's RSS is this one's plus those
(``bench_latency.py`` reports a live worker's RSS). Events are copies of 1,000 simulated events
(default scenario) with fresh ids: ``seq`` ids like the simulator's (``sim-000000000001``, 16
characters) or ``uuid`` (36). ``--max-events`` above what fits in memory is refused; say less and
extrapolate (the JSON keeps every checkpoint, the slope between the last two included).

Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "memory.json"
PARTITIONS = 8
TARGET_BYTES = 200  # issue 28 (and issue 3's core target at 1M)
CHUNK = 16_000  # records per processed batch: about one 4 MB sub-batch of the worker


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def templates(n: int = 1_000) -> list[tuple[bytes, bytes]]:
    """Simulated match events (default scenario) split around their event_id: (before, after)."""
    from fairwatch.sim.scenario import load_scenario
    from fairwatch.sim.simulator import simulate

    sim = simulate(load_scenario("default"), events=n)
    out = []
    for line, event_id in zip(sim.event_lines(range(n)), sim.event_ids):
        marker = b'"event_id":"%s"' % event_id.encode()
        before, after = line.split(marker)
        out.append((before + b'"event_id":"', b'"' + after))
    return out


def event_ids(start: int, n: int, style: str) -> list[str]:
    if style == "uuid":
        return [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128))) for i in range(start, start + n)]
    return [f"sim-{i:012d}" for i in range(start, start + n)]


def messages_of(ids: list[str], shapes: list[tuple[bytes, bytes]], offset_of: dict) -> list:
    """Batch envelopes of 100 events, each on its id's partition, as the worker reads them."""
    from fairwatch.contracts.partitioning import partitions_for
    from fairwatch.contracts.topics import MATCH_EVENTS
    from fairwatch.stream.processor import RawMessage

    homes = partitions_for(ids, PARTITIONS).tolist()
    by_partition: dict[int, list[bytes]] = {}
    for i, (event_id, home) in enumerate(zip(ids, homes)):
        before, after = shapes[i % len(shapes)]
        by_partition.setdefault(home, []).append(before + event_id.encode() + after)
    out = []
    for partition, lines in sorted(by_partition.items()):
        for lo in range(0, len(lines), 100):
            value = (b'{"batch_version":1,"bucket":%d,"partitions":%d,"records":[' % (partition, PARTITIONS)
                     + b",".join(lines[lo:lo + 100]) + b"]}")
            offset = offset_of.get(partition, 0)
            offset_of[partition] = offset + 1
            out.append(RawMessage(MATCH_EVENTS, MATCH_EVENTS, partition, offset, b"bucket-%d" % partition, value))
    return out


def accounted(joins: dict) -> dict:
    """Bytes the joins hold by their own structures (numpy columns at capacity, id index, id strings)."""
    columns = index = strings = 0
    for join in joins.values():
        columns += sum(v.nbytes for v in vars(join).values() if hasattr(v, "nbytes") and hasattr(v, "dtype"))
        slot_index = join._index
        index += (len(slot_index._table) * slot_index._table.itemsize + sys.getsizeof(slot_index.ids)
                  + len(slot_index._hashes) * slot_index._hashes.itemsize)
        strings += sum(map(sys.getsizeof, filter(None, slot_index.ids)))
    return {"columns": columns, "index": index, "id_strings": strings, "total": columns + index + strings}


def measure(style: str, checkpoints: list[int]) -> dict:
    """In a fresh process: feed events up to each checkpoint, read RSS and accounted bytes there."""
    import fairwatch.stream.app  # noqa: F401 - what a worker imports (faust, aiokafka, the sink)
    from fairwatch.core.config import CoreConfig
    from fairwatch.stream.batching import MAX_PENDING_RECORDS
    from fairwatch.stream.gctuning import tune_garbage_collector
    from fairwatch.stream.processor import BatchProcessor, ResidentJoins

    config = CoreConfig(intersections=(("sex", "race"),))
    shapes = templates()
    resident = ResidentJoins(config, lambda partition: [])
    processor = BatchProcessor(config, partitions=PARTITIONS)
    tune_garbage_collector()  # as the worker does at start
    gc.collect()
    base = rss_bytes()
    rows, fed, since_flush, offsets = [], 0, 0, {}
    started = time.perf_counter()
    for checkpoint in checkpoints:
        while fed < checkpoint:
            n = min(CHUNK, checkpoint - fed)
            result = processor.process(messages_of(event_ids(fed, n, style), shapes, offsets), resident=resident)
            if result.dead_letters or result.reroutes:
                raise RuntimeError(f"{len(result.dead_letters)} dead letters, {len(result.reroutes)} reroutes")
            fed += n
            since_flush += n
            if since_flush >= MAX_PENDING_RECORDS:  # a flush: the join log of what changed, then dropped
                for partition in resident.joins():
                    resident.persist(partition)
                since_flush = 0
        del result
        gc.collect()
        rss = rss_bytes()
        joins = resident.joins()
        pending = sum(join.counters.pending for join in joins.values())
        if pending != fed:
            raise RuntimeError(f"{pending} pending after {fed} events")
        held = accounted(joins)
        rows.append({"pending": pending, "rss_bytes": rss, "rss_growth_bytes": rss - base,
                     "bytes_per_entry_rss": (rss - base) / pending, "accounted_bytes": held,
                     "bytes_per_entry_accounted": held["total"] / pending, "seconds": time.perf_counter() - started})
        print(f"  {style}: {pending:>11,} pending  RSS {rss / 2**20:>8,.0f} MiB  "
              f"{(rss - base) / pending:>6.1f} B/entry (RSS growth)  {held['total'] / pending:>6.1f} B/entry "
              f"(accounted)  {time.perf_counter() - started:>5.0f} s", flush=True)
    return {"id_style": style, "rss_before_bytes": base, "checkpoints": rows}


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-events", type=int, default=10_000_000, help="pending events at the last checkpoint")
    parser.add_argument("--styles", default="seq,uuid", help="id styles, comma-separated: seq, uuid")
    parser.add_argument("--quick", action="store_true", help="up to 1M pending, seq ids only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    top = 1_000_000 if args.quick else args.max_events
    styles = ["seq"] if args.quick else [s.strip() for s in args.styles.split(",") if s.strip()]
    checkpoints = sorted({n for n in (top // 10, top // 5, top // 2, top) if n > 0})
    # uuid ids at 10M: ~2.5 GB for the joins, as much again for the process at its peak
    need = 600 * top
    if need > available_bytes():
        parser.error(f"{top:,} events need about {need / 2**30:.1f} GiB; {available_bytes() / 2**30:.1f} GiB are "
                     "available: give a smaller --max-events and extrapolate")

    from fairwatch.testing.bench import write_results

    started = time.perf_counter()
    runs = []
    for style in styles:
        print(f"{style} ids, checkpoints {', '.join(f'{n:,}' for n in checkpoints)}", flush=True)
        runs.append(in_fresh_process(measure, style, checkpoints))
    summary = []
    for run in runs:
        last = run["checkpoints"][-1]
        slope = None
        if len(run["checkpoints"]) >= 2:
            before = run["checkpoints"][-2]
            slope = (last["rss_bytes"] - before["rss_bytes"]) / (last["pending"] - before["pending"])
        summary.append({"id_style": run["id_style"], "pending": last["pending"], "rss_bytes": last["rss_bytes"],
                        "bytes_per_entry_rss": last["bytes_per_entry_rss"],
                        "bytes_per_entry_accounted": last["bytes_per_entry_accounted"],
                        "bytes_per_entry_last_step": slope,
                        "target_met": last["bytes_per_entry_rss"] <= TARGET_BYTES})
    print(f"\n{'ids':<6}{'pending':>12}{'RSS MiB':>10}{'B/entry (RSS)':>15}{'B/entry (accounted)':>21}"
          f"{'last step B/entry':>19}  target <= {TARGET_BYTES} B")
    for s in summary:
        step = "-" if s["bytes_per_entry_last_step"] is None else f"{s['bytes_per_entry_last_step']:.1f}"
        print(f"{s['id_style']:<6}{s['pending']:>12,}{s['rss_bytes'] / 2**20:>10,.0f}{s['bytes_per_entry_rss']:>15.1f}"
              f"{s['bytes_per_entry_accounted']:>21.1f}{step:>19}  {'met' if s['target_met'] else 'NOT met'}")
    write_results(args.out, {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "memory_available_at_start_bytes": available_bytes()},
        "partitions": PARTITIONS, "target_bytes_per_entry": TARGET_BYTES, "runs": runs, "summary": summary,
    }, started)


if __name__ == "__main__":
    main()
