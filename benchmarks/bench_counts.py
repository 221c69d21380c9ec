"""What a flush of late outcomes costs: resident counts against recomputing the touched buckets.

Not a test (``python benchmarks/bench_counts.py [--events N] [--late N] [--store URL]``). A day of
match events (one-minute buckets, 8 partitions) is joined and stored with most of its outcomes;
the rest arrive late, in rounds, each touching buckets from the whole day. Per round, the same
counts are written two ways on the real ClickHouse server (the local stack unless ``--store`` or
``FAIRWATCH_CLICKHOUSE`` names one): the live worker's way (the cells the round changed, from the
partitions' resident counts) and the baseline, the worker's way before (``group_counts`` of every
touched bucket recomputed from ``labeled_outcomes`` with ``FINAL``). Both must leave the same
counts, checked against a brute-force recount after the last round. Writes
``benchmarks/results/counts.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.workload: the workload and its oracle

from fairwatch.contracts.partitioning import partitions_for  # noqa: E402
from fairwatch.core.config import CoreConfig  # noqa: E402
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import ClickHouseSink  # noqa: E402
from fairwatch.stream.processor import BatchProcessor, RawMessage, ResidentJoins  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "counts.json"
PARTITIONS = 8
CONFIG = CoreConfig(intersections=(("sex", "race"),))


def server_url() -> str:
    if os.environ.get("FAIRWATCH_CLICKHOUSE"):
        return os.environ["FAIRWATCH_CLICKHOUSE"]
    from fairwatch.testing.stack import (
        ensure_stack,  # the local stack, started if needed
    )
    return ensure_stack()["FAIRWATCH_CLICKHOUSE"]


def messages_of(workload) -> tuple[list[RawMessage], list[RawMessage]]:
    """(events, outcomes) as messages on their partitions, each in delivery order."""
    keys = [key.decode() for _, key, _ in workload.messages]
    homes = partitions_for(keys, PARTITIONS).tolist()
    out = [RawMessage(kind, f"t.{kind}", home, offset, key, value)
           for offset, ((kind, key, value), home) in enumerate(zip(workload.messages, homes))]
    events = [m for m in out if m.kind == "match-events"]
    outcomes = [m for m in out if m.kind == "verified-outcomes"]
    return events, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="match events over the day")
    parser.add_argument("--late", type=int, default=2_000, help="late outcomes per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store", help="ClickHouse server URL (default: FAIRWATCH_CLICKHOUSE or the local stack)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    from fairwatch.testing.live import (
        assert_counts_equal,
        changed_counts,
        stored_counts,
    )
    from fairwatch.testing.workload import make_workload, oracle_counts

    base = urlparse(args.store or server_url())
    database = f"bench_counts_{uuid.uuid4().hex[:8]}"
    store = open_store(urlunparse(base._replace(path=f"/{database}")))
    try:
        migrate(store)
        workload = make_workload(args.events, seed=11, hours=24.0, duplicate_share=0.0, malformed_share=0.0,
                                 revision_share=0.0)
        events, outcomes = messages_of(workload)
        held_back = args.late * args.rounds
        if held_back >= len(outcomes):
            parser.error(f"--late x --rounds must be under the {len(outcomes)} outcomes")
        early, late = events + outcomes[:-held_back], outcomes[-held_back:]
        resident = ResidentJoins(CONFIG, lambda partition: [])
        processor = BatchProcessor(CONFIG, partitions=PARTITIONS)
        sink = ClickHouseSink(store, CONFIG)
        started = time.perf_counter()
        for first in range(0, len(early), 20_000):
            sink.write_rows(processor.process(early[first : first + 20_000], resident=resident).sink)
        sink.write_counts(changed_counts(resident, range(PARTITIONS)))
        print(f"a day of {args.events:,} events and {len(outcomes) - held_back:,} outcomes stored in "
              f"{time.perf_counter() - started:.1f}s; {args.rounds} rounds of {args.late:,} late outcomes", flush=True)

        rounds = []
        for r in range(args.rounds):
            result = processor.process(late[r * args.late : (r + 1) * args.late], resident=resident)
            sink.write_rows(result.sink)
            touched: dict[int, set[int]] = {}
            for deltas, partition in result.sink.deltas:
                touched.setdefault(partition, set()).update(deltas.bucket.tolist())
            def by_resident() -> float:
                start = time.perf_counter()
                sink.write_counts(changed_counts(resident, range(PARTITIONS)))
                return time.perf_counter() - start

            def by_recompute() -> float:
                start = time.perf_counter()
                sink.recompute(touched)
                return time.perf_counter() - start

            if r % 2:  # each way goes first in every other round
                recompute_s, resident_s = by_recompute(), by_resident()
            else:
                resident_s, recompute_s = by_resident(), by_recompute()
            buckets = sum(map(len, touched.values()))
            rounds.append({"resident_s": resident_s, "recompute_s": recompute_s, "touched_buckets": buckets})
            print(f"  round {r + 1}: {buckets:,} (partition, bucket) pairs touched; resident counts "
                  f"{resident_s:.3f}s, recompute {recompute_s:.3f}s", flush=True)
        assert_counts_equal(stored_counts(store), oracle_counts(workload))  # both ways wrote the truth
        server = ".".join(map(str, store.server_version()))
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {database}")
        store.close()

    resident_s = statistics.median(r["resident_s"] for r in rounds)
    recompute_s = statistics.median(r["recompute_s"] for r in rounds)
    print(f"median per flush of {args.late:,} late outcomes: resident counts {resident_s:.3f}s, "
          f"recompute (baseline) {recompute_s:.3f}s -> resident takes {resident_s / recompute_s:.2f}x "
          f"the baseline's time (ClickHouse {server})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "events": args.events, "late_per_round": args.late, "rounds": rounds, "server_version": server,
        "median_resident_s": resident_s, "median_recompute_s": recompute_s, "ratio": resident_s / recompute_s,
        "machine": platform.platform(), "cpus": os.cpu_count(),
    }, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
