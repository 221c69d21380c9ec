"""Runs the detectors and the incident lifecycle over the monitored buckets of a policy's streams (pure)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote

import numpy as np

from fairwatch.core.config import DAY_SECONDS, CoreConfig
from fairwatch.core.estimates import RateEstimator
from fairwatch.core.groupframe import population_strata
from fairwatch.core.intervals import clopper_pearson
from fairwatch.detect.detectors import (
    DisparityDetector,
    RateDriftDetector,
    threshold_for_budget,
)
from fairwatch.detect.incidents import Alert, IncidentTracker, alert_id, utc
from fairwatch.detect.policy import LINK_FIELDS, Policy
from fairwatch.detect.states import StreamState, stream_states
from fairwatch.detect.streams import Stream


def _trailing(values: np.ndarray, width: int) -> np.ndarray:
    """Sums over the last ``width`` steps (inclusive) along axis 0."""
    c = np.cumsum(values, axis=0)
    out = c.copy()
    out[width:] -= c[:-width]
    return out


def run_detectors(tested: list[Stream], threshold: float, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Drive one river-style detector bank per kind over the ``T`` monitored buckets: rate streams
    (error rates and score tails) against their null edges, disparity streams against their
    reference groups. Returns ``alarm bool[T, S]`` and ``log R float[T, S]`` in ``tested`` order."""
    alarms = np.zeros((T, len(tested)), bool)
    log_stats = np.empty((T, len(tested)))
    rate = [i for i, s in enumerate(tested) if s.type != "disparity_breach"]
    disparity = [i for i, s in enumerate(tested) if s.type == "disparity_breach"]
    banks = []
    if rate:
        series = [np.stack([getattr(tested[i], f) for i in rate], axis=1) for f in ("x", "n")]
        banks.append((rate, RateDriftDetector(np.array([tested[i].edge for i in rate]), threshold,
                                              dispersion=np.array([tested[i].dispersion for i in rate])), series))
    if disparity:
        [ratio] = {tested[i].ratio for i in disparity}  # the policy's, shared by every pair
        series = [np.stack([getattr(tested[i], f) for i in disparity], axis=1) for f in ("x", "n", "x_ref", "n_ref")]
        banks.append((disparity, DisparityDetector(ratio, threshold, n_streams=len(disparity),
                                                   dispersion=np.array([tested[i].dispersion for i in disparity])),
                      series))
    for t in range(T):
        for columns, detector, series in banks:
            detector.update(*(values[t] for values in series))
            alarms[t, columns] = detector.drift_detected
            log_stats[t, columns] = detector.statistic
    return alarms, log_stats


def _clear(stream: Stream, width: int) -> np.ndarray:
    """Resolution criterion per bucket: the last ``width`` buckets' verified rate is back within the
    null (point estimate), and they hold data."""
    x, n = _trailing(stream.x, width), _trailing(stream.n, width)
    with np.errstate(divide="ignore", invalid="ignore"):
        if stream.type == "disparity_breach":
            xr, nr = _trailing(stream.x_ref, width), _trailing(stream.n_ref, width)
            return (n > 0) & (nr > 0) & (x / n <= stream.ratio * xr / np.maximum(nr, 1e-300))
        return (n > 0) & (x / n <= stream.edge)


def _value(stream: Stream, t: int, width: int, estimator: RateEstimator) -> tuple:
    if stream.weighted is None:  # score tail: the unweighted share above the cutoff
        x, n = stream.x[max(0, t - width + 1): t + 1].sum(), stream.n[max(0, t - width + 1): t + 1].sum()
        block = np.array([[n, x, n, x, n, x]])
    else:
        block = stream.weighted[max(0, t - width + 1): t + 1].sum(axis=0, keepdims=True)
    strata = ()
    if stream.counts is not None:  # the group's other population tells the strata no error reached
        window = stream.counts[max(0, t - width + 1): t + 1].sum(axis=0, keepdims=True)
        strata = population_strata(window)[stream.metric]
    [estimate] = estimator.estimate(block, None, *strata)
    return estimate.rate, estimate.low, estimate.high, estimate.n


def alert_template(stream: Stream, policy: Policy) -> Alert:
    evidence: dict = {"n": 0}
    if stream.type == "insufficient_evidence" and len(stream.x):  # its baseline's comparisons, and the need
        evidence = {"n": float(stream.x[0]), "needed": float(stream.n[0]), "e_value": None, "statistic": None}
    return Alert(
        id=alert_id(policy.deployment, stream.algorithm, stream.type, stream.alert_metric, stream.group_text),
        type=stream.type, severity=policy.severity[stream.type], deployment=policy.deployment,
        algorithm=stream.algorithm, group=stream.group_text, metric=stream.alert_metric, estimate=None, low=None,
        high=None, baseline=stream.baseline_rate, detector=stream.detector, evidence=evidence, state="firing",
        opened_at=utc(0), resolved_at=None, runbook_url=policy.runbook_url, dashboard_url=policy.dashboard_url,
        routing=policy.routing,
    )


def policy_threshold(policy: Policy, streams: list[Stream], bucket_seconds: int) -> tuple[list[Stream], float]:
    """The streams a policy tests (every detector stream) and the alarm threshold that spends its
    ``false_alarms_per_day`` over them."""
    tested = [s for s in streams if s.type not in ("insufficient_evidence", "label_backlog")]
    return tested, threshold_for_budget(max(1, len(tested)), DAY_SECONDS / bucket_seconds, policy.false_alarms_per_day)


