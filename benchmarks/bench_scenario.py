"""The default scenario end to end: do the per-group intervals cover the simulator's true rates, with and without mature labels?

Run by ``make bench`` (not a test): ``benchmarks/bench_scenario.py`` (20 seeds of the full
default scenario, 864,000 events each, on two processes: about 21 s of CPU a seed) or ``--quick``
(3 seeds of 100,000 events, a few seconds).
Writes ``benchmarks/results/scenario.json`` and prints one row per seed, then the totals.

Per seed, the packaged default scenario (``fairwatch/sim/scenarios/default.yaml``, its structure
unchanged: 3 deployments, 2 algorithms, a rate drift at 8 h, a rollout at 16 h with a 1 h ramp,
5% of non-matches verified, first verdicts wrong with probability 0.002 and corrected about 24 h
later as revision 1) is simulated in memory (``fairwatch.sim.simulator.simulate``). Its records are
rendered as the JSONL the simulator writes, packed into batch envelopes of 2,000 records (what the
producer SDK sends) and decoded by the contract's own decoder (``decode_valid_batch``), then fed, in
batches of 10,000, events first and outcomes in arrival order as ``fairwatch replay`` does, to the
statistics core's :class:`~fairwatch.core.monitor.Monitor`: the label-delay join
(:class:`~fairwatch.core.join.LabelJoin`), the event-time bucket counts
(:class:`~fairwatch.core.counts.BucketCounts`, as the live worker keeps them) and
:meth:`~fairwatch.core.groupframe.GroupFrame.from_counts` over every bucket, with the settings of
``fairwatch metrics`` (95% Clopper-Pearson, no intersections). No ClickHouse: for seed 2 at 100,000
events, ``fairwatch simulate`` + ``fairwatch replay --store chdb://...`` + ``fairwatch metrics --json``
gave the same 40 group rows, every count and bound equal. Three label sets are compared, each fed
to a copy of the join holding the events:

- ``matured``: every outcome, corrections included (the latest revision replaces the first);
- ``first_verdicts``: revision-0 outcomes only (the corrections dropped);
- ``as_of_end``: the outcomes that have arrived by the scenario's end time (``verified_at`` before
  it), what a report at the end of the run would read: some wrong verdicts, and late labels missing.

Truth. ``Simulation.truth()`` (``truth.json``) gives each group's true (expected) rate per time
segment: the drift and the rollout make rates piecewise constant in event time, per deployment x
algorithm x mode. The estimate over the whole run targets the comparison-weighted mean of the
segments' rates, so the true rate of a group is ``sum_s rate_s * comparisons_s / sum_s comparisons_s``
with the comparisons (impostor for FMR / FPIR, genuine for FNMR / FNIR) of every generated event
in segment ``s`` from ``truth.json`` (what ``Simulation.summary`` does per algorithm). The
realized rate (errors of every generated comparison over their number, verified or not) is
checked too: it is the finite-population quantity a design-based interval is about.

For every group (deployment x algorithm x mode x attribute x label, and each deployment x
algorithm x mode's overall row ``*``), both rates: is the true rate in ``[low, high]``? Shares
are given over all (group, rate) pairs and split by the verified errors behind the estimate
(0, 1-9, 10 or more). Also: the HT-weighted FMR of the verification-mode counts pooled over
deployments and algorithms (overall and race=White), first verdicts and as of the end over
matured; the outcomes the join saw revised; and percentiles of the delay of a correction after
its event (and after its first verdict) and of a first verdict after its event, from the
simulated outcome stream, for a default maturity delay.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from fairwatch.contracts.envelopes import decode_valid_batch
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.layout import IMPOSTOR, OVERALL, GroupKey
from fairwatch.core.monitor import Monitor
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.testing.bench import envelopes, feed, write_results

RESULTS = Path(__file__).parent / "results" / "scenario.json"
VARIANTS = ("matured", "first_verdicts", "as_of_end")
ENVELOPE_RECORDS = 2_000  # records per batch envelope: about 600 kB of events, under the 1 MB message limit
BATCH = 10_000  # records per Monitor.update, the replay's batch size
ERROR_BINS = (("0", 0, 0), ("1-9", 1, 9), (">=10", 10, None))
PERCENTILES = (50, 90, 99)
US_PER_HOUR = 3_600_000_000
W, W_ERR = IMPOSTOR.start + 2, IMPOSTOR.start + 3  # impostor sum of weights, of error weights


def decode(lines: list[bytes], kind: str) -> list:
    """Records through the contract's decoder, in batch envelopes."""
    records = []
    for lo, raw in envelopes(lines, ENVELOPE_RECORDS):
        batch = decode_valid_batch(raw, kind)
        if batch is None:
            raise RuntimeError(f"simulated {kind} records at {lo} are not certainly valid")
        records += batch.records
    return records


