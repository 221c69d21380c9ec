"""Detection benchmark (issue 23, item 3): false alarms under overdispersion, delay and power, river beside.

The detectors before and after the dispersion change of the detection issue (not a test; run by ``make bench``):
``benchmarks/bench_detection.py`` (full: about 3.5 minutes on 2 cores, 197 s measured) or ``--quick``
(about 10 s, smoke-sized: its numbers have no statistical weight). ``--band`` reruns with another
policy band. Writes ``benchmarks/results/detection.json`` and prints one table per part.

Common setting. One-minute buckets (1,440 a day); per bucket and stream the number of comparisons
is ``Poisson(volume)``. The detector is the project's
:class:`~fairwatch.detect.detectors.RateDriftDetector` (the class ``evaluation.run_detectors`` drives),
one bank over all simulated streams, updated one bucket at a time with per-bucket counts, restarting a
stream after its alarm, run continuously from the end of the baseline. Its null edge is
``Baseline.from_counts(errors, n, band, confidence, phi).edge`` of the stream's own baseline buckets (the
buckets right before monitoring), with the policy defaults ``band = 1.0``, ``baseline_confidence =
0.99`` taken jointly over a deployment's 200 streams (``joint_confidence``, as ``build_streams``
does), ``phi = 1`` for the binomial detector and the stream's ``stream_dispersions`` (its own or
the one pooled over its metric's 100 groups, as ``build_streams`` takes it) for the dispersion-aware one; its threshold is ``threshold_for_budget(200, 1440, 0.1)`` (as ``evaluation.detect`` sets it
for a deployment of 200 tested streams and the default ``false_alarms_per_day = 0.1``), so each
stream's share of the budget is 0.1 / 200 = 5e-4 false alarms a day. Not modelled: the worker's
daily moving replay start (``lookback``) and the incident dedup of ``IncidentTracker``; alarms are
counted as the detector raises them.

Part 1, false alarms under the null. Each simulated deployment has 200 tested streams, as 100
groups x 2 metrics: 100 FMR streams (``Poisson(300)`` impostor comparisons a bucket, FMR 1e-3: 0.3
errors a bucket) and 100 FNMR streams (``Poisson(80)`` genuine comparisons a bucket, FNMR 2e-2:
1.6 errors a bucket). Day 0 is the baseline, days 1..D are monitored (D = 14 full, 1 quick); the
rate never changes (the realistic null: the rate stays at the baseline's, below the edge).
Scenarios, each on the same number of deployments (5 full, 1 quick), with ``p`` the stream's rate:

- ``binomial``: errors ~ Binomial(n_t, p) (CV 0);
- ``cv 0.3 / 0.5 / 1.0``: extra-binomial variation of the per-bucket rate, independent between
  buckets and streams: ``rate_t = p * G_t``, ``G_t ~ Gamma(shape 1/cv^2, scale cv^2)`` (mean 1,
  CV ``cv``), errors ~ Binomial(n_t, min(rate_t, 1));
- ``clusters 1.5 / 3``: errors in clusters of geometric size (support 1, 2, ...) with mean ``m``:
  clusters ~ Binomial(n_t, p / m) per bucket, each of Geometric(1/m) errors (the same mean rate
  p; a cluster stays within its bucket; errors capped at n_t);
- ``hourly cv 0.3 / 0.5 / 1.0``: as ``cv``, one draw per stream and hour;
- ``... sets of 2``: the same, the streams taken as attribute sets of 2 groups (``sex``): no pooled
  dispersion, each stream has only its own, bounded without a pretest. River is not rerun on these.

Reported per scenario: the alarms, the rate per stream-day of each metric (against the
per-stream share 5e-4), the rate per deployment-day (all 200 streams, against the budget 0.1) with
its one-sided upper 95% Poisson bound ``chi2.ppf(0.95, 2k + 2) / 2 / deployment-days`` (exact for
Poisson counts; alarms of one overdispersed stream come in bursts, which makes it optimistic), the
streams with at least one alarm and the most alarms of one stream, and per metric the median
edge / p and the dispersion index var/mean of the bucket error counts on the baseline day (about
1 for binomial).

Part 2, delay and power (binomial data, FMR ``p0 = 1e-3``). For every volume (100, 300, 1000
comparisons a bucket) and shift (1.5x, 2x, 3x) ``R`` replicate streams (200 full, 20 quick): one day
of baseline buckets, then 6 h of monitoring at p0, then the rate ``shift * p0`` for the horizon (96
h full, 24 h quick). The same streams are monitored three times over: with the edge from the last
hour of the baseline (``1 h``), from the whole day (``1 d``), and with the known rate as the edge
(``known p0``: the project's detector told the true pre-change rate, band 1). Delay = buckets from
the change to the first alarm at or after it (an alarm at the end of bucket t counts t - change +
1), in hours; the mean is over the replicates detected within the horizon (marked ``>`` when some
were not, then taken over ``min(delay, horizon)``: a lower bound); the 95th percentile counts
undetected replicates as infinite; power = share detected within 24 h. Alarms before the change are
counted (per stream-day of the 6 h pre-change window). Yardstick: ``cusum_information_bound(arl0,
p0, shift * p0)`` with ``arl0 = threshold * volume`` outcomes (the threshold's ARL in buckets, in
outcomes: the convention of bench_drift.py), converted to hours; ``ratio`` = mean delay / that
bound. Also shown (``bucketbd``) is the bound with the ARL counted in buckets, ``log(A) / (volume *
KL)`` (alarms can only come at bucket ends): the smaller, first-order bound at bucket level. Both
are asymptotic (Lorden, worst case over change times), not finite-sample lower bounds on a mean
delay.

Part 3, river on the same streams. ADWIN through the project's ``AdwinErrorDetector`` (river
defaults: delta 0.002, clock 32; the comparisons of a bucket fed one by one in a seeded random
order) and Page-Hinkley through the project's ``ScoreMeanPageHinkley`` (its defaults: threshold 50,
delta 0.005, mode up) fed with the errors as 0/1 scores: ``update_stats(errors, n)`` with
``mean0 = p_hat`` and ``sd0 = sqrt(p_hat (1 - p_hat))`` from the stream's baseline (``p_hat`` at
least 0.5 / n_baseline), i.e. the standardized error count per bucket. Both restart after a
detection (river resets). Null: deployment 0 of every part-1 scenario, Page-Hinkley on its 200
streams (25 of each metric quick) over all monitored days, ADWIN on its first 5 streams of each
metric (1 quick) for 7 monitored days (1 quick) after being fed the baseline day (its alarms during
the baseline not counted): false alarms per stream-day per metric, and per deployment-day (the
rate per stream-day times 200). Drift: the part-2 streams; Page-Hinkley on all replicates with
mean0 / sd0 from the 1 h or 1 d baseline, ADWIN (no baseline: fed the day of baseline buckets as
history) on the first 20 replicates (3 quick) of each volume and shift.

The parts run in separate processes (``--jobs``, default 2). Seeds are fixed; each part regenerates
the streams it shares with another from the same seeds.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from fairwatch.detect.detectors import (
    AdwinErrorDetector,
    Baseline,
    RateDriftDetector,
    ScoreMeanPageHinkley,
    cusum_information_bound,
    threshold_for_budget,
)
from fairwatch.detect.dispersion import stream_dispersions
from fairwatch.detect.streams import joint_confidence
from fairwatch.testing.bench import write_results
from scipy import stats

RESULTS = Path(__file__).parent / "results" / "detection.json"
BUCKETS_PER_DAY = 1440
P0 = 1e-3
# the streams of one deployment under the null: metric, comparisons a bucket, rate, streams
NULL_KINDS = (("fmr", 300, 1e-3, 100), ("fnmr", 80, 2e-2, 100))
CONFIDENCE = 0.99  # policy default baseline_confidence
BUDGET = 0.1  # policy default false_alarms_per_day, across the deployment's streams
STREAMS = sum(k[3] for k in NULL_KINDS)  # tested streams of one deployment: threshold_for_budget's n_streams
# name, CV of the rate, mean cluster size, buckets sharing one rate draw (1: per minute, 60: per hour)
NULL_SCENARIOS = (("binomial", 0.0, 1.0, 1), ("cv 0.3", 0.3, 1.0, 1), ("cv 0.5", 0.5, 1.0, 1), ("cv 1.0", 1.0, 1.0, 1),
                  ("clusters 1.5", 0.0, 1.5, 1), ("clusters 3", 0.0, 3.0, 1), ("hourly cv 0.3", 0.3, 1.0, 60),
                  ("hourly cv 0.5", 0.5, 1.0, 60), ("hourly cv 1.0", 1.0, 1.0, 60),
                  ("hourly cv 0.3 sets of 2", 0.3, 1.0, 60), ("hourly cv 0.5 sets of 2", 0.5, 1.0, 60))
SMALL_SETS = {"hourly cv 0.3 sets of 2", "hourly cv 0.5 sets of 2"}  # the groups pooled per attribute set: 2
VOLUMES = (100, 300, 1000)
SHIFTS = (1.5, 2.0, 3.0)
BASELINES = (("1 h", 60), ("1 d", BUCKETS_PER_DAY))
PRE_CHANGE = 360  # buckets of monitoring at p0 before the change


@dataclass(frozen=True)
class Settings:
    deployments: int
    days: int
    drift_replicates: int
    horizon_hours: int
    ph_streams: int
    adwin_streams: int
    adwin_days: int
    river_replicates: int
    band: float
    seed: int


FULL = Settings(deployments=5, days=14, drift_replicates=200, horizon_hours=96, ph_streams=200, adwin_streams=10,
                adwin_days=7, river_replicates=20, band=1.0, seed=23)
QUICK = Settings(deployments=1, days=1, drift_replicates=20, horizon_hours=24, ph_streams=50, adwin_streams=2,
                 adwin_days=1, river_replicates=3, band=1.0, seed=23)


def threshold() -> float:
    return threshold_for_budget(STREAMS, BUCKETS_PER_DAY, BUDGET)


def edges_of(errors: np.ndarray, n: np.ndarray, band: float, dispersion=None) -> np.ndarray:
    """The detector's null edge per stream from its baseline totals, as ``build_streams`` computes it."""
    dispersion = np.ones(len(errors)) if dispersion is None else dispersion
    confidence = joint_confidence(CONFIDENCE, STREAMS)  # a deployment's 200 bounds hold at once
    return np.array([Baseline.from_counts(float(e), float(m), band, confidence, float(d)).edge
                     for e, m, d in zip(errors, n, dispersion)])


