"""The threshold for an intended FMR: how often its interval holds the true threshold, and the FNMR
interval the true FNMR there, under partial verification.

Run by ``make bench`` (not a test). Writes ``benchmarks/results/score_curves.json`` and prints one
row per cell.

The model: impostor scores ~ Normal(0, 1), genuine scores ~ Normal(3, 1); the matcher decides at
the operating threshold ``theta`` = the 1% impostor quantile (FMR 1e-2 there). The design
(two-phase): every match (score >= theta) is verified, each non-match with probability ``pi``;
each verified comparison weighs ``1 / pi``. Per run one group of ``impostors`` impostor and 5,000
genuine comparisons is drawn and :func:`fairwatch.core.score_curves.threshold_for_fmr` is applied
with the run's verified scores as candidates. The truth: the threshold ``t0 = isf(target)`` of the
impostor distribution and the FNMR there, ``cdf(t0 - 3)``. Per cell (pi x target x impostors):

- ``threshold_coverage``: share of runs whose interval ``[low, high]`` holds ``t0`` (nominal 95%),
  among the runs that give one;
- ``fnmr_coverage``: share whose FNMR interval holds the true FNMR at ``t0``;
- ``too_little_evidence``: share of runs that give no threshold;
- ``median_width``: median ``high - low`` (score units; the impostor scores' sd is 1).

Targets below 1e-2 put the threshold among the matches (weight 1), 5e-2 among the sampled
non-matches (weight 1 / pi).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from fairwatch.core.score_curves import FOUND, threshold_for_fmr
from fairwatch.testing.bench import write_results
from scipy import stats

RESULTS = Path(__file__).parent / "results" / "score_curves.json"
PIS = (1.0, 0.5, 0.1)
TARGETS = (5e-2, 1e-3)
IMPOSTORS = (10_000, 40_000)
GENUINE, GENUINE_MEAN = 5_000, 3.0
THETA = float(stats.norm.isf(1e-2))


def verified(rng, n: int, mean: float, pi: float) -> tuple[np.ndarray, np.ndarray]:
    scores = rng.normal(mean, 1.0, n)
    match = scores >= THETA
    keep = match | (rng.random(n) < pi)
    return scores[keep], np.where(match[keep], 1.0, 1.0 / pi)


def cell(pi: float, target: float, impostors: int, runs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    t0 = float(stats.norm.isf(target))
    fnmr0 = float(stats.norm.cdf(t0 - GENUINE_MEAN))
    held, fnmr_held, widths, missing = [], [], [], 0
    for _ in range(runs):
        imp, imp_w = verified(rng, impostors, 0.0, pi)
        gen, gen_w = verified(rng, GENUINE, GENUINE_MEAN, pi)
        found = threshold_for_fmr(np.unique(np.concatenate([imp, gen])), imp, imp_w, target, gen, gen_w)
        if found.status != FOUND:
            missing += 1
            continue
        held.append(found.low <= t0 <= found.high)
        fnmr_held.append(found.fnmr_low <= fnmr0 <= found.fnmr_high)
        widths.append(found.high - found.low)
    given = len(held)
    return {"threshold_coverage": float(np.mean(held)) if given else None,
            "fnmr_coverage": float(np.mean(fnmr_held)) if given else None,
            "too_little_evidence": missing / runs, "median_width": float(np.median(widths)) if given else None,
            "true_threshold": t0, "true_fnmr": fnmr0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="simulated groups per cell")
    args = parser.parse_args()
    started = time.perf_counter()
    result = {"runs": args.runs, "genuine": GENUINE, "genuine_mean": GENUINE_MEAN, "operating_threshold": THETA,
              "cells": []}
    print(f"threshold for an intended FMR, {args.runs} runs per cell, nominal 95%")
    print(f"{'pi':>5} {'target':>7} {'impostors':>10} {'threshold cover':>16} {'FNMR cover':>11}"
          f" {'too little':>11} {'median width':>13}")
    seed = 0
    for pi in PIS:
        for target in TARGETS:
            for impostors in IMPOSTORS:
                row = {"pi": pi, "target": target, "impostors": impostors,
                       **cell(pi, target, impostors, args.runs, seed)}
                seed += 1
                result["cells"].append(row)

                def show(value, width):
                    return f"{'-':>{width}}" if value is None else f"{value:{width}.3f}"

                print(f"{pi:5.2f} {target:7.0e} {impostors:10d} {show(row['threshold_coverage'], 16)}"
                      f" {show(row['fnmr_coverage'], 11)} {row['too_little_evidence']:11.3f}"
                      f" {show(row['median_width'], 13)}")
    write_results(RESULTS, result, started)


if __name__ == "__main__":
    main()
