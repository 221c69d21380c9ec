"""Rates under noisy reviewers: coverage of the corrected intervals against the uncorrected ones.

Run by ``make bench`` (not a test; a seeded smaller version is in tests/core/test_misclassification.py).
Writes ``benchmarks/results/misclassification.json`` and prints one row per cell.

Per run, one group of 20,000 impostor and 5,000 genuine comparisons with true FMR and FNMR; every
match verified, each non-match verified with probability ``pi``; each verdict wrong with
probability ``error`` (either way); 10% of the verified events of each decision reviewed again,
independently (counts drawn with numpy: ``fairwatch.testing.oracles.noisy_review_rows``). Per cell:

- coverage of the uncorrected two-phase intervals (``GroupFrame``), which take labels as truth;
- coverage of the corrected intervals (``fairwatch.core.misclassification.corrected_rates``),
  nominal 95%, and their median width over the uncorrected ones.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame, decision_inclusions
from fairwatch.core.layout import GroupKey
from fairwatch.core.misclassification import ReviewerError, corrected_rates
from fairwatch.testing.bench import write_results
from fairwatch.testing.oracles import noisy_review_rows

RESULTS = Path(__file__).parent / "results" / "misclassification.json"
IMPOSTORS, GENUINE, REVIEW_SHARE = 20_000, 5_000, 0.1
CELLS = [(error, pi, fmr, fnmr) for error in (0.0, 0.002, 0.01) for pi in (1.0, 0.1)
         for fmr, fnmr in ((1e-3, 1e-2), (1e-2, 5e-2))]


def cell(error: float, pi: float, fmr: float, fnmr: float, runs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows, ((m_pairs, m_dis), (n_pairs, n_dis)) = noisy_review_rows(rng, runs, IMPOSTORS, fmr, GENUINE, fnmr, pi,
                                                                   error, REVIEW_SHARE)
    keys = [GroupKey("d", "a", "verification", "race", f"g{i}") for i in range(runs)]
    plain = list(GroupFrame.from_counts(keys, rows, CoreConfig(min_comparisons=1)).by_group.values())
    match_pi, non_match_pi = decision_inclusions(rows)
    fixed = [corrected_rates(rows[i], match_pi[i], non_match_pi[i], ReviewerError(int(m_pairs[i]), int(m_dis[i])),
                             ReviewerError(int(n_pairs[i]), int(n_dis[i]))) for i in range(runs)]
    out = {}
    for name, truth in (("fmr", fmr), ("fnmr", fnmr)):
        low = np.array([getattr(f, f"{name}_low") for f in fixed])
        high = np.array([getattr(f, f"{name}_high") for f in fixed])
        plain_low = np.array([getattr(g, name).low for g in plain])
        plain_high = np.array([getattr(g, name).high for g in plain])
        out[f"{name}_coverage_uncorrected"] = float(np.mean((plain_low <= truth) & (truth <= plain_high)))
        out[f"{name}_coverage_corrected"] = float(np.mean((low <= truth) & (truth <= high)))
        out[f"{name}_width_over_uncorrected"] = float(np.median((high - low) / (plain_high - plain_low)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="simulated groups per cell")
    args = parser.parse_args()
    started = time.perf_counter()
    result = {"runs": args.runs, "impostors": IMPOSTORS, "genuine": GENUINE, "review_share": REVIEW_SHARE,
              "cells": []}
    print(f"noisy reviewers, {args.runs} runs per cell, nominal 95%, {REVIEW_SHARE:.0%} double-reviewed")
    print(f"{'error':>6} {'pi':>5} {'FMR':>6} {'FNMR':>6} {'FMR plain':>10} {'FMR fixed':>10} {'FNMR plain':>11}"
          f" {'FNMR fixed':>11} {'FMR width x':>12} {'FNMR width x':>13}")
    for seed, (error, pi, fmr, fnmr) in enumerate(CELLS):
        row = {"error": error, "pi": pi, "fmr": fmr, "fnmr": fnmr, **cell(error, pi, fmr, fnmr, args.runs, seed)}
        result["cells"].append(row)
        print(f"{error:6.3f} {pi:5.2f} {fmr:6.0e} {fnmr:6.0e} {row['fmr_coverage_uncorrected']:10.3f}"
              f" {row['fmr_coverage_corrected']:10.3f} {row['fnmr_coverage_uncorrected']:11.3f}"
              f" {row['fnmr_coverage_corrected']:11.3f} {row['fmr_width_over_uncorrected']:12.2f}"
              f" {row['fnmr_width_over_uncorrected']:13.2f}")
    write_results(RESULTS, result, started)


if __name__ == "__main__":
    main()
