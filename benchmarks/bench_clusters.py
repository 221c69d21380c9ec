"""Errors clustered by subject across buckets: false alarms with and without the clustering key.

Run by ``make bench`` (not a test). Writes ``benchmarks/results/clusters.json`` and prints a table.

The same people come back: a traveller whose face the matcher confuses errs again at the next gate,
minutes or hours later. Each simulated deployment has 200 tested streams, as in
``bench_detection``: 100 FMR streams (``Poisson(300)`` impostor comparisons a minute, FMR 1e-3) and
100 FNMR streams (``Poisson(80)`` genuine comparisons a minute, FNMR 0.02), one day of baseline
buckets then 14 monitored days, budget 0.1 false alarms per deployment-day. Errors come in
clusters: clusters start as a Poisson process (the stream's rate / the mean size), each holds
``Geometric(1 / m)`` errors (mean ``m``), placed at uniform times over ``span`` minutes from its
start (a visit of that length), so that the long-run rate is the stream's and the counts of any
period longer than the span vary ``2m - 1`` times more than binomial ones. Scenarios:

- ``singletons``: every cluster of one (binomial errors; the key costs nothing);
- ``clusters 3 within a minute``: the block dispersion of the baseline sees them;
- ``clusters 3 over 6 h`` and ``clusters 3 over 2 days``: spread across buckets and hours.

The detector is the project's :class:`~fairwatch.detect.detectors.RateDriftDetector` with
``threshold_for_budget(200, 1440, 0.1)`` and each stream's edge from ``Baseline.from_counts`` at
the joint confidence of 200 streams (as ``build_streams`` does), run twice on the same counts: with
the dispersion ``build_streams`` takes without a ``cluster_unit`` (``stream_dispersions``: own and
pooled over the 100 groups of a metric) and with the policy's ``cluster_unit`` (the larger of that
and ``cluster_dispersion`` of the cluster sizes seen in the baseline day: a cluster reaching past
the baseline's end is counted only with its errors inside it).

Reported per scenario: false alarms per deployment-day with the exact upper 95% Poisson bound,
and the median ``phi`` of each variant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from fairwatch.detect.detectors import Baseline, RateDriftDetector, threshold_for_budget
from fairwatch.detect.dispersion import cluster_dispersion, stream_dispersions
from fairwatch.detect.streams import joint_confidence
from fairwatch.testing.bench import write_results
from scipy import stats

RESULTS = Path(__file__).parent / "results" / "clusters.json"
DAY = 1440
KINDS = (("fmr", 300, 1e-3, 100), ("fnmr", 80, 2e-2, 100))  # metric, comparisons a minute, rate, streams
STREAMS = sum(k[3] for k in KINDS)
CONFIDENCE, BUDGET = 0.99, 0.1
# name, mean cluster size, span in minutes
SCENARIOS = (("singletons", 1.0, 1), ("clusters 3 within a minute", 3.0, 1), ("clusters 3 over 6 h", 3.0, 360),
             ("clusters 3 over 2 days", 3.0, 2 * DAY))


def clustered_errors(days: int, mean: float, span: int, rng) -> tuple[np.ndarray, np.ndarray, list]:
    """Errors and comparisons ``[days * DAY, STREAMS]`` and, per stream, each cluster's baseline-day
    error count (errors placed before the first day are dropped: the process starts in a steady state)."""
    T = days * DAY
    lead = span  # clusters started before the window reach into it
    n = np.hstack([rng.poisson(volume, (T, count)) for _, volume, _, count in KINDS])
    rate = np.concatenate([np.full(count, volume * p) for _, volume, p, count in KINDS])
    starts = rng.poisson(rate / mean, (T + lead, STREAMS))
    t_idx, s_idx = np.nonzero(starts)
    repeat = starts[t_idx, s_idx]
    t_idx, s_idx = np.repeat(t_idx, repeat), np.repeat(s_idx, repeat)
    sizes = rng.geometric(1 / mean, len(t_idx)) if mean > 1 else np.ones(len(t_idx), int)
    cluster = np.repeat(np.arange(len(t_idx)), sizes)
    when = np.repeat(t_idx, sizes) + (rng.integers(0, span, sizes.sum()) if span > 1 else 0) - lead
    stream = np.repeat(s_idx, sizes)
    inside = (when >= 0) & (when < T)
    x = np.zeros((T, STREAMS))
    np.add.at(x, (when[inside], stream[inside]), 1.0)
    in_base = inside & (when < DAY)
    seen = np.bincount(cluster[in_base], minlength=len(t_idx))  # each cluster's errors in the baseline day
    per_stream = [[] for _ in range(STREAMS)]
    keep = seen > 0
    for s, c in zip(s_idx[keep].tolist(), seen[keep].tolist()):
        per_stream[s].append(c)
    return np.minimum(x, n), n.astype(float), per_stream


def run(mean: float, span: int, deployments: int, days: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x_all, n_all, block_phi, key_phi = [], [], [], []
    for _ in range(deployments):
        x, n, clusters = clustered_errors(days + 1, mean, span, rng)
        xb, nb = x[:DAY], n[:DAY]
        phis = np.concatenate([stream_dispersions([(xb[:, j], nb[:, j]) for j in range(start, start + count)], 60,
                                                  CONFIDENCE)
                               for start, count in ((0, KINDS[0][3]), (KINDS[0][3], KINDS[1][3]))])
        keyed = np.array([cluster_dispersion(tuple(float((np.array(c, float) ** k).sum()) for k in (1, 2, 3, 4)),
                                             CONFIDENCE) for c in clusters])
        block_phi.append(phis)
        key_phi.append(np.maximum(phis, keyed))
        x_all.append(x)
        n_all.append(n)
    x, n = np.hstack(x_all), np.hstack(n_all)
    block, key = np.concatenate(block_phi), np.concatenate(key_phi)
    confidence = joint_confidence(CONFIDENCE, STREAMS)
    edges = [np.array([Baseline.from_counts(float(e), float(m), 1.0, confidence, float(d)).edge
                       for e, m, d in zip(x[:DAY].sum(0), n[:DAY].sum(0), phi)]) for phi in (block, key)]
    detector = RateDriftDetector(np.concatenate(edges), threshold_for_budget(STREAMS, DAY, BUDGET),
                                 dispersion=np.concatenate([block, key]))
    alarms = np.zeros(2 * x.shape[1], int)
    x2, n2 = np.hstack([x, x]), np.hstack([n, n])
    for t in range(DAY, x.shape[0]):
        alarms += detector.update(x2[t], n2[t]).drift_detected
    exposure = deployments * days
    row = {}
    for name, part, phi in (("block", alarms[:x.shape[1]], block), ("with key", alarms[x.shape[1]:], key)):
        k = int(part.sum())
        row[name] = {"alarms": k, "per_deployment_day": k / exposure,
                     "upper95": float(stats.chi2.ppf(0.95, 2 * k + 2) / 2 / exposure),
                     "median_phi_fmr": float(np.median(phi.reshape(deployments, STREAMS)[:, :KINDS[0][3]])),
                     "median_phi_fnmr": float(np.median(phi.reshape(deployments, STREAMS)[:, KINDS[0][3]:]))}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-sized run")
    args = parser.parse_args()
    deployments, days = (1, 1) if args.quick else (5, 14)
    started = time.perf_counter()
    rows = []
    for s, (name, mean, span) in enumerate(SCENARIOS):
        rows.append({"scenario": name, "mean_size": mean, "span_minutes": span, **run(mean, span, deployments, days,
                                                                                        seed=[41, s])})
    print(f"errors clustered by subject, {deployments} deployments x {STREAMS} streams x {days} days after a one-day "
          f"baseline, budget {BUDGET}/deployment-day")
    print(f"{'scenario':<28} | {'phi F/N':>11} {'/d-d':>7} {'upper95':>8} | {'phi F/N':>11} {'/d-d':>7} {'upper95':>8}")
    print(f"{'':<28} | {'block dispersion only':^28} | {'with the clustering key':^28}")
    for r in rows:
        cells = [f"{r[k]['median_phi_fmr']:5.2f}/{r[k]['median_phi_fnmr']:5.2f} {r[k]['per_deployment_day']:7.3f} "
                 f"{r[k]['upper95']:8.3f}" for k in ("block", "with key")]
        print(f"{r['scenario']:<28} | {cells[0]} | {cells[1]}")
    write_results(RESULTS, {"mode": "quick" if args.quick else "full", "kinds": [list(k) for k in KINDS],
                            "rows": rows}, started)


if __name__ == "__main__":
    main()
