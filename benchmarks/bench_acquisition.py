"""Failure to acquire: do the per-group intervals, and the max / min ratio's simultaneous interval,
hold the simulator's true attempt-level rates?

Run by ``make bench`` (not a test): ``benchmarks/bench_acquisition.py`` (100 seeds per regime) or
``--quick`` (20). Writes ``benchmarks/results/acquisition.json``.

Per seed, a scenario with an ``acquisition`` block is simulated (:mod:`fairwatch.sim.acquisitions`:
each event's encounter retries until a face is acquired); its attempt lines are decoded by the
contract's decoder, counted per group with each encounter's ``cluster_id`` as the cluster (as
:mod:`fairwatch.store.acquisitions` reads them; ``tests/store/test_acquisitions.py`` holds the two
equal), and :func:`~fairwatch.core.acquisition.acquisition_estimates` gives each group's 95%
interval and each attribute's differentials. The truth: :func:`~fairwatch.sim.acquisitions.true_fta`.
Coverage: the share of (seed, group) pairs with attempts whose interval holds the true FTA, and of
(seed, attribute) pairs whose max / min ratio interval holds the true ratio.

Regimes: independent tries without keys; retries of an encounter correlated (rho 0.3) and keyed;
few failures (0.2%); few failures correlated; 30 groups; labels recorded for 30% of encounters, each
with at most 10 tries per encounter; and the two limits the docs state: correlated retries without a
cap on tries (an encounter retried hundreds of times: the pooled rate's variance is estimated too
small) and correlated retries sent without keys (intervals too short).
"""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from fairwatch.contracts.acquisition import decode_acquisition
from fairwatch.core.acquisition import acquisition_estimates
from fairwatch.core.clusters import cluster_moments
from fairwatch.core.config import CoreConfig
from fairwatch.core.layout import OVERALL
from fairwatch.sim.acquisitions import simulate_acquisitions, true_fta
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.testing.bench import coverage_arguments, over_seeds, write_results
from fairwatch.testing.oracles import group_cells

RESULTS = Path(__file__).parent / "results" / "acquisition.json"
RACE = {"White": 0.5, "Black": 0.25, "Asian": 0.15, "Indigenous": 0.1}
MANY = {f"g{i:02d}": 1 / 30 for i in range(30)}
# name: (events, attributes, fta base, factors, encounter correlation, labelled share, keyed, max attempts)
REGIMES = {
    "independent": (10_000, {"race": RACE}, 0.03, {"race": {"Black": 2.5}}, 0.0, 1.0, False, 10),
    "correlated_keyed": (10_000, {"race": RACE}, 0.03, {"race": {"Black": 2.5}}, 0.3, 1.0, True, 10),
    "few_failures": (20_000, {"race": RACE}, 0.002, {"race": {"Black": 2.5}}, 0.0, 1.0, False, 10),
    "few_correlated": (20_000, {"race": RACE}, 0.004, {"race": {"Black": 2.5}}, 0.3, 1.0, True, 10),
    "many_groups": (30_000, {"site_group": MANY}, 0.03, {"site_group": {"g00": 3.0}}, 0.2, 1.0, True, 10),
    "sparse_labels": (20_000, {"race": RACE}, 0.03, {"race": {"Black": 2.5}}, 0.2, 0.3, True, 10),
    # the two limits the docs state: tries without a cap (heavy-tailed retries), retries without keys
    "uncapped_retries": (10_000, {"race": RACE}, 0.03, {"race": {"Black": 2.5}}, 0.3, 1.0, True, 10_000),
    "correlated_unkeyed": (10_000, {"race": RACE}, 0.03, {"race": {"Black": 2.5}}, 0.3, 1.0, False, 10),
}
LIMITS = ("uncapped_retries", "correlated_unkeyed")


def scenario(regime: str) -> dict:
    events, attributes, base, factors, rho, labelled, keyed, max_attempts = REGIMES[regime]
    return {"start": "2026-11-25T06:00:00Z", "duration_hours": 24, "events": events, "attributes": attributes,
            "algorithms": {"algo-1": {"fmr": 0.01, "fnmr": 0.05}},
            "deployments": [{"name": "gate", "algorithm": "algo-1", "threshold": 3.0}],
            "verification": {"non_match_prob": 0.01},
            "acquisition": {"fta": {"base": base, "factors": factors}, "encounter_correlation": rho,
                            "labelled_share": labelled, "keyed": keyed, "max_attempts": max_attempts}}


def run_seed(regime: str, seed: int) -> dict:
    parsed = parse_scenario(scenario(regime))
    sim = simulate(parsed, seed=seed)
    attempts: dict[tuple, list] = defaultdict(list)
    for line in simulate_acquisitions(sim).lines():
        a = decode_acquisition(line)
        for attribute, group in group_cells(dict(a.subject or {})):
            attempts["gate", "algo-1", attribute, group].append((a.cluster_id or "", a.failed, a.outcome))
    counts, moments = {}, {}
    for key, rows in attempts.items():
        failed = np.array([r[1] for r in rows], dtype=bool)
        counts[key] = [len(rows), int(failed.sum()), sum(r[2] == "no_face" for r in rows),
                       sum(r[2] == "low_quality" for r in rows)]
        moments[key] = cluster_moments(np.array([r[0] for r in rows], dtype=object), failed, np.ones(len(rows)))
    groups, differentials = acquisition_estimates(counts, CoreConfig(), moments)
    truth = true_fta(sim.model, parsed.acquisition)
    covered = [(g.fta.low <= truth[g.key[2:]] <= g.fta.high, g.key[2] == OVERALL, g.fta.high - g.fta.low,
                g.fta.design_effect) for g in groups]
    ratios = []
    for d in differentials:
        if d.metric != "max_min_ratio" or d.low is None:
            continue
        rates = [truth[(d.scope.attribute, g)] for g in next(iter(REGIMES[regime][1].values()))]
        true_ratio = max(rates) / min(rates)
        ratios.append(d.low <= true_ratio <= (np.inf if d.high is None else d.high))
    return {"covered": covered, "ratios": ratios}


