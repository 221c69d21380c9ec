"""``fairwatch replay`` against chDB's own bulk ingest of the same two files, and its counts against a recount.

Run by ``make bench`` (not a test): ``benchmarks/bench_replay.py`` (150,000 simulated match events
and their verified outcomes) or ``--quick`` (30,000). Writes ``benchmarks/results/replay.json``.

The workload: the first N match events of the packaged default scenario
(:func:`fairwatch.sim.simulator.simulate`, seed 3) and every verified outcome of them, as the JSON
Lines files ``fairwatch simulate`` writes (events, then outcomes in arrival order). Each round, in
one process, one after the other:

- ``chdb file()``: a fresh chDB directory, two typed ReplacingMergeTree tables (the records' fields,
  the subject as ``Map(String, String)``), ``INSERT INTO ... SELECT ... FROM file(path, JSONEachRow)``
  for each file: the engine's own bulk ingest, no validation, no join. Its per-group join and count
  is timed apart (``chdb join+count``);
- ``fairwatch replay``: :func:`fairwatch.stream.replay.replay` into a fresh chDB directory (the
  migrations, every line decoded and checked by the contract, the label join, the five tables, the
  per-group counts), as ``fairwatch replay --store chdb://DIR`` runs it.

The ratio is the engine's ingest time over replay's (>= 0.5 is the speed issue's target), median of
the rounds. After the last round, ``group_counts`` of the replay (``read_counts``) must equal a
recount from the raw lines written here (the latest primary verdict of each event; per deployment,
algorithm, mode and group: impostor and genuine comparisons, their errors and summed weights).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from fairwatch.core.config import CoreConfig
from fairwatch.core.layout import COL, OVERALL
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.testing.bench import write_results
from fairwatch.testing.oracles import final_verdicts, group_cells, verified_error

RESULTS = Path(__file__).parent / "results" / "replay.json"

EVENTS_DDL = """CREATE TABLE events (event_id String, occurred_at DateTime64(6, 'UTC'), deployment String,
 algorithm String, mode LowCardinality(String), score Float64, threshold Float64, decision LowCardinality(String),
 subject Map(String, String), cluster_id String) ENGINE = ReplacingMergeTree ORDER BY event_id"""
OUTCOMES_DDL = """CREATE TABLE outcomes (event_id String, verified_at DateTime64(6, 'UTC'), truth LowCardinality(String),
 reviewer String, revision UInt32, inclusion_prob Float64) ENGINE = ReplacingMergeTree ORDER BY (event_id, revision)"""
JOIN_COUNT = """SELECT e.deployment, e.algorithm, e.mode, kv.1, kv.2, o.truth, count(), countIf(
 (o.truth = 'impostor' AND e.decision = 'match') OR (o.truth = 'genuine' AND e.decision = 'non_match'))
 FROM events AS e FINAL INNER JOIN (SELECT event_id, argMax(truth, revision) AS truth FROM outcomes GROUP BY event_id)
 AS o USING (event_id) ARRAY JOIN arrayConcat([('*', '*')], CAST(e.subject, 'Array(Tuple(String, String))')) AS kv
 GROUP BY 1, 2, 3, 4, 5, 6"""


def workload(directory: Path, events: int) -> tuple[Path, Path, list[bytes], list[bytes]]:
    sim = simulate(load_scenario("default"), seed=3)
    if events > sim.n_events:
        raise SystemExit(f"error: the default scenario has {sim.n_events} events, fewer than {events}")
    event_lines = sim.event_lines(np.arange(events))
    ids = {json.loads(line)["event_id"] for line in event_lines}
    outcome_lines = [line for line in sim.outcome_lines(np.arange(sim.n_outcomes)) if json.loads(line)["event_id"] in ids]
    paths = directory / "events.jsonl", directory / "outcomes.jsonl"
    paths[0].write_bytes(b"\n".join(event_lines) + b"\n")
    paths[1].write_bytes(b"\n".join(outcome_lines) + b"\n")
    return paths[0], paths[1], event_lines, outcome_lines


def engine_ingest(directory: Path, events: Path, outcomes: Path) -> tuple[float, float, int]:
    """Seconds of chDB's own typed ingest of both files, of its join and count, and the rows loaded."""
    from chdb import session

    shutil.rmtree(directory, ignore_errors=True)
    sess = session.Session(str(directory))
    try:
        sess.query("CREATE DATABASE IF NOT EXISTS bench")
        sess.query("USE bench")
        sess.query(EVENTS_DDL)
        sess.query(OUTCOMES_DDL)
        started = time.perf_counter()
        for table, path in (("events", events), ("outcomes", outcomes)):
            sess.query(f"INSERT INTO {table} SELECT * FROM file('{path}', 'JSONEachRow')"
                       " SETTINGS input_format_skip_unknown_fields = 1, date_time_input_format = 'best_effort'")
        ingest = time.perf_counter() - started
        started = time.perf_counter()
        counted = sess.query(JOIN_COUNT, "CSV").bytes()
        join = time.perf_counter() - started
        rows = int(sess.query("SELECT (SELECT count() FROM events) + (SELECT count() FROM outcomes)", "CSV")
                   .bytes().strip())
        assert counted.strip(), "the engine's join counted nothing"
    finally:
        sess.close()
    return ingest, join, rows


