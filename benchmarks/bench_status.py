"""Statuses under continuous monitoring: how often any status of a deployment is ever wrong over
200 looks, and what that guarantee costs.

Run by ``make bench`` (not a test; a seeded smaller version is in tests/core/test_estimates.py).
Writes ``benchmarks/results/status.json`` and prints one row per regime.

Each run is one deployment: ``groups`` groups of one attribute plus the overall row, each group
with a constant true FMR and FNMR, and targets on both rates. Every look adds a batch of
comparisons to every group (counts drawn with numpy, ``fairwatch.testing.oracles.two_phase_rows``:
every match verified, non-matches verified with probability ``pi``), then judges every rate with
the project's own code (``status_families`` and ``RateEstimator``, as ``GroupFrame`` does;
the simulation is ``fairwatch.testing.looks.status_looks``). A
status is wrong when it says ``ok`` for a rate at or above its target, or ``above_target`` for a
rate at or below it. Per regime:

- ``ever wrong``: the share of runs in which any status of the deployment was wrong at any of the
  looks (the promise: at most 1 - confidence = 5%);
- ``ever wrong, one-look rule``: the same for the previous rule (each rate judged on its own
  fixed-sample Clopper-Pearson interval, no correction for groups or looks);
- ``judged at last look``: the share of rates with ``ok`` or ``above_target`` at the last look, the
  price of the guarantee (regimes whose rates are far from the targets show it).

Windows grow (counts from a fixed start, the proof's setting) unless ``window`` says how many
trailing looks a window holds (dashboards' trailing windows: measured, not proven). ``cv`` makes
each look's rates vary around the truth (Gamma, that coefficient of variation): overdispersion,
outside the binomial assumption. ``lag`` delays a look's verified non-matches by that many looks
behind its matches (matches reviewed first): labels that arrive in an order tied to the decision,
as in a window whose labels are not mature, also outside the assumptions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fairwatch.testing.bench import write_results
from fairwatch.testing.looks import status_looks

RESULTS = Path(__file__).parent / "results" / "status.json"
LOOKS = 200

# name, groups, impostors and genuine comparisons per group and look, FMR / target, FNMR / target,
# pi, trailing window (looks), cv, lag (looks between a look's verified matches and non-matches)
REGIMES = (
    ("at target, 1 group", 1, 500, 200, 1e-3, 1.0, 0.02, 1.0, 1.0, None, 0.0, 0),
    ("at target, 8 groups", 8, 500, 200, 1e-3, 1.0, 0.02, 1.0, 1.0, None, 0.0, 0),
    ("at target, 8 groups, pi = 0.1", 8, 500, 200, 1e-3, 1.0, 0.02, 1.0, 0.1, None, 0.0, 0),
    ("at target, few errors (1e-4), 4 groups", 4, 500, 200, 1e-4, 1.0, 0.002, 1.0, 1.0, None, 0.0, 0),
    ("at target, 16 groups, 24-look trailing window", 16, 500, 200, 1e-3, 1.0, 0.02, 1.0, 1.0, 24, 0.0, 0),
    ("at target, 4 groups, overdispersed (cv 0.5)", 4, 500, 200, 1e-3, 1.0, 0.02, 1.0, 1.0, None, 0.5, 0),
    ("at target, 4 groups, pi = 0.1, non-matches 24 looks late", 4, 500, 200, 1e-3, 1.0, 0.02, 1.0, 0.1, None,
     0.0, 24),
    ("rates 1/3 of target, 4 groups", 4, 500, 200, 1e-3, 1 / 3, 0.02, 1 / 3, 1.0, None, 0.0, 0),
    ("rates 3x target, 4 groups", 4, 500, 200, 1e-3, 3.0, 0.02, 3.0, 1.0, None, 0.0, 0),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated deployments per regime")
    parser.add_argument("--looks", type=int, default=LOOKS)
    args = parser.parse_args()
    started = time.perf_counter()
    result = {"runs": args.runs, "looks": args.looks, "regimes": []}
    print(f"statuses over {args.looks} looks, {args.runs} deployments per regime, confidence 95%")
    print(f"{'regime':48} {'family':>6} {'ever wrong':>10} {'one-look rule':>13} {'judged':>7} {'one-look':>9}")
    for seed, (name, *params, lag) in enumerate(REGIMES):
        row = {"regime": name, **status_looks(*params, runs=args.runs, looks=args.looks, seed=seed, lag=lag)}
        result["regimes"].append(row)
        print(f"{name:48} {row['family']:6d} {row['ever_wrong']:10.3f} {row['ever_wrong_one_look']:13.3f}"
              f" {row['judged_last_look']:7.3f} {row['judged_last_look_one_look']:9.3f}")
    write_results(RESULTS, result, started)


if __name__ == "__main__":
    main()