def dispersions_of(xb: np.ndarray, nb: np.ndarray, set_size: int) -> np.ndarray:
    """Each stream's dispersion from its baseline buckets ``[T, S]``, as ``build_streams`` estimates
    it: its own, or the one pooled over its attribute set (each ``set_size`` consecutive columns,
    the groups of one metric) where larger."""
    return np.concatenate([
        stream_dispersions([(xb[:, j], nb[:, j]) for j in range(start, start + set_size)], 60, CONFIDENCE)
        for start in range(0, xb.shape[1], set_size)])


def poisson_upper(k: int, exposure: float) -> float:
    """One-sided upper 95% bound of a Poisson rate with ``k`` events over ``exposure``."""
    return float(stats.chi2.ppf(0.95, 2 * k + 2) / 2 / exposure)


# ---------------------------------------------------------------- streams


def null_counts(cv: float, cluster: float, span: int, volume: float, p: float, shape: tuple[int, int],
                rng) -> tuple[np.ndarray, np.ndarray]:
    """Errors and comparisons ``int[buckets, streams]`` under the null (see the module docstring)."""
    n = rng.poisson(volume, shape)
    if cluster > 1:
        clusters = rng.binomial(n, p / cluster)
        extra = np.where(clusters > 0, rng.negative_binomial(np.maximum(clusters, 1), 1 / cluster), 0)
        return np.minimum(clusters + extra, n), n
    if cv == 0:
        return rng.binomial(n, p), n
    draws = rng.gamma(1 / cv**2, cv**2, (shape[0] // span, shape[1]))
    return rng.binomial(n, np.minimum(p * np.repeat(draws, span, axis=0), 1.0)), n


def null_day(settings: Settings, scenario: int, deployment: int, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Day ``day`` (0 = baseline) of one deployment's streams (``NULL_KINDS`` side by side) in one scenario."""
    rng = np.random.default_rng([settings.seed, 1, scenario, deployment, day])
    _, cv, cluster, span = NULL_SCENARIOS[scenario]
    parts = [null_counts(cv, cluster, span, volume, p, (BUCKETS_PER_DAY, count), rng)
             for _, volume, p, count in NULL_KINDS]
    return np.hstack([x for x, _ in parts]), np.hstack([n for _, n in parts])


def kind_columns() -> dict[str, np.ndarray]:
    """Columns of each metric among a deployment's ``STREAMS`` streams."""
    bounds = np.cumsum([0] + [count for *_, count in NULL_KINDS])
    return {kind[0]: np.arange(bounds[i], bounds[i + 1]) for i, kind in enumerate(NULL_KINDS)}


def drift_data(settings: Settings, vi: int, si: int):
    """One day of baseline buckets and the monitored buckets ``int[T, R]`` of one volume x shift."""
    rng = np.random.default_rng([settings.seed, 2, vi, si])
    R, T = settings.drift_replicates, PRE_CHANGE + settings.horizon_hours * 60
    nb = rng.poisson(VOLUMES[vi], (BUCKETS_PER_DAY, R))
    xb = rng.binomial(nb, P0)
    n = rng.poisson(VOLUMES[vi], (T, R))
    rate = np.where(np.arange(T)[:, None] < PRE_CHANGE, P0, SHIFTS[si] * P0)
    return xb, nb, rng.binomial(n, rate), n


# ---------------------------------------------------------------- part 1


def sr_null(settings: Settings) -> dict:
    started = time.perf_counter()
    cells = [(s, d) for s in range(len(NULL_SCENARIOS)) for d in range(settings.deployments)]

    def day(k: int):
        parts = [null_day(settings, s, d, k) for s, d in cells]
        return np.hstack([p[0] for p in parts]).astype(float), np.hstack([p[1] for p in parts]).astype(float)

    xb, nb = day(0)
    # 100 groups per metric and attribute set (2 in the small-set scenarios), one cell after the other
    phis = np.concatenate([dispersions_of(xb[:, i * STREAMS:(i + 1) * STREAMS], nb[:, i * STREAMS:(i + 1) * STREAMS],
                                          2 if NULL_SCENARIOS[s][0] in SMALL_SETS else NULL_KINDS[0][3])
                           for i, (s, _) in enumerate(cells)])
    edges = edges_of(xb.sum(0), nb.sum(0), settings.band)
    aware_edges = edges_of(xb.sum(0), nb.sum(0), settings.band, phis)
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = xb.var(0) / xb.mean(0)
    # the binomial detector (before the detection issue) and the dispersion-aware one, side by side
    detector = RateDriftDetector(np.concatenate([edges, aware_edges]), threshold(),
                                 dispersion=np.concatenate([np.ones(edges.size), phis]))
    both = np.zeros(2 * edges.size, int)
    for k in range(1, settings.days + 1):
        x, n = day(k)
        x2, n2 = np.hstack([x, x]), np.hstack([n, n])
        for t in range(BUCKETS_PER_DAY):
            both += detector.update(x2[t], n2[t]).drift_detected
    rows = []
    alarms, aware = both[:edges.size], both[edges.size:]
    deployments, days = settings.deployments, settings.days
    by_stream = alarms.reshape(len(NULL_SCENARIOS), deployments, STREAMS)
    aware_by_stream = aware.reshape(by_stream.shape)
    phi = phis.reshape(by_stream.shape)
    edge = edges.reshape(by_stream.shape)
    disp = dispersion.reshape(by_stream.shape)
    rate = np.concatenate([np.full(count, p) for _, _, p, count in NULL_KINDS])
    for s, (name, cv, cluster, span) in enumerate(NULL_SCENARIOS):
        a = by_stream[s]
        k = int(a.sum())
        k_aware = int(aware_by_stream[s].sum())
        row = {"scenario": name, "cv": cv, "mean_cluster": cluster, "rate_span_buckets": span,
               "dispersion_aware": {"alarms": k_aware, "per_deployment_day": k_aware / (deployments * days),
                                    "per_deployment_day_upper95": poisson_upper(k_aware, deployments * days),
                                    "streams_alarmed": int((aware_by_stream[s] > 0).sum()),
                                    "median_phi": {metric: float(np.median(phi[s][:, cols]))
                                                   for metric, cols in kind_columns().items()},
                                    "share_phi_above_1": float((phi[s] > 1).mean())},
               "streams": deployments * STREAMS,
               "deployments": deployments, "days": days, "alarms": k, "per_stream_day": k / (a.size * days),
               "per_stream_share": BUDGET / STREAMS, "per_deployment_day": k / (deployments * days),
               "per_deployment_day_upper95": poisson_upper(k, deployments * days), "budget": BUDGET,
               "streams_alarmed": int((a > 0).sum()), "max_alarms_one_stream": int(a.max())}
        for metric, cols in kind_columns().items():
            row[metric] = {"alarms": int(a[:, cols].sum()),
                           "per_stream_day": float(a[:, cols].sum() / (a[:, cols].size * days)),
                           "median_edge_over_p": float(np.median(edge[s][:, cols] / rate[cols])),
                           "dispersion_index": float(np.nanmean(disp[s][:, cols]))}
        rows.append(row)
    return {"threshold": threshold(), "band": settings.band,
            "kinds": [dict(zip(("metric", "volume", "rate", "streams"), k)) for k in NULL_KINDS], "rows": rows,
            "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------- part 2


def delay_summary(first: np.ndarray, pre_alarms: np.ndarray, horizon: int) -> dict:
    """``first``: buckets from the change to the first alarm (-1: none within ``horizon``)."""
    hit = first >= 0
    delays = np.where(hit, first, np.inf) / 60
    censored = not hit.all()
    mean = float(np.minimum(delays, horizon / 60).mean()) if censored else float(delays.mean())
    p95 = float(np.quantile(delays, 0.95, method="inverted_cdf"))
    return {"replicates": int(first.size), "detected_in_horizon": float(hit.mean()),
            "power_24h": float((hit & (first <= BUCKETS_PER_DAY)).mean()), "mean_delay_h": mean,
            "mean_censored": censored, "p95_delay_h": None if math.isinf(p95) else p95,
            "alarms_before_change_per_stream_day":
                float(pre_alarms.sum() / (first.size * PRE_CHANGE / BUCKETS_PER_DAY))}


def sr_drift(settings: Settings) -> dict:
    started = time.perf_counter()
    R = settings.drift_replicates
    configs = [(vi, si) for vi in range(len(VOLUMES)) for si in range(len(SHIFTS))]
    xs, ns, edges, phis, columns = [], [], [], [], []
    for c, (vi, si) in enumerate(configs):
        xb, nb, x, n = drift_data(settings, vi, si)
        xs.append(x)
        ns.append(n)
        for _, length in BASELINES:
            edges.append(edges_of(xb[-length:].sum(0), nb[-length:].sum(0), settings.band))
            phis.append(np.ones(R))
        phi = dispersions_of(xb.astype(float), nb.astype(float), R)  # dispersion-aware, whole baseline day
        edges.append(edges_of(xb.sum(0), nb.sum(0), settings.band, phi))
        phis.append(phi)
        edges.append(np.full(R, P0))  # known baseline
        phis.append(np.ones(R))
        columns += [np.arange(c * R, (c + 1) * R)] * (len(BASELINES) + 2)
    x, n = np.hstack(xs).astype(float), np.hstack(ns).astype(float)
    column = np.concatenate(columns)
    edge = np.concatenate(edges)
    detector = RateDriftDetector(edge, threshold(), dispersion=np.concatenate(phis))
    first = np.full(edge.size, -1)
    pre = np.zeros(edge.size, int)
    T = x.shape[0]
    for t in range(T):
        alarm = detector.update(x[t, column], n[t, column]).drift_detected
        if t < PRE_CHANGE:
            pre += alarm
        else:
            first[alarm & (first < 0)] = t - PRE_CHANGE + 1
            if t % 60 == 0 and (first >= 0).all():
                break
    rows = []
    labels = [label for label, _ in BASELINES] + ["1 d +disp", "known p0"]
    for c, (vi, si) in enumerate(configs):
        volume, shift = VOLUMES[vi], SHIFTS[si]
        bound_h = cusum_information_bound(threshold() * volume, P0, shift * P0) / volume / 60
        bucket_bound_h = cusum_information_bound(threshold(), P0, shift * P0) / volume / 60
        for b, label in enumerate(labels):
            j = slice((c * len(labels) + b) * R, (c * len(labels) + b + 1) * R)
            row = {"volume": volume, "shift": shift, "baseline": label,
                   "median_edge_over_p0": float(np.median(edge[j]) / P0),
                   "share_edge_above_shifted_rate": float((edge[j] >= shift * P0).mean()),
                   **delay_summary(first[j], pre[j], T - PRE_CHANGE),
                   "cusum_bound_h": bound_h, "cusum_bound_bucket_arl_h": bucket_bound_h,
                   "first_alarm_buckets": first[j].tolist()}
            row["delay_over_bound"] = row["mean_delay_h"] / bound_h
            rows.append(row)
    return {"threshold": threshold(), "band": settings.band, "pre_change_buckets": PRE_CHANGE,
            "horizon_hours": settings.horizon_hours, "rows": rows, "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------- part 3


def page_hinkley(errors: float, n: float) -> ScoreMeanPageHinkley:
    p = max(errors, 0.5) / n
    return ScoreMeanPageHinkley(mean0=p, sd0=math.sqrt(p * (1 - p)))


def river_null(settings: Settings) -> dict:
    started = time.perf_counter()
    rows = []
    kinds = kind_columns()

    def pick(count: int) -> dict[str, np.ndarray]:  # the first streams of each metric, count in all
        return {metric: cols[:count // len(kinds)] for metric, cols in kinds.items()}

    ph_cols, adwin_cols = pick(settings.ph_streams), pick(settings.adwin_streams)
    for s, (name, *_) in enumerate(NULL_SCENARIOS):
        if name in SMALL_SETS:
            continue  # river has no attribute sets: the same data as the scenario above
        xb, nb = null_day(settings, s, 0, 0)
        phs = {j: page_hinkley(xb[:, j].sum(), nb[:, j].sum()) for cols in ph_cols.values() for j in cols}
        adwins = {j: AdwinErrorDetector(seed=int(j)) for cols in adwin_cols.values() for j in cols}
        for j, adwin in adwins.items():
            for t in range(BUCKETS_PER_DAY):
                adwin.update(xb[t, j], nb[t, j])
        warmup = {j: a.detections for j, a in adwins.items()}
        ph_alarms = dict.fromkeys(phs, 0)
        for k in range(1, settings.days + 1):
            x, n = null_day(settings, s, 0, k)
            xf, nf = x.astype(float), n.astype(float)
            for j, ph in phs.items():
                for t in range(BUCKETS_PER_DAY):
                    ph_alarms[j] += ph.update_stats(xf[t, j], nf[t, j]).drift_detected
            if k <= settings.adwin_days:
                for j, adwin in adwins.items():
                    for t in range(BUCKETS_PER_DAY):
                        adwin.update(x[t, j], n[t, j])
        row = {"scenario": name}
        for detector, cols, alarms, days in (
                ("ph", ph_cols, ph_alarms, settings.days),
                ("adwin", adwin_cols, {j: a.detections - warmup[j] for j, a in adwins.items()}, settings.adwin_days)):
            total = sum(alarms.values())
            exposure = len(alarms) * days
            row[detector] = {"streams": len(alarms), "days": days, "alarms": int(total),
                             "per_stream_day": total / exposure if exposure else None,
                             "per_deployment_day": STREAMS * total / exposure if exposure else None}
            for metric, metric_cols in cols.items():
                k = sum(alarms[j] for j in metric_cols)
                row[detector][metric] = {"streams": len(metric_cols), "alarms": int(k),
                                         "per_stream_day": k / (len(metric_cols) * days) if len(metric_cols) else None}
        rows.append(row)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def first_after_change(detector_update, x: np.ndarray, n: np.ndarray) -> tuple[int, int]:
    """Feed monitored buckets until the first alarm at or after the change; ``(delay or -1, pre-change alarms)``."""
    pre = 0
    for t in range(x.shape[0]):
        if detector_update(x[t], n[t]):
            if t < PRE_CHANGE:
                pre += 1
            else:
                return t - PRE_CHANGE + 1, pre
    return -1, pre


def river_drift(settings: Settings) -> dict:
    started = time.perf_counter()
    rows = []
    horizon = settings.horizon_hours * 60
    for vi, volume in enumerate(VOLUMES):
        for si, shift in enumerate(SHIFTS):
            xb, nb, x, n = drift_data(settings, vi, si)
            xf, nf = x.astype(float), n.astype(float)
            row = {"volume": volume, "shift": shift}
            for label, length in BASELINES:
                first, pre = [], []
                for r in range(settings.drift_replicates):
                    ph = page_hinkley(xb[-length:, r].sum(), nb[-length:, r].sum())
                    f, p = first_after_change(lambda e, m, ph=ph: ph.update_stats(e, m).drift_detected,
                                              xf[:, r], nf[:, r])
                    first.append(f)
                    pre.append(p)
                row[f"page_hinkley_{label}"] = delay_summary(np.array(first), np.array(pre), horizon)
            first, pre = [], []
            for r in range(settings.river_replicates):
                adwin = AdwinErrorDetector(seed=r)
                for t in range(BUCKETS_PER_DAY):
                    adwin.update(xb[t, r], nb[t, r])
                f, p = first_after_change(lambda e, m, a=adwin: a.update(e, m).drift_detected, x[:, r], n[:, r])
                first.append(f)
                pre.append(p)
            row["adwin"] = delay_summary(np.array(first), np.array(pre), horizon)
            rows.append(row)
    return {"rows": rows, "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------- report


def hours(summary: dict, key: str = "mean_delay_h") -> str:
    value = summary[key]
    if value is None:
        return "   >hzn"
    return f"{'>' if key == 'mean_delay_h' and summary['mean_censored'] else ' '}{value:6.2f}"


def print_tables(result: dict) -> None:
    null, drift, rn, rd = result["null"], result["drift"], result["river_null"], result["river_drift"]
    kinds = ", ".join(f"{k['streams']} {k['metric'].upper()} ({k['volume']} comparisons/bucket, rate {k['rate']:g})"
                      for k in null["kinds"])
    print(f"\nPart 1: false alarms under the null, {null['rows'][0]['deployments']} deployments x {STREAMS} streams "
          f"[{kinds}] x {null['rows'][0]['days']} days, 1-day baseline, band {null['band']}, threshold "
          f"{null['threshold']:.3g} (budget {BUDGET}/day per deployment = {BUDGET / STREAMS:g}/stream-day)")
    print(f"{'scenario':<14} {'disp F/N':>10} {'edge/p F/N':>10} {'alarms':>7} {'FMR /s-d':>9} {'FNMR /s-d':>9} "
          f"{'/deploy-day':>11} {'upper95':>8} {'<=budget':>8} {'hit':>5} {'max/s':>5} | {'phi F/N':>11} "
          f"{'phi>1':>5} {'aware /d-d':>10} {'upper95':>8} {'<=budget':>8}")
    for r in null["rows"]:
        f, g, a = r["fmr"], r["fnmr"], r["dispersion_aware"]
        print(f"{r['scenario']:<14} {f['dispersion_index']:4.2f}/{g['dispersion_index']:5.2f} "
              f"{f['median_edge_over_p']:4.2f}/{g['median_edge_over_p']:5.2f} {r['alarms']:7d} "
              f"{f['per_stream_day']:9.2e} {g['per_stream_day']:9.2e} {r['per_deployment_day']:11.3f} "
              f"{r['per_deployment_day_upper95']:8.3f} {r['per_deployment_day_upper95'] <= BUDGET!s:>8} "
              f"{r['streams_alarmed']:5d} {r['max_alarms_one_stream']:5d} | "
              f"{a['median_phi']['fmr']:5.2f}/{a['median_phi']['fnmr']:5.2f} {a['share_phi_above_1']:5.2f} "
              f"{a['per_deployment_day']:10.3f} {a['per_deployment_day_upper95']:8.3f} "
              f"{a['per_deployment_day_upper95'] <= BUDGET!s:>8}")

    print(f"\nPart 2: delay (h) after an FMR shift, binomial data, {drift['rows'][0]['replicates']} replicates, "
          f"change after {PRE_CHANGE // 60} h of monitoring, horizon {drift['horizon_hours']} h, band {drift['band']}; "
          f"CUSUM bound with ARL = threshold x volume outcomes ('>' mean: some not detected, lower bound)")
    print(f"{'volume':>6} {'shift':>5} {'baseline':>9} {'edge/p0':>8} {'mean':>7} {'p95':>7} {'power24':>7} "
          f"{'in hzn':>6} {'FA/s-d':>7} {'bound':>6} {'ratio':>6} {'bucketbd':>8}")
    for r in drift["rows"]:
        print(f"{r['volume']:6d} {r['shift']:5.1f} {r['baseline']:>9} {r['median_edge_over_p0']:8.2f} {hours(r)} "
              f"{hours(r, 'p95_delay_h')} {r['power_24h']:7.3f} {r['detected_in_horizon']:6.3f} "
              f"{r['alarms_before_change_per_stream_day']:7.3f} {r['cusum_bound_h']:6.2f} {r['delay_over_bound']:6.2f} "
              f"{r['cusum_bound_bucket_arl_h']:8.2f}")

    ph, ad = rn["rows"][0]["ph"], rn["rows"][0]["adwin"]
    print(f"\nPart 3a: river on the part-1 streams of deployment 0, false alarms per stream-day (FMR, FNMR) and "
          f"per {STREAMS} streams a day; Page-Hinkley {ph['streams']} streams x {ph['days']} days, ADWIN "
          f"{ad['streams']} streams x {ad['days']} days")
    print(f"{'scenario':<14} {'SR /s-d':>9} | {'PH FMR':>7} {'PH FNMR':>7} {'PH /dep-d':>9} | {'AD FMR':>7} "
          f"{'AD FNMR':>7} {'AD /dep-d':>9}")
    for r, s in zip(rn["rows"], null["rows"]):
        ph, ad = r["ph"], r["adwin"]
        print(f"{r['scenario']:<14} {s['per_stream_day']:9.2e} | {ph['fmr']['per_stream_day']:7.3f} "
              f"{ph['fnmr']['per_stream_day']:7.3f} {ph['per_deployment_day']:9.1f} | "
              f"{ad['fmr']['per_stream_day']:7.3f} "
              f"{ad['fnmr']['per_stream_day']:7.3f} {ad['per_deployment_day']:9.1f}")

    print(f"\nPart 3b: river on the part-2 streams: mean delay (h) / power within 24 h / false alarms per stream-day "
          f"before the change; SR and Page-Hinkley with the 1 d baseline "
          f"({rd['rows'][0]['page_hinkley_1 d']['replicates']} replicates), ADWIN fed the baseline day as history "
          f"({rd['rows'][0]['adwin']['replicates']} replicates)")
    sr = {(r["volume"], r["shift"], r["baseline"]): r for r in drift["rows"]}
    print(f"{'volume':>6} {'shift':>5} | {'SR mean':>7} {'pow24':>5} | {'PH mean':>7} {'pow24':>5} {'FA/s-d':>6} "
          f"{'PH(1h) mean':>11} | {'ADWIN mean':>10} {'pow24':>5} {'FA/s-d':>6}")
    for r in rd["rows"]:
        s, ph, ph1, ad = sr[r["volume"], r["shift"], "1 d"], r["page_hinkley_1 d"], r["page_hinkley_1 h"], r["adwin"]
        print(f"{r['volume']:6d} {r['shift']:5.1f} | {hours(s)} {s['power_24h']:5.2f} | "
              f"{hours(ph)} {ph['power_24h']:5.2f} "
              f"{ph['alarms_before_change_per_stream_day']:6.2f} {hours(ph1):>11} | {hours(ad):>10} "
              f"{ad['power_24h']:5.2f} {ad['alarms_before_change_per_stream_day']:6.2f}")
    print("\nseconds per part: " + ", ".join(f"{k} {result[k]['seconds']:.1f}" for k in
                                             ("null", "drift", "river_null", "river_drift")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (under a minute)")
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--band", type=float, default=None, help="policy band (default 1.0, the policy default)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.band is not None:
        settings = Settings(**{**asdict(settings), "band": args.band})
    started = time.perf_counter()
    tasks = {"null": sr_null, "river_null": river_null, "river_drift": river_drift, "drift": sr_drift}
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = {name: pool.submit(task, settings) for name, task in tasks.items()}
            parts = {name: future.result() for name, future in futures.items()}
    else:
        parts = {name: task(settings) for name, task in tasks.items()}
    result = {"mode": "quick" if args.quick else "full", "settings": asdict(settings), "p0": P0,
              "streams_per_deployment": STREAMS, "false_alarms_per_day": BUDGET, "baseline_confidence": CONFIDENCE,
              "buckets_per_day": BUCKETS_PER_DAY, **parts}
    print_tables(result)
    default_band = args.band is None or args.band == FULL.band
    write_results(RESULTS if default_band else RESULTS.with_name(f"detection-band{args.band:g}.json"), result, started)


if __name__ == "__main__":
    main()