def true_rates(truth: dict) -> dict[GroupKey, dict[str, float]]:
    """Per group, the comparison-weighted true rates over the run's segments, and the realized ones."""
    acc: dict[GroupKey, np.ndarray] = {}
    for row in truth["groups"]:
        key = GroupKey(row["deployment"], row["algorithm"], row["mode"], row["attribute"], row["label"])
        a = acc.setdefault(key, np.zeros(6))
        a += (row["impostors"], row["target_fmr"] * row["impostors"], row["false_matches"],
              row["genuines"], row["target_fnmr"] * row["genuines"], row["false_non_matches"])
    return {key: {"fmr": a[1] / a[0] if a[0] else np.nan, "fmr_realized": a[2] / a[0] if a[0] else np.nan,
                  "fnmr": a[4] / a[3] if a[3] else np.nan, "fnmr_realized": a[5] / a[3] if a[3] else np.nan}
            for key, a in acc.items()}


def judge(frame: GroupFrame, truth: dict[GroupKey, dict[str, float]]) -> list[dict]:
    """One row per (group, rate) with comparisons: the estimate, its interval and the truths."""
    groups = [*((GroupKey(*where, OVERALL, OVERALL), g) for where, g in frame.overall.items()),
              *frame.by_group.items()]
    rows = []
    for key, group in groups:
        for rate in ("fmr", "fnmr"):
            e = getattr(group, rate)
            true, realized = truth[key][rate], truth[key][f"{rate}_realized"]
            if e.n == 0 or not np.isfinite(true):
                continue
            rows.append({"key": "/".join(key), "rate": rate, "n": e.n, "errors": e.errors, "estimate": e.rate,
                         "low": e.low, "high": e.high, "true": true, "realized": realized,
                         "covered": bool(e.low <= true <= e.high),
                         "covered_realized": bool(e.low <= realized <= e.high)})
    return rows


def pooled_fmr(monitor: Monitor, label: tuple[str, str]) -> float:
    """HT-weighted FMR of the verification-mode counts of (attribute, group), pooled over deployments and algorithms."""
    window = monitor.counts.window(float("-inf"), float("inf"))
    pick = [i for i, k in enumerate(window.keys) if k.mode == "verification" and (k.attribute, k.group) == label]
    rows = window.rows[pick].sum(axis=0)
    return float(rows[W_ERR] / rows[W])


def run_seed(seed: int, events: int | None) -> dict:
    started = time.perf_counter()
    scenario = load_scenario("default")
    sim = simulate(scenario, seed=seed, events=events)
    truth = true_rates(sim.truth())
    config = CoreConfig()  # fairwatch metrics' defaults: 95% Clopper-Pearson, 60 s buckets, no targets
    joined = Monitor(config)
    feed(joined, decode(sim.event_lines(np.arange(sim.n_events)), "match_event"), BATCH)
    outcomes = decode(sim.outcome_lines(np.arange(sim.n_outcomes)), "verified_outcome")

    end_us = int(scenario.end.timestamp()) * 1_000_000
    arrived = int(np.searchsorted(sim.o_time, end_us, side="left"))  # outcomes are in arrival order
    labels = ((OVERALL, OVERALL), ("race", "White"))
    frames, fmrs = {}, {}

    def look(name: str, monitor: Monitor) -> None:
        frames[name] = monitor.snapshot()
        fmrs[name] = [pooled_fmr(monitor, label) for label in labels]

    matured = copy.deepcopy(joined)
    feed(matured, outcomes[:arrived], BATCH)
    look("as_of_end", matured)
    feed(matured, outcomes[arrived:], BATCH)
    look("matured", matured)
    feed(joined, [o for o in outcomes if o.revision == 0], BATCH)
    look("first_verdicts", joined)

    result = {"seed": seed, "events": sim.n_events, "outcomes": sim.n_outcomes, "corrections": sim.n_corrections,
              "arrived_by_end": arrived, "revised_by_join": matured.counters.retractions, "variants": {}}
    for name in VARIANTS:
        result["variants"][name] = {
            "groups": judge(frames[name], truth),
            "fmr_over_matured": {k: fmrs[name][i] / fmrs["matured"][i] if fmrs["matured"][i] else None
                                 for i, k in enumerate(("overall", "race=White"))},
        }

    revised = sim.o_revision == 1
    first = ~revised
    event_us = sim.time[sim.o_event]
    first_at = dict(zip(sim.o_event[first].tolist(), sim.o_time[first].tolist()))
    fix_first = np.array([first_at[e] for e in sim.o_event[revised].tolist()], np.int64)
    result["delays_hours"] = {
        "correction_after_event": ((sim.o_time[revised] - event_us[revised]) / US_PER_HOUR).tolist(),
        "correction_after_first_verdict": ((sim.o_time[revised] - fix_first) / US_PER_HOUR).tolist(),
        "first_verdict_after_event": np.percentile((sim.o_time[first] - event_us[first]) / US_PER_HOUR,
                                                   PERCENTILES).tolist(),
    }
    result["seconds"] = time.perf_counter() - started
    return result


