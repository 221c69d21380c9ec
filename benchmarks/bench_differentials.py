"""Differentials: coverage of their intervals at parity, near it and far from it, measured by simulation.

Run by ``make bench`` (not a test; a seeded smaller version is in tests/core/test_differentials.py).
Writes ``benchmarks/results/differentials.json`` and prints one row per regime.

Each run draws every group's false matches and false non-matches as binomial counts at known true
rates (unweighted: every comparison verified), builds the groups' estimates with the project's own
``GroupFrame`` and reads each differential's interval. The truth of each differential comes from
the metric definitions applied to the true rates. Reported per regime and metric: the share of runs
whose interval holds the true value (nominal: the configured confidence, 95%), the share whose
interval holds parity (the fair value), and the median interval width.

Regimes: groups at parity and with moderate and large differences; few groups and many (race-like
and intersections); large samples and few errors (a good matcher or a small group, where some
groups have no error at all).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from fairwatch.core import differentials as d
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.layout import GroupKey
from fairwatch.testing.bench import write_results

RESULTS = Path(__file__).parent / "results" / "differentials.json"
PARITY = {"max_min_ratio": 1.0, "max_geomean": 1.0, "max_min_difference": 0.0, "garbe": 0.0, "fdr": 1.0, "ir": 1.0}
# name -> (FMR per group, FNMR per group, comparisons per group and population)
REGIMES = {
    "parity, 4 groups, n=5000": ([1e-2] * 4, [2e-2] * 4, 5000),
    "parity, 8 groups, n=5000": ([1e-2] * 8, [2e-2] * 8, 5000),
    "parity, 16 groups, n=2000": ([1e-2] * 16, [2e-2] * 16, 2000),
    "parity, few errors, 4 groups, n=2000": ([1e-3] * 4, [2e-3] * 4, 2000),
    "moderate (x1.5), 4 groups, n=5000": ([1e-2, 1e-2, 1.2e-2, 1.5e-2], [2e-2, 2.4e-2, 2e-2, 3e-2], 5000),
    "large (x3), 6 groups, n=5000": ([1e-2, 1e-2, 1.5e-2, 2e-2, 2.5e-2, 3e-2], [2e-2] * 5 + [6e-2], 5000),
    "large (x10), few errors, 4 groups, n=3000": ([1e-4, 3e-4, 1e-3, 1e-3], [1e-3, 1e-3, 2e-3, 1e-2], 3000),
}
# the same few-errors regimes with declared ratio floors (FMR, FNMR): zero-error groups are common there
FLOORED = {
    "parity, few errors, 4 groups, n=2000, floors 1e-3/1e-3": ("parity, few errors, 4 groups, n=2000", (1e-3, 1e-3)),
    "large (x10), few errors, 4 groups, n=3000, floors 1e-4/1e-3": ("large (x10), few errors, 4 groups, n=3000",
                                                                    (1e-4, 1e-3)),
    "large (x10), few errors, 4 groups, n=3000, floors 5e-4/2e-3": ("large (x10), few errors, 4 groups, n=3000",
                                                                    (5e-4, 2e-3)),
}
RATIO_METRICS = ("max_min_ratio", "max_geomean")


def _truth(fmr: np.ndarray, fnmr: np.ndarray, config: CoreConfig) -> dict[tuple[str, str], float]:
    """The metrics of the true rates; the ratios of the true rates floored as the config declares."""
    floored = {"fmr": np.maximum(fmr, config.ratio_floor_fmr or 0.0),
               "fnmr": np.maximum(fnmr, config.ratio_floor_fnmr or 0.0)}
    truth = {}
    for rate, values in (("fmr", fmr), ("fnmr", fnmr)):
        for metric, compute in d.PER_RATE.items():
            truth[metric, rate] = float(compute(floored[rate] if metric in RATIO_METRICS else values))
    truth["fdr", "combined"] = float(d.fdr(fmr, fnmr, config.fdr_alpha))
    truth["ir", "combined"] = float(d.inequity_rate(floored["fmr"], floored["fnmr"], config.ir_alpha))
    truth["garbe", "combined"] = float(d.garbe(fmr, fnmr, config.garbe_alpha))
    return truth


def regime(fmr: list[float], fnmr: list[float], n: int, runs: int, seed: int, config: CoreConfig) -> dict:
    rng = np.random.default_rng(seed)
    fmr_true, fnmr_true = np.array(fmr), np.array(fnmr)
    truth = _truth(fmr_true, fnmr_true, config)
    keys = [GroupKey("d", "a", "verification", "race", f"g{i}") for i in range(len(fmr))]
    covered = {name: 0 for name in truth}
    holds_parity = {name: 0 for name in truth}
    widths: dict[tuple[str, str], list[float]] = {name: [] for name in truth}
    undefined = {name: 0 for name in truth}
    finite_high = {name: 0 for name in truth}
    for _ in range(runs):
        false_matches = rng.binomial(n, fmr_true)
        false_non_matches = rng.binomial(n, fnmr_true)
        rows = np.array([[n, x, n, x, n, x, n, y, n, y, n, y] for x, y in zip(false_matches, false_non_matches)],
                        dtype=float)
        frame = GroupFrame.from_counts(keys, rows, config)
        for diff in frame.differentials:
            name = (diff.metric, diff.rate)
            high = np.inf if diff.high is None else diff.high
            covered[name] += diff.low <= truth[name] + 1e-12 and truth[name] <= high + 1e-12
            holds_parity[name] += diff.low <= PARITY[diff.metric] <= high
            widths[name].append(high - diff.low)
            undefined[name] += diff.value is None
            finite_high[name] += diff.high is not None
    return {
        f"{metric}/{rate}": {
            "truth": truth[metric, rate],
            "coverage": covered[metric, rate] / runs,
            "holds_parity": holds_parity[metric, rate] / runs,
            "median_width": float(np.median(widths[metric, rate])),
            "value_undefined": undefined[metric, rate] / runs,
            "finite_high": finite_high[metric, rate] / runs,
        }
        for metric, rate in truth
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated audits per regime")
    args = parser.parse_args()
    config = CoreConfig()
    started = time.perf_counter()
    result = {"runs": args.runs, "confidence": config.confidence, "regimes": {}}
    print(f"differential intervals, {args.runs} runs per regime, nominal coverage {config.confidence:.0%}")
    print(f"{'regime':62} {'min coverage':>13} {'worst metric':>26} {'holds parity (ratio/fmr)':>25}")
    for seed, (name, (fmr, fnmr, n)) in enumerate(REGIMES.items()):
        rows = regime(fmr, fnmr, n, args.runs, seed, config)
        result["regimes"][name] = rows
        worst = min(rows, key=lambda k: rows[k]["coverage"])
        print(f"{name:62} {rows[worst]['coverage']:13.3f} {worst:>26} {rows['max_min_ratio/fmr']['holds_parity']:25.3f}")
    print(f"{'with declared ratio floors':62} {'min coverage':>13} {'worst metric':>26} {'finite upper bounds':>25}")
    for seed, (name, (base, floors)) in enumerate(FLOORED.items(), start=len(REGIMES)):
        floored = replace(config, ratio_floor_fmr=floors[0], ratio_floor_fnmr=floors[1])
        rows = regime(*REGIMES[base], args.runs, seed, floored)
        result["regimes"][name] = rows
        worst = min(rows, key=lambda k: rows[k]["coverage"])
        finite = min(rows[f"{m}/{r}"]["finite_high"] for m in RATIO_METRICS for r in ("fmr", "fnmr"))
        print(f"{name:62} {rows[worst]['coverage']:13.3f} {worst:>26} {finite:25.3f}")
    write_results(RESULTS, result, started)


if __name__ == "__main__":
    main()
