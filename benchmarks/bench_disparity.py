"""Disparity detection under overdispersion: false alarms at the policy ratio and delay after a breach.

Run by ``make bench`` (not a test). Writes ``benchmarks/results/disparity.json`` and prints two tables.

Each simulated deployment has 400 (group, reference) pairs (50 quick): the reference group sees
``Poisson(300)`` impostor comparisons a minute at FMR ``P_REF`` = 1e-3, the group ``Poisson(300)``
at ``RATIO x P_REF`` (the policy ratio, 2: the edge of the null, its worst case). One day of
baseline buckets, then 14 monitored days (1 quick). The detector is the project's
:class:`~fairwatch.detect.detectors.DisparityDetector` with the threshold
``threshold_for_budget(200, 1440, 0.1)`` (a deployment of 200 tested streams, budget 0.1 false
alarms a day), run twice on the same counts: with ``phi = 1`` and with each pair's
``split_dispersion`` of its baseline day (what ``build_streams`` gives a disparity stream: the bound,
never pretested). Scenarios:

- ``binomial``;
- ``shared hourly cv 0.5``: both groups' rates times the same ``Gamma`` draw per hour (CV 0.5):
  light or cameras changing for everyone; the split of the errors stays binomial;
- ``own hourly cv 0.1 / 0.2 / 0.3 / 0.5``: each group's rate times its own hourly draw: the split
  varies (a pretest of ``phi = 1`` on a one-day baseline misses CV 0.2 about half the time);
- ``clusters 1.5``: errors of both groups in clusters of geometric size, mean 1.5.

Reported: false alarms per deployment-day (all ``PAIRS`` pairs scaled to the 200-stream budget's
share: alarms / pairs x 200 / days) with the exact upper 95% Poisson bound, and the median ``phi``.
Then the delay after a breach: from the end of the baseline the group's rate is ``BREACH x RATIO x
P_REF`` (2x beyond the policy), in the binomial and the shared-variation scenarios; power within 24
h and the median delay with the split dispersion, with the larger of the two groups' rate
dispersions (what a disparity stream had before), and with ``phi = 1``; also with each group's own
hourly variation at CV 0.2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from fairwatch.detect.detectors import DisparityDetector, threshold_for_budget
from fairwatch.detect.dispersion import estimate_dispersion, split_dispersion
from fairwatch.testing.bench import write_results
from scipy import stats

RESULTS = Path(__file__).parent / "results" / "disparity.json"
DAY = 1440
VOLUME, P_REF, RATIO, BREACH = 300, 1e-3, 2.0, 2.0
CONFIDENCE, BUDGET, STREAMS = 0.99, 0.1, 200
# name, CV shared by both groups per hour, CV of each group's own hourly rate, mean cluster size
SCENARIOS = (("binomial", 0.0, 0.0, 1.0), ("shared hourly cv 0.5", 0.5, 0.0, 1.0),
             ("own hourly cv 0.1", 0.0, 0.1, 1.0), ("own hourly cv 0.2", 0.0, 0.2, 1.0),
             ("own hourly cv 0.3", 0.0, 0.3, 1.0), ("own hourly cv 0.5", 0.0, 0.5, 1.0),
             ("clusters 1.5", 0.0, 0.0, 1.5))
BREACH_SCENARIOS = (0, 1, 3)  # binomial, shared and own variation


def hourly(cv: float, shape: tuple[int, int], rng) -> np.ndarray:
    if cv == 0:
        return np.ones(shape)
    return np.repeat(rng.gamma(1 / cv**2, cv**2, (shape[0] // 60, shape[1])), 60, axis=0)


def errors(n: np.ndarray, rate: np.ndarray, cluster: float, rng) -> np.ndarray:
    if cluster > 1:
        clusters = rng.binomial(n, np.minimum(rate / cluster, 1))
        extra = np.where(clusters > 0, rng.negative_binomial(np.maximum(clusters, 1), 1 / cluster), 0)
        return np.minimum(clusters + extra, n)
    return rng.binomial(n, np.minimum(rate, 1))


def day(scenario: tuple, pairs: int, group_rate: float, rng) -> tuple[np.ndarray, ...]:
    """One day ``[DAY, pairs]`` of the group's and the reference's errors and comparisons."""
    _, shared_cv, own_cv, cluster = scenario
    shared = hourly(shared_cv, (DAY, pairs), rng)
    n_g, n_r = rng.poisson(VOLUME, (DAY, pairs)), rng.poisson(VOLUME, (DAY, pairs))
    x_g = errors(n_g, group_rate * shared * hourly(own_cv, (DAY, pairs), rng), cluster, rng)
    x_r = errors(n_r, P_REF * shared * hourly(own_cv, (DAY, pairs), rng), cluster, rng)
    return tuple(a.astype(float) for a in (x_g, n_g, x_r, n_r))


def dispersions(base: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the split dispersion, and the larger of the two groups' rate dispersions."""
    x_g, n_g, x_r, n_r = base
    split = np.array([split_dispersion(x_g[:, j], n_g[:, j], x_r[:, j], n_r[:, j], 60, CONFIDENCE).phi
                      for j in range(x_g.shape[1])])
    rates = np.array([max(estimate_dispersion(x_g[:, j], n_g[:, j], 60, CONFIDENCE).phi,
                          estimate_dispersion(x_r[:, j], n_r[:, j], 60, CONFIDENCE).phi)
                      for j in range(x_g.shape[1])])
    return split, rates