def coverage(rows: list[dict], field: str = "covered") -> dict:
    """Share of rows covered, overall, per rate and per verified-errors bin (with the row counts)."""
    def share(subset: list[dict]) -> dict:
        return {"pairs": len(subset), "covered": float(np.mean([r[field] for r in subset])) if subset else None}

    out = {"all": share(rows), "fmr": share([r for r in rows if r["rate"] == "fmr"]),
           "fnmr": share([r for r in rows if r["rate"] == "fnmr"])}
    for name, lo, hi in ERROR_BINS:
        out[f"errors {name}"] = share([r for r in rows if r["errors"] >= lo and (hi is None or r["errors"] <= hi)])
    return out


def median(values: list[float | None]) -> float | None:
    """Of the values that exist (a ratio over a matured FMR of 0 does not)."""
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def times(ratio: float | None, width: int) -> str:
    return f"{'-':>{width}} " if ratio is None else f"{ratio:{width}.1f}x"


def fmt(c: dict | None) -> str:
    return "-" if c is None or c["covered"] is None else f"{c['covered']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="simulated runs (default 20; 3 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="first seed; the runs use seed, seed + 1, ...")
    parser.add_argument("--events", type=int, default=None,
                        help="events per run (default: the scenario's 864,000; 100,000 with --quick)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    parser.add_argument("--quick", action="store_true", help="3 seeds of 100,000 events")
    args = parser.parse_args()
    seeds = args.seeds or (3 if args.quick else 20)
    events = args.events or (100_000 if args.quick else None)
    started = time.perf_counter()
    size = f"{events:,}" if events else "864,000 (the scenario's)"
    print(f"default scenario, {seeds} seeds from {args.seed}, {size} events each;"
          " coverage of the true rate by the 95% intervals of every (group, rate)")
    print(f"{'seed':>8} {'events':>8} {'pairs':>6} {'matured':>8} {'realized':>9} {'first v.':>9} {'as of end':>10}"
          f" {'FMR first/mat':>14} {'White':>6} {'fixes':>6} {'s':>5}")
    runs = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for run in pool.map(run_seed, range(args.seed, args.seed + seeds), [events] * seeds):
            runs.append(run)
            v = run["variants"]
            ratio = v["first_verdicts"]["fmr_over_matured"]
            print(f"{run['seed']:8d} {run['events']:8d} {len(v['matured']['groups']):6d}"
                  f" {fmt(coverage(v['matured']['groups'])['all']):>8}"
                  f" {fmt(coverage(v['matured']['groups'], 'covered_realized')['all']):>9}"
                  f" {fmt(coverage(v['first_verdicts']['groups'])['all']):>9}"
                  f" {fmt(coverage(v['as_of_end']['groups'])['all']):>10}"
                  f" {times(ratio['overall'], 13)} {times(ratio['race=White'], 5)} {run['revised_by_join']:6d}"
                  f" {run['seconds']:5.1f}")

    totals: dict = {}
    for name in VARIANTS:
        rows = [r for run in runs for r in run["variants"][name]["groups"]]
        ratios = [run["variants"][name]["fmr_over_matured"] for run in runs]
        totals[name] = {
            "coverage_true": coverage(rows),
            "coverage_realized": coverage(rows, "covered_realized"),
            "fmr_over_matured_median": {k: median([r[k] for r in ratios]) for k in ratios[0]},
            "missed": [{**r, "seed": run["seed"]} for run in runs for r in run["variants"][name]["groups"]
                       if not r["covered"]] if name == "matured" else None,
        }
    print(f"\n{'labels':>15} {'pairs':>6} {'covered':>8} {'FMR':>6} {'FNMR':>6} {'0 err':>6} {'1-9':>6} {'>=10':>6}"
          f" {'realized':>9} {'FMR x':>6} {'White x':>8}")
    for name in VARIANTS:
        c, t = totals[name]["coverage_true"], totals[name]["fmr_over_matured_median"]
        print(f"{name:>15} {c['all']['pairs']:6d} {fmt(c['all']):>8} {fmt(c['fmr']):>6} {fmt(c['fnmr']):>6}"
              f" {fmt(c['errors 0']):>6} {fmt(c['errors 1-9']):>6} {fmt(c['errors >=10']):>6}"
              f" {fmt(totals[name]['coverage_realized']['all']):>9} {times(t['overall'], 5)} {times(t['race=White'], 7)}")
    print("(pairs with 0 / 1-9 / >=10 verified errors: "
          + ", ".join(f"{totals['matured']['coverage_true'][f'errors {b}']['pairs']}" for b, _, _ in ERROR_BINS) + ")")

    scopes = sorted({(r["key"].rsplit("/", 2)[0], r["rate"]) for run in runs for r in run["variants"]["matured"]["groups"]})
    by_scope = {}
    print(f"\n{'deployment/algorithm/mode':>36} {'rate':>5} {'pairs':>6} " + " ".join(f"{v:>15}" for v in VARIANTS))
    for scope, rate in scopes:
        cells = {name: coverage([r for run in runs for r in run["variants"][name]["groups"]
                                 if r["rate"] == rate and r["key"].rsplit("/", 2)[0] == scope])["all"]
                 for name in VARIANTS}
        by_scope[f"{scope} {rate}"] = cells
        print(f"{scope:>36} {rate:>5} {cells['matured']['pairs']:6d} " + " ".join(f"{fmt(cells[v]):>15}" for v in VARIANTS))

    fixes = {k: np.concatenate([run["delays_hours"][k] for run in runs])
             for k in ("correction_after_event", "correction_after_first_verdict")}
    delays = {k: dict(zip(map(str, PERCENTILES), np.percentile(v, PERCENTILES).tolist())) if len(v) else None
              for k, v in fixes.items()}
    delays["first_verdict_after_event (median over seeds)"] = dict(zip(map(str, PERCENTILES), np.median(
        [run["delays_hours"]["first_verdict_after_event"] for run in runs], axis=0).tolist()))
    corrections = sum(run["corrections"] for run in runs)
    outcomes = sum(run["outcomes"] for run in runs)
    print(f"\n{corrections} corrections in {outcomes} outcomes ({corrections / outcomes:.2%});"
          f" the join revised {sum(run['revised_by_join'] for run in runs)};"
          f" arrived by the end: {sum(run['arrived_by_end'] for run in runs) / outcomes:.1%} of outcomes")
    for name, p in delays.items():
        if p:
            print(f"  {name}: " + ", ".join(f"p{q} {p[str(q)]:.1f} h" for q in PERCENTILES))

    for run in runs:  # the file keeps each run's summaries; the group rows only of the matured misses (above)
        del run["delays_hours"]["correction_after_event"], run["delays_hours"]["correction_after_first_verdict"]
        for variant in run["variants"].values():
            rows = variant.pop("groups")
            variant["coverage_true"], variant["coverage_realized"] = coverage(rows), coverage(rows, "covered_realized")
    result = {"scenario": "default", "seeds": seeds, "first_seed": args.seed, "events": runs[0]["events"],
              "confidence": CoreConfig().confidence, "totals": totals, "coverage_by_scope": by_scope, "delays_hours": delays,
              "corrections": corrections, "outcomes": outcomes, "runs": runs}
    write_results(RESULTS, result, started)


if __name__ == "__main__":
    main()