def overall_row(regime: str, seed: int) -> tuple[int, int]:
    """Where the true FTA lies against the overall row's interval (-1 below it, 0 in it, 1 above it),
    and the most tries of an encounter: one interval per seed, so it is judged
    over many more seeds, counted from the simulator's columns (every attempt is in the overall row,
    an encounter is a cluster when keyed: what :func:`run_seed` decodes from the lines)."""
    parsed = parse_scenario(scenario(regime))
    sim = simulate(parsed, seed=seed)
    failures = simulate_acquisitions(sim).failures.astype(float)
    n, failed = float(failures.sum() + len(failures)), float(failures.sum())
    key = ("gate", "algo-1", OVERALL, OVERALL)
    moments = None
    if parsed.acquisition.keyed:  # per encounter A = F, B = F + 1, every weight 1
        tries = failures + 1
        moments = {key: np.array([failures @ failures - failed, failures @ tries - failed, tries @ tries - n,
                                  n - len(failures)])}
    (estimate,), _ = acquisition_estimates({key: [n, failed, failed, 0]}, CoreConfig(), moments)
    truth = true_fta(sim.model, parsed.acquisition)[OVERALL, OVERALL]
    side = -1 if truth < estimate.fta.low else 1 if truth > estimate.fta.high else 0
    return side, int(failures.max()) + 1


def main() -> None:
    def overall_option(parser) -> None:
        parser.add_argument("--overall-seeds", type=int, default=None,
                            help="simulated runs per regime for the overall row alone (default 2000; 200 with --quick)")

    args = coverage_arguments(__doc__.split("\n")[0], REGIMES, seeds=100, quick_seeds=20, extra=overall_option)
    seeds = args.seeds
    overall_seeds = args.overall_seeds or (200 if args.quick else 2000)
    started = time.perf_counter()
    summary = {}
    print(f"{'regime':>19} {'groups':>7} {'coverage':>9} {'overall':>8} {'ratio':>6} {'mean deff':>10}"
          f" {'overall, ' + str(overall_seeds) + ' seeds':>20} {'above':>6} {'below':>6} {'most tries':>10}")
    with ProcessPoolExecutor(args.workers) as pool:
        for regime in args.regimes:
            runs = over_seeds(pool, run_seed, regime, seeds)
            rows = [c for r in runs for c in r["covered"]]
            groups = [c for c in rows if not c[1]]
            overall = [c for c in rows if c[1]]
            ratios = [x for r in runs for x in r["ratios"]]
            held = over_seeds(pool, overall_row, regime, overall_seeds, chunksize=8)
            summary[regime] = {
                "group_intervals": len(groups), "coverage": float(np.mean([c[0] for c in groups])),
                "overall_coverage": float(np.mean([c[0] for c in overall])),
                "ratio_intervals": len(ratios), "ratio_coverage": float(np.mean(ratios)) if ratios else None,
                "mean_width": float(np.mean([c[2] for c in groups])),
                "mean_design_effect": float(np.mean([c[3] for c in groups])),
                "overall_row": {"seeds": overall_seeds, "coverage": float(np.mean([h[0] == 0 for h in held])),
                                "truth_above": float(np.mean([h[0] == 1 for h in held])),
                                "truth_below": float(np.mean([h[0] == -1 for h in held])),
                                "most_tries": max(h[1] for h in held)},
                "settings": REGIMES[regime]}
            s = summary[regime]
            ratio = "-" if s["ratio_coverage"] is None else f"{s['ratio_coverage']:.3f}"
            print(f"{regime:>19} {len(groups):7d} {s['coverage']:9.3f} {s['overall_coverage']:8.3f} {ratio:>6} "
                  f"{s['mean_design_effect']:10.2f} {s['overall_row']['coverage']:20.3f}"
                  f" {s['overall_row']['truth_above']:6.3f} {s['overall_row']['truth_below']:6.3f}"
                  f" {s['overall_row']['most_tries']:10d}")
    kept = {k: v for k, v in summary.items() if k not in LIMITS} or summary
    worst = min(kept.items(), key=lambda kv: kv[1]["coverage"])
    overall = min(kept.items(), key=lambda kv: kv[1]["overall_row"]["coverage"])
    print(f"\nminimum coverage (capped tries, keys sent where tries correlate): per group {worst[1]['coverage']:.3f}"
          f" ({worst[0]}), overall row {overall[1]['overall_row']['coverage']:.3f} over {overall_seeds} seeds"
          f" ({overall[0]})")
    write_results(RESULTS, {"seeds": seeds, "overall_seeds": overall_seeds, "regimes": summary}, started)


if __name__ == "__main__":
    main()
