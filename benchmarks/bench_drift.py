"""Drift detection: false alarms under the null, detection delay, and incident dedup under flapping.

Run by ``make bench`` (not a test; seeded smaller versions of each check are in tests/). Writes
``benchmarks/results/drift.json``.

1. Null: 100 streams of verified comparisons at their baseline rate (the null edge: the worst
   case), one-minute buckets for 30 days, >= 1M outcomes. The mixture Shiryaev-Roberts detectors
   get the threshold of a budget of ``false_alarms_per_day`` across all streams; the measured
   rate is reported beside it, and beside river's ADWIN at its defaults on the same 0/1 streams.
2. Drift: one stream's FMR x3 at a known time, repeated; the detection delay in outcomes and its
   ratio to the CUSUM information bound ``log(ARL0) / KL(p1 || p0)`` at the same false-alarm
   budget (ARL0 in outcomes = threshold x outcomes per bucket).
3. Flapping: 10k conditions that alarm and clear in turn every minute; incidents opened versus
   the pages one-alert-per-alarm would send.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from fairwatch.detect.detectors import (
    DEFAULT_GRID,
    AdwinErrorDetector,
    MixtureShiryaevRoberts,
    cusum_information_bound,
    rate_log_lr,
    threshold_for_budget,
)
from fairwatch.detect.incidents import Alert, IncidentTracker

RESULTS = Path(__file__).parent / "results" / "drift.json"
BUCKETS_PER_DAY = 1440


def null_run(streams: int, days: int, per_bucket: float, budget: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.02, streams)
    threshold = threshold_for_budget(streams, BUCKETS_PER_DAY, budget)
    bank = MixtureShiryaevRoberts(streams, math.log(threshold), n_alternatives=len(DEFAULT_GRID))
    alarms = outcomes = 0
    started = time.perf_counter()
    for _ in range(days):
        n = rng.poisson(per_bucket, (BUCKETS_PER_DAY, streams)).astype(float)
        x = rng.binomial(n.astype(int), p).astype(float)
        outcomes += int(n.sum())
        fired, _ = bank.run(rate_log_lr(x, n, p))
        alarms += int(fired.sum())
    return {"streams": streams, "days": days, "outcomes": outcomes, "configured_false_alarms_per_day": budget,
            "false_alarms": alarms, "measured_false_alarms_per_day": alarms / days,
            "threshold_log10": math.log10(threshold), "seconds": time.perf_counter() - started}


def adwin_null(streams: int, days: int, per_bucket: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.02, streams)
    detections = outcomes = 0
    started = time.perf_counter()
    for s in range(streams):
        detector = AdwinErrorDetector(seed=s)
        n = rng.poisson(per_bucket * BUCKETS_PER_DAY * days)
        x = rng.binomial(n, p[s])
        detector.update(x, n)
        detections += detector.detections
        outcomes += n
    return {"streams": streams, "days": days, "outcomes": outcomes, "false_alarms": detections,
            "measured_false_alarms_per_day": detections / days, "seconds": time.perf_counter() - started}


def drift_run(replicates: int, streams: int, budget: float, p0: float, per_bucket: int, band: float,
              seed: int) -> dict:
    rng = np.random.default_rng(seed)
    threshold = threshold_for_budget(streams, BUCKETS_PER_DAY, budget)
    change, horizon = 600, 6000
    delays, early, missed = [], 0, 0
    for _ in range(replicates):
        bank = MixtureShiryaevRoberts(1, math.log(threshold), n_alternatives=len(DEFAULT_GRID))
        rates = np.where(np.arange(horizon) < change, p0, 3 * p0)
        x = rng.binomial(per_bucket, rates).astype(float)[:, None]
        fired, _ = bank.run(rate_log_lr(x, np.full_like(x, per_bucket), band * p0))
        hits = np.flatnonzero(fired[:, 0])
        hits_after = hits[hits >= change]
        early += int((hits < change).any())
        if hits_after.size == 0:
            missed += 1
            continue
        delays.append((hits_after[0] - change + 1) * per_bucket)
    arl0 = threshold * per_bucket
    bound = cusum_information_bound(arl0, p0, 3 * p0)
    mean_delay = float(np.mean(delays)) if delays else None
    return {"p0": p0, "p1": 3 * p0, "band": band, "outcomes_per_bucket": per_bucket, "replicates": replicates,
            "threshold_log10": math.log10(threshold), "arl0_outcomes": arl0, "mean_delay_outcomes": mean_delay,
            "median_delay_outcomes": float(np.median(delays)) if delays else None,
            "cusum_bound_outcomes": bound, "delay_over_bound": mean_delay / bound if mean_delay else None,
            "alarms_before_change": early, "missed": missed}


def adwin_drift(replicates: int, p0: float, per_bucket: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    change, horizon = 600, 6000
    delays, early, missed = [], 0, 0
    for r in range(replicates):
        detector = AdwinErrorDetector(seed=r)
        first = None
        for step in range(horizon):
            fired = detector.update(rng.binomial(per_bucket, p0 if step < change else 3 * p0), per_bucket).drift_detected
            if fired and step < change:
                early += 1
            if fired and step >= change:
                first = step
                break
        if first is None:
            missed += 1
        else:
            delays.append((first - change + 1) * per_bucket)
    return {"replicates": replicates, "mean_delay_outcomes": float(np.mean(delays)) if delays else None,
            "alarms_before_change": early, "missed": missed}


def flapping_run(conditions: int, steps: int, resolve_after: int) -> dict:
    t0 = datetime(2026, 11, 25, tzinfo=timezone.utc)
    tracker = IncidentTracker(resolve_after=resolve_after)
    templates = [Alert(f"c{i}", "error_rate_drift", "critical", "d", "a", f"g={i}", "fmr", None, None, None, None,
                       "sr_band", {"n": 0}, "firing", t0, None, "https://r.example", "https://d.example")
                 for i in range(conditions)]
    opened = alarms = 0
    started = time.perf_counter()
    for step in range(steps):
        at = t0 + timedelta(minutes=step)
        alarm = step % 2 == 0
        alarms += conditions * alarm
        for template in templates:
            for transition in tracker.observe(template, at, alarm, not alarm):
                opened += transition.kind == "opened"
    return {"conditions": conditions, "steps": steps, "alarms_raised": alarms, "incidents_opened": opened,
            "incidents_per_condition": opened / conditions, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--budget", type=float, default=1.0, help="false alarms per day across all streams")
    args = parser.parse_args()
    result = {
        "null": null_run(args.streams, args.days, per_bucket=1.0, budget=args.budget, seed=1),
        "adwin_defaults_null": adwin_null(args.streams, max(1, args.days // 3), per_bucket=1.0, seed=1),
        "drift_known_baseline": drift_run(200, args.streams, args.budget, 0.002, 50, band=1.0, seed=2),
        "drift_band_1_5": drift_run(200, args.streams, args.budget, 0.002, 50, band=1.5, seed=3),
        "adwin_defaults_drift": adwin_drift(10, 0.002, 50, seed=4),
        "flapping": flapping_run(10_000, 240, resolve_after=15 * 60),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    n, a = result["null"], result["adwin_defaults_null"]
    print(f"null: {n['streams']} streams, {n['outcomes']:,} outcomes over {n['days']} days: "
          f"{n['false_alarms']} false alarms = {n['measured_false_alarms_per_day']:.3f}/day "
          f"(configured {n['configured_false_alarms_per_day']}/day)")
    print(f"river ADWIN (defaults), same kind of streams, {a['outcomes']:,} outcomes over {a['days']} days: "
          f"{a['false_alarms']} false alarms = {a['measured_false_alarms_per_day']:.1f}/day")
    for name in ("drift_known_baseline", "drift_band_1_5"):
        d = result[name]
        print(f"{name}: FMR {d['p0']} -> {d['p1']}: mean delay {d['mean_delay_outcomes']:.0f} outcomes, "
              f"CUSUM bound {d['cusum_bound_outcomes']:.0f} (ratio {d['delay_over_bound']:.2f}), "
              f"{d['alarms_before_change']} alarms before the change, {d['missed']} missed of {d['replicates']}")
    d = result["adwin_defaults_drift"]
    print(f"river ADWIN (defaults) on the same drift: mean delay {d['mean_delay_outcomes']} outcomes, "
          f"{d['alarms_before_change']} alarms before the change, {d['missed']} missed of {d['replicates']}")
    f = result["flapping"]
    print(f"flapping: {f['conditions']:,} conditions, {f['alarms_raised']:,} alarms -> {f['incidents_opened']:,} "
          f"incidents ({f['incidents_per_condition']:.2f} per condition)")


if __name__ == "__main__":
    main()