def fairwatch_replay(directory: Path, events: Path, outcomes: Path, config: CoreConfig):
    from fairwatch.store.clickhouse import open_store
    from fairwatch.stream.replay import replay

    shutil.rmtree(directory, ignore_errors=True)
    store = open_store(f"chdb://{directory}")
    try:
        started = time.perf_counter()
        report = replay(store, events, outcomes, config=config)
        seconds = time.perf_counter() - started
        if report.rejected:
            raise SystemExit(f"error: replay refused {len(report.rejected)} simulated lines: {report.rejected[0]}")
        from fairwatch.store.group_counts import read_counts

        keys, rows = read_counts(store, *time_span(store))
    finally:
        store.close()
    return seconds, dict(zip(keys, rows))


def time_span(store):
    from datetime import timedelta

    low, high = store.query("SELECT min(bucket), max(bucket) FROM group_counts")[0]
    return low, high + timedelta(days=1)


def recount(event_lines: list[bytes], outcome_lines: list[bytes]) -> dict[tuple, list[float]]:
    """(deployment, algorithm, mode, attribute, group) -> [impostors, false matches, their weight,
    genuines, false non-matches, their weight], by a loop over the raw lines."""
    verdicts = final_verdicts(outcome_lines)
    out: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 6)
    for line in event_lines:
        e = json.loads(line)
        v = verdicts.get(e["event_id"])
        if v is None:
            continue
        error, base = verified_error(e, v), 0 if v["truth"] == "impostor" else 3
        weight = 1 / v["inclusion_prob"]
        for attribute, group in group_cells(e["subject"]):
            cell = out[e["deployment"], e["algorithm"], e["mode"], attribute, group]
            cell[base] += 1
            cell[base + 1] += error
            cell[base + 2] += weight
    return out


def check(stored: dict, expected: dict) -> str:
    found = {tuple(k): v for k, v in stored.items() if k.attribute == OVERALL or "&" not in k.attribute}
    if set(found) != set(expected):
        return f"different groups: {sorted(set(found) ^ set(expected))[:3]}"
    for key, want in expected.items():
        row = found[key]
        got = [row[COL["impostor_n"]], row[COL["impostor_errors"]], row[COL["impostor_w"]],
               row[COL["genuine_n"]], row[COL["genuine_errors"]], row[COL["genuine_w"]]]
        if not np.allclose(got, want, rtol=1e-9):
            return f"{key}: stored {got}, recounted {want}"
    return f"equal: {len(expected)} groups"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=None, help="match events (default 150,000; 30,000 with --quick)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both (median)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    events_wanted = args.events or (30_000 if args.quick else 150_000)
    config = CoreConfig()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        events, outcomes, event_lines, outcome_lines = workload(tmp, events_wanted)
        lines = len(event_lines) + len(outcome_lines)
        print(f"{len(event_lines):,} match events + {len(outcome_lines):,} outcomes"
              f" ({(events.stat().st_size + outcomes.stat().st_size) / 1e6:.0f} MB)")
        engine, joins, replays = [], [], []
        stored = {}
        for round_ in range(args.rounds):
            seconds, join, rows = engine_ingest(tmp / "engine", events, outcomes)
            engine.append(seconds)
            joins.append(join)
            if rows != lines:
                raise SystemExit(f"error: the engine loaded {rows} rows of {lines} lines")
            seconds, stored = fairwatch_replay(tmp / "replay", events, outcomes, config)
            replays.append(seconds)
            print(f"round {round_ + 1}: chdb file() {engine[-1]:.2f} s (join+count {join:.2f} s),"
                  f" fairwatch replay {seconds:.2f} s")
        verdict = check(stored, recount(event_lines, outcome_lines))
    engine_s, join_s, replay_s = (float(np.median(v)) for v in (engine, joins, replays))
    ratio = engine_s / replay_s
    print(f"\n{'':>20} {'seconds':>8} {'lines/s':>10}")
    print(f"{'chdb file()':>20} {engine_s:8.2f} {lines / engine_s:10,.0f}")
    print(f"{'chdb join+count':>20} {join_s:8.2f}")
    print(f"{'fairwatch replay':>20} {replay_s:8.2f} {lines / replay_s:10,.0f}")
    print(f"\nreplay at {ratio:.2f}x chDB's own typed ingest (target >= 0.5x); counts: {verdict}")
    write_results(RESULTS, {"events": len(event_lines), "outcomes": len(outcome_lines), "rounds": args.rounds,
                            "engine_seconds": engine, "engine_join_seconds": joins, "replay_seconds": replays,
                            "ratio": ratio, "counts": verdict}, started)
    if not verdict.startswith("equal"):
        raise SystemExit(f"error: replay's counts differ from the recount: {verdict}")


if __name__ == "__main__":
    main()
