"""Per-group estimates under partial verification: coverage, wrong "ok" at the target, FMR width.

Run by ``make bench`` (not a test; a seeded smaller version is in tests/core/test_estimates.py).
Writes ``benchmarks/results/estimates.json`` and prints one row per cell.

The design (two-phase): the decision of every comparison is known; every match is verified and
each non-match is verified with probability ``pi``; each verified outcome weighs ``1 / pi``. One
group of 5,000 genuine and 20,000 impostor comparisons per run, counts drawn with numpy
(``fairwatch.testing.oracles.two_phase_rows``), estimates from the project's ``GroupFrame``.
Per cell (pi x true rate):

- coverage of the FNMR and FMR intervals (nominal 95%);
- P(status ``ok`` | true rate = target): how often a group whose rate *equals* its target is
  declared within it (a valid one-sided bound allows at most 2.5%), and how often the fixed-sample
  interval alone would have (its upper bound at or below the target);
- FMR interval width over the exact (Clopper-Pearson) width of a fully verified sample of the same
  comparisons, with the same errors (how much the partial verification costs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from fairwatch.core.config import CoreConfig
from fairwatch.core.estimates import Status
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.intervals import clopper_pearson
from fairwatch.core.layout import GroupKey
from fairwatch.testing.bench import write_results
from fairwatch.testing.oracles import two_phase_rows

RESULTS = Path(__file__).parent / "results" / "estimates.json"
PIS = (1.0, 0.5, 0.25, 0.1)
RATES = (1e-3, 1e-2, 5e-2)
IMPOSTORS, GENUINE = 20_000, 5_000


def cell(pi: float, rate: float, runs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    keys = [GroupKey("d", "a", "verification", "race", f"g{i}") for i in range(runs)]
    rows = two_phase_rows(rng, runs, IMPOSTORS, rate, GENUINE, rate, pi)
    config = CoreConfig(target_fmr=rate, target_fnmr=rate, min_comparisons=1)
    groups = list(GroupFrame.from_counts(keys, rows, config).by_group.values())
    out = {}
    for name, pick in (("fnmr", lambda g: g.fnmr), ("fmr", lambda g: g.fmr)):
        estimates = [pick(g) for g in groups]
        out[f"{name}_coverage"] = float(np.mean([e.low <= rate <= e.high for e in estimates]))
        out[f"{name}_p_ok_at_target"] = float(np.mean([e.status == Status.OK for e in estimates]))
        # the fixed-sample interval's own one-sided miss: what "ok" would be on one look at one rate
        out[f"{name}_p_high_at_or_below_target"] = float(np.mean([e.high <= rate for e in estimates]))
    # the same false matches among all 20,000 impostor comparisons, every one verified
    full_low, full_high = clopper_pearson(rows[:, 1], IMPOSTORS, config.confidence)
    widths = np.array([g.fmr.high - g.fmr.low for g in groups]) / (full_high - full_low)
    out["fmr_width_over_fully_verified"] = float(np.median(widths))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="simulated groups per cell")
    args = parser.parse_args()
    started = time.perf_counter()
    result = {"runs": args.runs, "impostors": IMPOSTORS, "genuine": GENUINE, "cells": []}
    print(f"two-phase estimates, {args.runs} runs per cell, nominal 95%, P(ok at target) allowed 0.025")
    print(f"{'pi':>5} {'rate':>7} {'FNMR cover':>11} {'FMR cover':>10} {'P(ok) FNMR':>11} {'P(ok) FMR':>10}"
          f" {'high<=t FNMR':>12} {'high<=t FMR':>11} {'FMR width / full':>17}")
    seed = 0
    for pi in PIS:
        for rate in RATES:
            row = {"pi": pi, "rate": rate, **cell(pi, rate, args.runs, seed)}
            seed += 1
            result["cells"].append(row)
            print(f"{pi:5.2f} {rate:7.0e} {row['fnmr_coverage']:11.3f} {row['fmr_coverage']:10.3f}"
                  f" {row['fnmr_p_ok_at_target']:11.3f} {row['fmr_p_ok_at_target']:10.3f}"
                  f" {row['fnmr_p_high_at_or_below_target']:12.3f} {row['fmr_p_high_at_or_below_target']:11.3f}"
                  f" {row['fmr_width_over_fully_verified']:17.2f}")
    write_results(RESULTS, result, started)


if __name__ == "__main__":
    main()
