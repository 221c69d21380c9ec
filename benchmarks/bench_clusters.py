"""Errors clustered by subject across buckets: false alarms with and without the clustering key.

Run by ``make bench`` (not a test). Writes ``benchmarks/results/clusters.json`` and prints a table.

The same people come back: a traveller whose face the matcher confuses errs again at the next gate,
minutes or hours later. Each simulated deployment has 200 tested streams, as in
``bench_detection``: 100 FMR streams (about 300 impostor comparisons a minute, FMR 1e-3) and 100
FNMR streams (about 80 genuine comparisons a minute, FNMR 0.02), one day of baseline buckets then 14
monitored days, budget 0.1 false alarms per deployment-day. 70% of the comparisons are one-off
(binomial errors); 30% come in visits: a key (a subject on a trip) makes ``1 + Geometric`` comparisons
(mean 50) at uniform times over ``span`` minutes from its start, each erring with the key's own
rate ``Beta`` (mean the stream's rate, intra-key correlation ``rho``), so that a key's errors
correlate: the keys' design effect is ``1 + 49 rho`` for the visits' comparisons, and the counts of a
period longer than the span vary about ``1 + 0.3 x 49 rho`` times more than binomial ones. Scenarios:

- ``independent keys``: ``rho = 0`` (keys return, their errors are binomial: the key costs little);
- ``keys within a minute``: ``rho = 0.2``, a visit within one bucket (the block dispersion sees it);
- ``keys over 6 h`` and ``keys over 2 days``: ``rho = 0.2``, visits spread across buckets and hours.

The detector is the project's :class:`~fairwatch.detect.detectors.RateDriftDetector` with
``threshold_for_budget(200, 1440, 0.1)`` and each stream's edge from ``Baseline.from_counts`` at
the joint confidence of 200 streams (as ``build_streams`` does), run twice on the same counts: with
the dispersion ``build_streams`` takes without a ``cluster_unit`` (``stream_dispersions``: own and
pooled over the 100 groups of a metric) and with the policy's ``cluster_unit`` (the larger of that
and ``cluster_dispersion`` of the keys' comparisons and errors in the baseline day, a visit reaching
past the baseline's end counted with its part inside it, the one-off comparisons as keys of one).

Reported per scenario: false alarms per deployment-day with the exact upper 95% Poisson bound,
and the median ``phi`` of each variant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from fairwatch.detect.detectors import Baseline, RateDriftDetector, threshold_for_budget
from fairwatch.detect.dispersion import CLUSTER_MOMENTS, cluster_dispersion, stream_dispersions
from fairwatch.detect.streams import joint_confidence
from fairwatch.testing.bench import write_results
from scipy import stats

RESULTS = Path(__file__).parent / "results" / "clusters.json"
DAY = 1440
KINDS = (("fmr", 300, 1e-3, 100), ("fnmr", 80, 2e-2, 100))  # metric, comparisons a minute, rate, streams
STREAMS = sum(k[3] for k in KINDS)
CONFIDENCE, BUDGET = 0.99, 0.1
VISIT = 10.0  # mean comparisons of a visit (a key)
# name, intra-key correlation, span of a visit in minutes
SCENARIOS = (("independent keys", 0.0, 360), ("keys within a minute", 0.2, 1), ("keys over 6 h", 0.2, 360),
             ("keys over 2 days", 0.2, 2 * DAY))


def clustered_errors(days: int, rho: float, span: int, rng) -> tuple[np.ndarray, np.ndarray, list]:
    """Errors and comparisons ``[days * DAY, STREAMS]`` and, per stream, the baseline day's
    ``(errors, comparisons)`` of each visit. Visits start as a Poisson process, day by day (and a
    span before the window: steady state); a visit's comparisons and errors fall at uniform times
    over its span (only the errors are placed; the comparisons of a minute are counted with the
    visits' expected spread)."""
    T, lead = days * DAY, span
    volume = np.concatenate([np.full(count, v) for _, v, _, count in KINDS])
    rate = np.concatenate([np.full(count, p) for _, _, p, count in KINDS])
    n = rng.poisson(volume, (T, STREAMS)).astype(float)  # comparisons per minute, as the visits make them
    x = np.zeros((T, STREAMS))
    keys: list[tuple] = []  # (stream, errors, comparisons) of the visits seen in the baseline day
    for first in range(-lead, T, DAY):
        length = min(DAY, T - first)
        starts = rng.poisson(volume / VISIT, (length, STREAMS))
        t_idx, s_idx = np.nonzero(starts)
        repeat = starts[t_idx, s_idx]
        t_idx, s_idx = np.repeat(t_idx, repeat) + first, np.repeat(s_idx, repeat)
        size = rng.geometric(1 / VISIT, len(t_idx))
        p = rate[s_idx]
        if rho > 0:
            total = 1 / rho - 1
            p = rng.beta(p * total, (1 - p) * total)
        errors = rng.binomial(size, p)
        erring = np.nonzero(errors)[0]
        visit = np.repeat(erring, errors[erring])
        when = t_idx[visit] + (rng.integers(0, span, len(visit)) if span > 1 else 0)
        inside = (when >= 0) & (when < T)
        np.add.at(x, (when[inside], s_idx[visit][inside]), 1.0)
        # the baseline day's part of each visit: its comparisons thinned by the span's overlap, its errors placed
        overlap = (np.clip(t_idx + span, 0, DAY) - np.clip(t_idx, 0, DAY)) / span
        seen = overlap > 0
        if not seen.any():
            continue
        base_errors = np.bincount(visit[inside & (when < DAY)], minlength=len(t_idx))
        base_n = np.maximum(rng.binomial(size, np.clip(overlap, 0, 1)), base_errors)
        seen &= base_n > 0
        keys.append((s_idx[seen], base_errors[seen].astype(float), base_n[seen].astype(float)))
    stream, c, m = (np.concatenate(parts) for parts in zip(*keys))
    return np.minimum(x, n), n, moments(stream, c, m)


def moments(stream: np.ndarray, c: np.ndarray, m: np.ndarray) -> list[dict]:
    """Per stream, the sums cluster_dispersion takes, from the visits' (errors, comparisons) in the baseline."""
    multi = m >= 2
    keep = {"all": 1.0, "multi": multi, "erring": multi & (c > 0)}
    sums = {(part, i, j): np.bincount(stream, weights=(c**i) * (m**j) * keep[part], minlength=STREAMS)
            for part, i, j in CLUSTER_MOMENTS}
    return [{key: float(values[j]) for key, values in sums.items()} for j in range(STREAMS)]


def run(rho: float, span: int, deployments: int, days: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x_all, n_all, block_phi, key_phi = [], [], [], []
    for _ in range(deployments):
        x, n, clusters = clustered_errors(days + 1, rho, span, rng)
        xb, nb = x[:DAY], n[:DAY]
        phis = np.concatenate([stream_dispersions([(xb[:, j], nb[:, j]) for j in range(start, start + count)], 60,
                                                  CONFIDENCE)
                               for start, count in ((0, KINDS[0][3]), (KINDS[0][3], KINDS[1][3]))])
        keyed = np.array([cluster_dispersion(sums, CONFIDENCE) for sums in clusters])
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
    for s, (name, rho, span) in enumerate(SCENARIOS):
        rows.append({"scenario": name, "rho": rho, "span_minutes": span, **run(rho, span, deployments, days,
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
                            "visit_mean": VISIT, "rows": rows}, started)


if __name__ == "__main__":
    main()