def run(detectors: list[tuple[str, np.ndarray]], days: list[tuple[np.ndarray, ...]], threshold: float,
        first_only: bool) -> dict[str, np.ndarray]:
    """Alarms per pair (or the first alarm's minute, -1 for none) of each named dispersion."""
    pairs = days[0][0].shape[1]
    bank = DisparityDetector(RATIO, threshold, n_streams=pairs * len(detectors),
                             dispersion=np.concatenate([phi for _, phi in detectors]))
    counts = np.zeros(pairs * len(detectors), int)
    first = np.full(pairs * len(detectors), -1)
    minute = 0
    for x_g, n_g, x_r, n_r in days:
        stacked = [np.tile(a, (1, len(detectors))) for a in (x_g, n_g, x_r, n_r)]
        for t in range(DAY):
            alarm = bank.update(*(a[t] for a in stacked)).drift_detected
            counts += alarm
            minute += 1
            first[alarm & (first < 0)] = minute
            if first_only and (first >= 0).all():
                break
    values = first if first_only else counts
    return {name: values[i * pairs:(i + 1) * pairs] for i, (name, _) in enumerate(detectors)}


def null_part(deployments: int, pairs: int, days: int, seed: int) -> list[dict]:
    threshold = threshold_for_budget(STREAMS, DAY, BUDGET)
    rows = []
    for s, scenario in enumerate(SCENARIOS):
        rng = np.random.default_rng([seed, 1, s])
        base = [day(scenario, pairs, RATIO * P_REF, rng) for _ in range(deployments)]
        split = np.concatenate([dispersions(b)[0] for b in base])
        monitored = [tuple(np.hstack(parts) for parts in zip(*[day(scenario, pairs, RATIO * P_REF, rng)
                                                                for _ in range(deployments)]))
                     for _ in range(days)]
        found = run([("binomial", np.ones(split.size)), ("split", split)], monitored, threshold, False)
        row = {"scenario": scenario[0], "median_split_phi": float(np.median(split))}
        exposure = deployments * days * pairs / STREAMS  # deployment-days at the 200-stream budget's share
        for name, alarms in found.items():
            k = int(alarms.sum())
            row[name] = {"alarms": k, "per_deployment_day": k / exposure,
                         "upper95": float(stats.chi2.ppf(0.95, 2 * k + 2) / 2 / exposure)}
        rows.append(row)
    return rows


def breach_part(pairs: int, seed: int) -> list[dict]:
    threshold = threshold_for_budget(STREAMS, DAY, BUDGET)
    rows = []
    for s in BREACH_SCENARIOS:
        scenario = SCENARIOS[s]
        rng = np.random.default_rng([seed, 2, s])
        split, rates = dispersions(day(scenario, pairs, RATIO * P_REF, rng))
        monitored = [day(scenario, pairs, BREACH * RATIO * P_REF, rng) for _ in range(2)]
        found = run([("split", split), ("larger rate phi", rates), ("binomial", np.ones(pairs))], monitored,
                    threshold, True)
        row = {"scenario": scenario[0], "median_split_phi": float(np.median(split)),
               "median_rate_phi": float(np.median(rates))}
        for name, first in found.items():
            hours = np.where(first >= 0, first / 60, np.inf)
            median = float(np.median(hours))
            row[name] = {"power_24h": float((hours <= 24).mean()), "median_delay_h": median if np.isfinite(median)
                         else None}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-sized run")
    args = parser.parse_args()
    deployments, pairs, days = (1, 50, 1) if args.quick else (5, 400, 14)
    started = time.perf_counter()
    null = null_part(deployments, pairs, days, seed=31)
    breach = breach_part(50 if args.quick else 200, seed=32)
    print(f"disparity streams at the policy ratio {RATIO:g} (the null's edge), {deployments} x {pairs} pairs x "
          f"{days} days, budget {BUDGET}/deployment-day over {STREAMS} streams")
    print(f"{'scenario':<22} {'split phi':>9} | {'phi=1 /d-d':>10} {'upper95':>8} | {'split /d-d':>10} {'upper95':>8}")
    for r in null:
        print(f"{r['scenario']:<22} {r['median_split_phi']:9.2f} | {r['binomial']['per_deployment_day']:10.3f} "
              f"{r['binomial']['upper95']:8.3f} | {r['split']['per_deployment_day']:10.3f} {r['split']['upper95']:8.3f}")
    print(f"\nafter a breach (group at {BREACH:g}x the policy ratio): power within 24 h / median delay (h)")
    print(f"{'scenario':<22} {'split phi':>9} {'rate phi':>8} | {'split':>12} | {'larger rate phi':>15} | "
          f"{'phi=1':>12}")
    for r in breach:
        cells = [f"{r[k]['power_24h']:.2f}/{r[k]['median_delay_h'] if r[k]['median_delay_h'] is None else round(r[k]['median_delay_h'], 2)}"
                 for k in ("split", "larger rate phi", "binomial")]
        print(f"{r['scenario']:<22} {r['median_split_phi']:9.2f} {r['median_rate_phi']:8.2f} | {cells[0]:>12} | "
              f"{cells[1]:>15} | {cells[2]:>12}")
    write_results(RESULTS, {"mode": "quick" if args.quick else "full", "ratio": RATIO, "p_ref": P_REF,
                            "volume": VOLUME, "null": null, "breach": breach}, started)


if __name__ == "__main__":
    main()
