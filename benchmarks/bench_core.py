"""Throughput and memory of the statistics core: label-delay join + per-group bucket counts.

Run by ``make bench`` (not a test). Beside fairwatch's columnar core, in the same run, a naive
per-event implementation (a dict of per-event dicts, counts in a dict of Python lists) does the
same work as a baseline. Prints a table and writes ``benchmarks/results/core.json``.

Workload: 2 deployments x 2 algorithms x 2 modes x sex (2) x race (4) x age (4) = 256 profiles,
intersection sex & race, so each comparison counts in 5 groups. Events occur uniformly over one
day (1,440 one-minute buckets); each batch carries B new events and the outcomes of the previous
batch's events (a one-batch label delay), so a batch of B yields B labeled outcomes spread over
the whole day -- the hard case for the count step. Non-matches are verified with inclusion
probability 0.1, matches with 1.

Targets (issue 3): >= 500k labeled outcomes/s on one core for the count step; <= 200 bytes per
pending event at 1M pending.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import time
import tracemalloc
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from fairwatch.contracts.records import MatchEvent, VerifiedOutcome
from fairwatch.core.config import CoreConfig
from fairwatch.core.counts import BucketCounts
from fairwatch.core.join import LabelJoin
from fairwatch.core.layout import INTERSECTION_SEP, N_COLUMNS, OVERALL, GroupKey
from msgspec.structs import replace

CONFIG = CoreConfig(intersections=(("sex", "race"),))
DAY0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
RESULTS = Path(__file__).parent / "results" / "core.json"


def make_events(start: int, n: int, rng: np.random.Generator, id_style: str = "seq") -> list[MatchEvent]:
    seconds = rng.integers(0, 86_400, n)
    draws = rng.integers(0, 256, n)
    scores = rng.random(n)
    out = []
    for i, (sec, d, score) in enumerate(zip(seconds.tolist(), draws.tolist(), scores.tolist()), start):
        deployment = f"gate-{d & 1}"
        out.append(MatchEvent(
            event_id=event_id(i, deployment, id_style),
            occurred_at=DAY0 + timedelta(seconds=sec),
            deployment=deployment,
            algorithm=f"algo-{(d >> 1) & 1}",
            mode=("verification", "identification")[(d >> 2) & 1],
            score=score,
            threshold=0.5,
            decision="match" if score >= 0.5 else "non_match",
            subject={"sex": "FM"[(d >> 3) & 1], "race": ("A", "B", "C", "D")[(d >> 4) & 3],
                     "age": ("18-29", "30-49", "50-69", "70+")[(d >> 6) & 3]},
        ))
    return out


def make_outcomes(events: list[MatchEvent], rng: np.random.Generator) -> list[VerifiedOutcome]:
    flips = rng.random(len(events)) < 0.05  # the system is wrong 5% of the time
    return [
        VerifiedOutcome(
            event_id=ev.event_id,
            verified_at=ev.occurred_at + timedelta(hours=1),
            truth=("genuine" if ev.decision == "match" else "impostor") if not flip
            else ("impostor" if ev.decision == "match" else "genuine"),
            reviewer="r1",
            revision=0,
            inclusion_prob=1.0 if ev.decision == "match" else 0.1,
        )
        for ev, flip in zip(events, flips.tolist())
    ]


def make_batches(n_outcomes: int, batch: int, seed: int = 1) -> list[list]:
    """Batch k: the events of step k, then the outcomes of the events of step k - 1."""
    rng = np.random.default_rng(seed)
    steps = [make_events(k * batch, batch, rng) for k in range(n_outcomes // batch + 1)]
    return [steps[0]] + [steps[k] + make_outcomes(steps[k - 1], rng) for k in range(1, len(steps))]


class NaiveJoin:
    """Baseline: a dict of per-event dicts; the same pairing rules without fingerprints."""

    def __init__(self, config: CoreConfig):
        self.bucket_seconds = config.bucket_seconds
        self.events: dict[str, dict] = {}
        self.outcomes: dict[str, dict] = {}

    def add_event(self, ev: MatchEvent) -> dict:
        ts = ev.occurred_at.timestamp()
        return {"deployment": ev.deployment, "algorithm": ev.algorithm, "mode": ev.mode,
                "subject": dict(ev.subject), "match": ev.decision == "match",
                "bucket": int(ts // self.bucket_seconds) * self.bucket_seconds}

    def update(self, records) -> list[tuple[dict, dict, int]]:
        deltas = []
        for r in records:
            if isinstance(r, VerifiedOutcome):
                held = self.outcomes.get(r.event_id)
                if held is not None and held["revision"] >= r.revision:
                    continue
                outcome = {"revision": r.revision, "genuine": r.truth == "genuine", "weight": 1.0 / r.inclusion_prob}
                self.outcomes[r.event_id] = outcome
                event = self.events.get(r.event_id)
                if event is not None:
                    if held is not None:
                        deltas.append((event, held, -1))
                    deltas.append((event, outcome, 1))
            elif r.event_id not in self.events:
                event = self.events[r.event_id] = self.add_event(r)
                outcome = self.outcomes.get(r.event_id)
                if outcome is not None:
                    deltas.append((event, outcome, 1))
        return deltas


class NaiveCounts:
    """Baseline: per delta, per group, a Python-list row in a dict keyed by (GroupKey, bucket)."""

    def __init__(self, config: CoreConfig):
        self.intersections = config.intersections
        self.cells: dict[tuple[GroupKey, int], list[float]] = defaultdict(lambda: [0.0] * N_COLUMNS)

    def update(self, deltas) -> None:
        for event, outcome, sign in deltas:
            where = (event["deployment"], event["algorithm"], event["mode"])
            subject = event["subject"]
            keys = [GroupKey(*where, OVERALL, OVERALL)] + [GroupKey(*where, a, g) for a, g in subject.items()]
            keys += [GroupKey(*where, INTERSECTION_SEP.join(c), INTERSECTION_SEP.join(subject[a] for a in c))
                     for c in self.intersections if all(a in subject for a in c)]
            w = outcome["weight"]
            err = outcome["genuine"] != event["match"]
            base = 6 if outcome["genuine"] else 0
            add = (sign, sign * err, sign * w, sign * w * err, sign * w * w, sign * w * w * err)
            for key in keys:
                row = self.cells[(key, event["bucket"])]
                for j in range(6):
                    row[base + j] += add[j]


def run_throughput(batches: list[list], join, counts) -> dict:
    """CPU seconds (one core; this machine is shared) of the join and the count step, per batch.

    ``count_warm_per_s`` replays the same deltas once more, when every cell exists: the steady
    state of a long-running monitor, where new cells appear only for each new minute.
    """
    join_s = count_s = warm_s = 0.0
    labeled = 0
    all_deltas = []
    gc.collect()
    gc.disable()  # the collector's pauses are noise here, not a property of either design
    try:
        for batch in batches:
            t0 = time.process_time()
            out = join.update(batch)
            deltas = out.deltas if hasattr(out, "deltas") else out
            t1 = time.process_time()
            counts.update(deltas)
            t2 = time.process_time()
            join_s += t1 - t0
            count_s += t2 - t1
            labeled += len(deltas)
            all_deltas.append(deltas)
        for deltas in all_deltas:
            t0 = time.process_time()
            counts.update(deltas)
            warm_s += time.process_time() - t0
    finally:
        gc.enable()
    return {"labeled": labeled, "join_per_s": labeled / join_s, "count_per_s": labeled / count_s,
            "count_warm_per_s": labeled / warm_s, "total_per_s": labeled / (join_s + count_s)}


def check_same_counts(ours: BucketCounts, naive: NaiveCounts) -> None:
    expected = {(key, bucket): row for (key, bucket), row in naive.cells.items()}
    got = {(r.key, r.bucket_start): r.row for r in ours.rows()}
    assert got.keys() == expected.keys(), "core and baseline disagree on the cells"
    for cell, row in got.items():
        np.testing.assert_allclose(row, expected[cell], rtol=1e-9, atol=1e-6)


def event_id(i: int, deployment: str, id_style: str) -> str:
    return str(uuid.UUID(int=i)) if id_style == "uuid" else f"{deployment}-{i:012d}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pending_memory(implementation: str, n: int, id_style: str, method: str, chunk: int = 1_000) -> float:
    """Bytes of memory per event while ``n`` events wait for their outcome (run in a fresh process).

    The events are copies of 1,000 templates with fresh ids, so that only what the join keeps
    (the id string and its own state) stays allocated. ``method`` is "rss" (resident set growth,
    allocator overhead included) or "tracemalloc" (bytes Python allocated; slower to run).
    """
    templates = make_events(0, chunk, np.random.default_rng(7))
    join = LabelJoin(CONFIG) if implementation == "fairwatch" else NaiveJoin(CONFIG)
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else rss_bytes()
    for start in range(0, n, chunk):
        join.update([
            replace(ev, event_id=event_id(start + i, ev.deployment, id_style))
            for i, ev in enumerate(templates[: n - start])
        ])
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else rss_bytes()
    pending = join.counters.pending if implementation == "fairwatch" else len(join.events)
    assert pending == n
    return (after - before) / n


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=200_000, help="labeled outcomes per batch size")
    parser.add_argument("--pending", type=int, default=1_000_000, help="pending events for the memory test")
    parser.add_argument("--memory", choices=("rss", "tracemalloc"), default="rss", help="how memory is measured")
    args = parser.parse_args()

    results: dict = {"python": platform.python_version(), "numpy": np.__version__,
                     "machine": platform.machine(), "throughput": [], "memory": []}
    for batch in (1_000, 10_000):
        batches = make_batches(args.outcomes, batch)
        ours_counts = BucketCounts(CONFIG)
        ours = run_throughput(batches, LabelJoin(CONFIG), ours_counts)
        naive_counts = NaiveCounts(CONFIG)
        naive = run_throughput(batches, NaiveJoin(CONFIG), naive_counts)
        check_same_counts(ours_counts, naive_counts)
        results["throughput"].append({"batch": batch, "fairwatch": ours, "naive": naive})
        del batches

    for id_style in ("seq", "uuid"):
        row = {"pending": args.pending, "id_style": id_style, "method": args.memory}
        for implementation in ("fairwatch", "naive"):
            row[implementation] = in_fresh_process(pending_memory, implementation, args.pending, id_style, args.memory)
        results["memory"].append(row)

    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


def print_table(results: dict) -> None:
    print(f"{'labeled outcomes/s':<34}{'fairwatch':>12}{'naive':>12}{'ratio':>8}")
    for row in results["throughput"]:
        steps = (("join_per_s", "join"), ("count_per_s", "count"), ("count_warm_per_s", "count, cells exist"),
                 ("total_per_s", "join + count"))
        for step, name in steps:
            ours, naive = row["fairwatch"][step], row["naive"][step]
            label = f"batch {row['batch']:>6,}  {name}"
            print(f"{label:<34}{ours:>12,.0f}{naive:>12,.0f}{ours / naive:>7.1f}x")
    print(f"\n{'bytes per pending event':<34}{'fairwatch':>12}{'naive':>12}{'ratio':>8}")
    for row in results["memory"]:
        ours, naive = row["fairwatch"], row["naive"]
        label = f"{row['pending']:,} pending, {row['id_style']} ids ({row['method']})"
        print(f"{label:<34}{ours:>12,.0f}{naive:>12,.0f}{naive / ours:>7.1f}x")
    print("\ntargets: count step >= 500,000/s; <= 200 bytes per pending event (CPU time, one core)")


if __name__ == "__main__":
    main()