def detect(policy: Policy, config: CoreConfig, streams: list[Stream], mon_start: int, stored_open: list[Alert]):
    """Replay the detectors and the incident lifecycle over the monitored buckets.

    Returns ``(incidents, threshold)``: every incident seen (latest state per ``(id, opened_at)``)."""
    incidents, threshold, _ = detect_with_states(policy, config, streams, mon_start, stored_open)
    return incidents, threshold


def detect_with_states(policy: Policy, config: CoreConfig, streams: list[Stream], mon_start: int,
                       stored_open: list[Alert]) -> tuple[list[Alert], float, list[StreamState]]:
    """:func:`detect`, and every stream's state at the last bucket (:mod:`fairwatch.detect.states`)."""
    bucket = config.bucket_seconds
    tested, threshold = policy_threshold(policy, streams, bucket)
    T = len(streams[0].x) if streams else 0
    width = max(1, math.ceil(policy.resolve_after / bucket)) if policy.resolve_after else 1
    tracker = IncidentTracker(policy.resolve_after)
    # stored firing incidents rejoin the replay when it reaches their opened_at: an alarm then
    # updates them (same incident) and a clear spell resolves them
    waiting = sorted(stored_open, key=lambda a: a.opened_at)
    estimator = RateEstimator(CoreConfig(bucket_seconds=bucket, confidence=config.confidence))
    incidents: dict[tuple[str, datetime], Alert] = {}
    templates = [alert_template(s, policy) for s in streams]
    alarms = log_stats = None
    if tested and T:
        alarms, log_stats = run_detectors(tested, threshold, T)
        clear = np.stack([_clear(s, width) for s in tested], axis=1)
    index = {id(s): i for i, s in enumerate(tested)}
    for t in range(T):
        at = utc(mon_start + (t + 1) * bucket)  # the end of the bucket: when its evidence is complete
        while waiting and waiting[0].opened_at <= at:
            stored = waiting.pop(0)
            already = tracker.open.get(stored.id)
            if already is not None:  # the replay opened it a little earlier: it is the stored one
                incidents.pop(already.alert.incident, None)
                already.alert = replace(already.alert, opened_at=stored.opened_at)
            else:
                tracker.restore([stored])
        for stream, template in zip(streams, templates):
            if stream.type == "insufficient_evidence":
                alarm, is_clear, stat = (t == 0), False, None  # its evidence is the template's
            elif stream.type == "label_backlog":  # a policy limit on the share: no detector statistic
                spec = policy.label_backlog
                unverified, counted = stream.x[t], stream.n[t]
                is_clear = unverified <= spec.max_share * counted
                alarm, stat = counted >= spec.min_matches and not is_clear, None
            else:
                i = index[id(stream)]
                alarm, is_clear, stat = bool(alarms[t, i]), bool(clear[t, i]), float(log_stats[t, i])
            if not alarm and template.id not in tracker.open:
                continue
            if alarm and stream.type == "label_backlog":
                unverified, counted = stream.x[t], stream.n[t]
                low, high = clopper_pearson(unverified, counted, config.confidence)
                template = replace(template, estimate=float(unverified / counted), low=float(low), high=float(high),
                                   evidence={"n": float(counted), "e_value": None, "statistic": None})
            elif alarm and stream.type != "insufficient_evidence":
                estimate, low, high, n = _value(stream, t, width, estimator)
                evidence = {"n": float(n), "e_value": None,
                            "statistic": None if stat is None else round(stat / math.log(10), 6),
                            "threshold": round(math.log10(threshold), 6),
                            "dispersion": round(stream.dispersion, 6)}
                template = replace(template, estimate=estimate, low=low, high=high, evidence=evidence)
            for transition in tracker.observe(template, at, alarm, is_clear):
                incidents[transition.alert.incident] = transition.alert
    tracker.restore(waiting)
    for still_open in tracker.open.values():
        incidents.setdefault(still_open.alert.incident, still_open.alert)
    states = stream_states(policy, streams, tested, alarms, log_stats, threshold, mon_start, bucket)
    return [with_links(a) for a in incidents.values()], threshold, states


LINK_BEFORE, LINK_AFTER = 6 * 3600, 3600  # the window a link shows: from before the opening to after the end


def with_links(alert: Alert) -> Alert:
    """The alert with its policy's runbook and dashboard URL templates filled in (URL-encoded):
    ``{group}``, ``{metric}`` ... and ``{from_ms}``/``{to_ms}``, from 6 h before it opened to an hour
    after it resolved (or opened)."""
    end = alert.resolved_at or alert.opened_at
    values = {"deployment": alert.deployment, "algorithm": alert.algorithm, "group": alert.group,
              "metric": alert.metric, "type": alert.type,
              "from_ms": str(int((alert.opened_at.timestamp() - LINK_BEFORE) * 1000)),
              "to_ms": str(int((end.timestamp() + LINK_AFTER) * 1000))}
    encoded = {key: quote(values[key], safe="") for key in LINK_FIELDS}  # every placeholder a policy may use
    return replace(alert, runbook_url=alert.runbook_url.format_map(encoded),
                   dashboard_url=alert.dashboard_url.format_map(encoded))
