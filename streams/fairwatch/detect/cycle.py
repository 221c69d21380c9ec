"""The detection cycle: read counts from the store, run the detectors, keep incidents, deliver.

:func:`run_detection` is called by the live worker on a timer and by ``fairwatch replay`` once
after loading. It holds no state between calls: each cycle rebuilds every detector from the
stored history (``group_counts`` bucket counts and ``match_events`` scores, from a day boundary
``lookback`` back, never before the end of the baseline period) and replays the incident
lifecycle over it, then reconciles with the incidents already in the ``alerts`` table:

* an incident the history shows that overlaps a stored one with the same id *is* that incident
  (its ``opened_at`` is kept), so a rerun after a crash, a restart or late outcomes that move an
  alarm by a bucket neither duplicates nor loses it;
* stored incidents still firing when they fall out of the lookback are carried into the replay
  as open, so they resolve by the same rule;
* only changes (a new incident, a resolution) are written and delivered; Alertmanager is sent
  every firing incident at each cycle, as its API expects of clients.

Streams per policy (deployment) and algorithm x mode x watched group:

=====================  =====================================================================
error_rate_drift       fmr / fnmr of the group leaves its baseline band (verified outcomes)
disparity_breach       the group's rate exceeds policy_ratio x the reference group's
score_drift            share of non-match scores above the baseline quantile rises (no labels)
insufficient_evidence  the baseline period has fewer than min_evidence comparisons: not tested
label_backlog          (per algorithm, group ``*``) too many returned matches still unverified
                       ``label_backlog.after`` after they occurred (a policy limit, no detector)
=====================  =====================================================================

The tests run on the *verified* comparisons unweighted: with a verification design that does not
change (inclusion probabilities fixed per decision), the verified error share is an increasing
function of the true rate, so a band on it is a band on the rate, and the binomial likelihood
ratios are exact. Values shown in alerts are the weighted (Horvitz-Thompson) estimates.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol, Sequence

import numpy as np

from fairwatch.core.config import DAY_SECONDS, CoreConfig
from fairwatch.core.estimates import RateEstimator
from fairwatch.core.intervals import clopper_pearson
from fairwatch.core.layout import COLUMNS, GENUINE, IMPOSTOR
from fairwatch.detect.detectors import (
    DEFAULT_GRID,
    Baseline,
    MixtureShiryaevRoberts,
    disparity_log_lr,
    rate_log_lr,
    threshold_for_budget,
)
from fairwatch.detect.incidents import ALERT_COLUMNS, Alert, IncidentTracker, alert_id
from fairwatch.detect.policy import Policy
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import bucket_counts, first_bucket
from fairwatch.store.sink import group_expansion_sql

log = logging.getLogger(__name__)

__all__ = ["run_detection", "read_alerts", "read_backlog", "Delivery"]

_METRIC_NAMES = {("verification", "fmr"): "fmr", ("verification", "fnmr"): "fnmr",
                 ("identification", "fmr"): "fpir", ("identification", "fnmr"): "fnir"}
_BLOCK = {"fmr": IMPOSTOR, "fnmr": GENUINE}


class Delivery(Protocol):
    """Where changed incidents go besides the store (``fairwatch.detect.delivery.AlertDelivery``)."""

    def submit(self, changed: Sequence[Alert], firing: Sequence[Alert]) -> None: ...


@dataclass
class _Stream:
    type: str
    algorithm: str
    mode: str
    attribute: str
    group: str
    metric: str  # fmr | fnmr, or "score"
    detector: str
    baseline_rate: float | None
    edge: float | None  # null edge on the tested scale (rate streams)
    x: np.ndarray | None = None  # tested counts per monitored bucket
    n: np.ndarray | None = None
    x_ref: np.ndarray | None = None  # disparity: the reference group's
    n_ref: np.ndarray | None = None
    weighted: np.ndarray | None = None  # float[T, 6] weighted sums for the values shown
    ratio: float | None = None

    @property
    def group_text(self) -> str:
        return "*" if self.attribute == "*" else f"{self.attribute}={self.group}"

    @property
    def alert_metric(self) -> str:
        if self.metric in ("score", "label_backlog"):
            return self.metric
        return _METRIC_NAMES[self.mode, self.metric]


def _bucket_of(seconds: float, bucket: int) -> int:
    return int(math.floor(seconds / bucket) * bucket)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _baseline_period(store: Store, policy: Policy) -> tuple[datetime, datetime] | None:
    if policy.baseline_from is not None:
        return policy.baseline_from, policy.baseline_to
    _, start = first_bucket(store, policy.deployment)
    if start is None and policy.label_backlog is not None:
        # no outcome counted yet: the worst backlog of all, so the data starts with the first match
        rows = store.query("SELECT count(), min(occurred_at) FROM match_events WHERE deployment = %(d)s",
                           {"d": policy.deployment})
        start = rows[0][1] if rows and rows[0][0] else None
    if start is None:
        return None
    return start, _utc(start.timestamp() + policy.baseline_seconds)


def _read_counts(store: Store, policy: Policy, start: datetime, end: datetime) -> list[tuple]:
    return bucket_counts(store, policy.deployment, start, end, policy.attribute_sets, policy.algorithms)


def _read_scores(store: Store, policy: Policy, config: CoreConfig, start: datetime, base_end: datetime,
                 end: datetime) -> list[tuple]:
    """Per (algorithm, mode, attribute, group, bucket): non-match decisions and those above the
    baseline's ``score_quantile`` of non-match scores (one cutoff per algorithm x mode)."""
    params: dict[str, Any] = {"d": policy.deployment, "start": start, "base_end": base_end, "end": end,
                              "q": policy.score_quantile}
    cutoffs = store.query(
        "SELECT algorithm, toString(mode), quantileExact(%(q)s)(score) FROM match_events FINAL"
        " WHERE deployment = %(d)s AND decision = 'non_match' AND occurred_at >= %(start)s AND occurred_at < %(base_end)s"
        " GROUP BY algorithm, mode", params)
    rows = []
    expansion = group_expansion_sql(policy.intersections)
    bucket = config.bucket_seconds
    for algorithm, mode, cutoff in cutoffs:
        if policy.algorithms and algorithm not in policy.algorithms:
            continue
        rows += [(algorithm, mode, *row) for row in store.query(
            f"SELECT tupleElement(pair, 1) AS attribute, tupleElement(pair, 2) AS group_label,"
            f" intDiv(toUInt32(occurred_at), {bucket}) * {bucket} AS b, count(), toFloat64(sum(score > %(cutoff)s))"
            f" FROM match_events FINAL ARRAY JOIN {expansion} AS pair"
            " WHERE deployment = %(d)s AND algorithm = %(a)s AND toString(mode) = %(m)s AND decision = 'non_match'"
            " AND occurred_at >= %(start)s AND occurred_at < %(end)s AND attribute IN %(sets)s"
            " GROUP BY attribute, group_label, b",
            {**params, "a": algorithm, "m": mode, "cutoff": float(cutoff), "sets": policy.attribute_sets})]
    return rows


def read_backlog(store: Store, policy: Policy, mon_start: int, horizon: int, bucket: int) -> dict[str, np.ndarray]:
    """Label backlog at each monitored bucket end ``t = mon_start + (k + 1) * bucket`` (``k < T``),
    per algorithm: ``int[2, T]`` of (matches unverified at ``t``, matches counted), where a match
    (decision ``match``) is counted when ``t - lookback <= occurred_at <= t - after`` and is
    unverified when none of its outcomes has ``verified_at <= t`` (event times: a replay agrees).

    One query: each match gives the first and last ``k`` at which it is counted and the first at
    which it is verified; the store sums +1/-1 steps at those indexes (clamped to ``[0, T]``) and
    the running sums here are the per-bucket counts, so the cost is one pass over the window's
    matches and their outcomes, whatever ``after`` and ``lookback`` are."""
    spec = policy.label_backlog
    T = max(0, (horizon - mon_start) // bucket)
    if spec is None or T == 0:
        return {}
    params: dict[str, Any] = {
        "d": policy.deployment, "m0": mon_start, "b": bucket, "T": T, "after": spec.after,
        "lookback": policy.lookback, "o_from": _utc(mon_start + bucket - policy.lookback),
        "o_to": _utc(horizon - spec.after), "v_to": _utc(horizon)}
    matches = ["deployment = %(d)s", "decision = 'match'", "occurred_at >= %(o_from)s", "occurred_at <= %(o_to)s"]
    if policy.algorithms:
        matches.append("algorithm IN %(algorithms)s")
        params["algorithms"] = policy.algorithms
    where = " AND ".join(matches)
    clamp = "greatest(toInt64(0), least(toInt64(%(T)s), {}))"
    # index of the first bucket end at or after x seconds: ceil((x - m0) / b) - 1 (exact in Float64)
    first_at = "toInt64(ceil((toInt64(toUInt32({})) + {} - %(m0)s) / %(b)s)) - 1"
    rows = store.query(
        "SELECT algorithm, tupleElement(step, 1) AS k, sum(tupleElement(step, 2)), sum(tupleElement(step, 3))"
        " FROM (SELECT algorithm, arrayJoin(["
        f"  ({clamp.format('first_in')}, toInt64(1), toInt64(1)),"
        f"  ({clamp.format('last_in + 1')}, toInt64(-1), toInt64(0)),"
        f"  ({clamp.format('greatest(first_in, least(last_in + 1, verified_in))')}, toInt64(0), toInt64(-1))]) AS step"
        f" FROM (SELECT algorithm, {first_at.format('occurred_at', '%(after)s')} AS first_in,"
        "  toInt64(floor((toInt64(toUInt32(occurred_at)) + %(lookback)s - %(m0)s) / %(b)s)) - 1 AS last_in,"
        f"  if(verified = 1, {first_at.format('first_verified', '0')}, toInt64(%(T)s)) AS verified_in"
        f"  FROM match_events FINAL ANY LEFT JOIN"
        "   (SELECT event_id, min(verified_at) AS first_verified, toUInt8(1) AS verified FROM verified_outcomes"
        f"    WHERE verified_at <= %(v_to)s AND event_id IN (SELECT event_id FROM match_events WHERE {where})"
        "    GROUP BY event_id) AS outcomes USING event_id"
        f"  WHERE {where}))"
        " GROUP BY algorithm, k", params)
    steps: dict[str, np.ndarray] = {}
    for algorithm, k, d_counted, d_unverified in rows:
        steps.setdefault(algorithm, np.zeros((2, T + 1), np.int64))[:, int(k)] += (int(d_unverified), int(d_counted))
    return {algorithm: np.cumsum(step, axis=1)[:, :T] for algorithm, step in steps.items()}


def backlog_streams(policy: Policy, backlog: dict[str, np.ndarray]) -> list[_Stream]:
    """One ``label_backlog`` stream per algorithm; ``baseline`` holds the policy's ``max_share``."""
    return [_Stream("label_backlog", algorithm, "", "*", "*", "label_backlog", "backlog_share",
                    policy.label_backlog.max_share, None, x=counts[0].astype(float), n=counts[1].astype(float))
            for algorithm, counts in sorted(backlog.items())]


def _trailing(values: np.ndarray, width: int) -> np.ndarray:
    """Sums over the last ``width`` steps (inclusive) along axis 0."""
    c = np.cumsum(values, axis=0)
    out = c.copy()
    out[width:] -= c[:-width]
    return out


def build_streams(policy: Policy, config: CoreConfig, counts: list[tuple], scores: list[tuple],
                  base_start: int, base_end: int, mon_start: int, mon_end: int) -> list[_Stream]:
    """Every stream of one policy with its baseline and its monitored counts (float[T])."""
    bucket = config.bucket_seconds
    T = max(0, (mon_end - mon_start) // bucket)
    baseline: dict[tuple, np.ndarray] = {}
    series: dict[tuple, np.ndarray] = {}
    for algorithm, mode, attribute, group, b, *values in counts:
        key = (algorithm, mode, attribute, group)
        row = np.asarray(values, float)
        if base_start <= b < base_end:
            baseline[key] = baseline.get(key, 0) + row
        if mon_start <= b < mon_end:
            series.setdefault(key, np.zeros((T, len(COLUMNS))))[(b - mon_start) // bucket] += row
    streams: list[_Stream] = []
    keys = sorted(set(baseline) | set(series))
    by_set: dict[tuple, list[tuple]] = {}
    for key in keys:
        by_set.setdefault(key[:3], []).append(key)
    for (algorithm, mode, attribute), members in sorted(by_set.items()):
        for metric in policy.metrics:
            block = _BLOCK[metric]
            n_col, x_col = block.start, block.start + 1
            rates = {}
            for key in members:
                base = baseline.get(key, np.zeros(len(COLUMNS)))
                group = key[3]
                n_b, x_b = base[n_col], base[x_col]
                weighted_rate = base[block][3] / base[block][2] if base[block][2] > 0 else None
                mon = series.get(key, np.zeros((T, len(COLUMNS))))
                if n_b < policy.min_evidence:
                    streams.append(_Stream("insufficient_evidence", algorithm, mode, attribute, group, metric,
                                           "baseline_count", weighted_rate, None, weighted=mon[:, block],
                                           x=np.full(T, n_b), n=np.full(T, float(policy.min_evidence))))
                    continue
                rates[group] = (x_b / n_b, weighted_rate)
                edge = Baseline.from_counts(x_b, n_b, policy.band, policy.baseline_confidence).edge
                streams.append(_Stream("error_rate_drift", algorithm, mode, attribute, group, metric, "sr_band",
                                       weighted_rate, edge, x=mon[:, x_col], n=mon[:, n_col], weighted=mon[:, block]))
            if policy.policy_ratio is None or len(rates) < 2:
                continue
            reference = policy.reference.get(attribute) or min(rates, key=lambda g: (rates[g][0], g))
            if reference not in rates:
                continue
            ref = series.get((algorithm, mode, attribute, reference), np.zeros((T, len(COLUMNS))))
            for group in sorted(rates):
                if group == reference:
                    continue
                mon = series.get((algorithm, mode, attribute, group), np.zeros((T, len(COLUMNS))))
                streams.append(_Stream("disparity_breach", algorithm, mode, attribute, group, metric,
                                       f"sr_disparity:{reference}", rates[reference][1], None, x=mon[:, x_col],
                                       n=mon[:, n_col], x_ref=ref[:, x_col], n_ref=ref[:, n_col],
                                       weighted=mon[:, block], ratio=policy.policy_ratio))
    # label-free: non-match score tail
    tail_base: dict[tuple, np.ndarray] = {}
    tail: dict[tuple, np.ndarray] = {}
    for algorithm, mode, attribute, group, b, n, x in scores:
        key = (algorithm, mode, attribute, group)
        if base_start <= b < base_end:
            tail_base[key] = tail_base.get(key, 0) + np.array([x, n], float)
        if mon_start <= b < mon_end:
            tail.setdefault(key, np.zeros((T, 2)))[(b - mon_start) // bucket] += (x, n)
    for key in sorted(tail_base):
        x_b, n_b = tail_base[key]
        if n_b < policy.min_evidence:
            continue
        mon = tail.get(key, np.zeros((T, 2)))
        edge = Baseline.from_counts(x_b, n_b, policy.band, policy.baseline_confidence).edge
        streams.append(_Stream("score_drift", *key, "score", "sr_score_tail", x_b / n_b, edge, x=mon[:, 0],
                               n=mon[:, 1]))
    return streams


def _log_lr(stream: _Stream) -> np.ndarray:
    if stream.type == "disparity_breach":
        return disparity_log_lr(stream.x, stream.n, stream.x_ref, stream.n_ref, stream.ratio, DEFAULT_GRID)
    return rate_log_lr(stream.x, stream.n, stream.edge, DEFAULT_GRID)


def _clear(stream: _Stream, width: int) -> np.ndarray:
    """Resolution criterion per bucket: the last ``width`` buckets' verified rate is back within the
    null (point estimate), and they hold data."""
    x, n = _trailing(stream.x, width), _trailing(stream.n, width)
    with np.errstate(divide="ignore", invalid="ignore"):
        if stream.type == "disparity_breach":
            xr, nr = _trailing(stream.x_ref, width), _trailing(stream.n_ref, width)
            return (n > 0) & (nr > 0) & (x / n <= stream.ratio * xr / np.maximum(nr, 1e-300))
        return (n > 0) & (x / n <= stream.edge)


def _value(stream: _Stream, t: int, width: int, estimator: RateEstimator) -> tuple:
    if stream.weighted is None:  # score tail: the unweighted share above the cutoff
        x, n = stream.x[max(0, t - width + 1): t + 1].sum(), stream.n[max(0, t - width + 1): t + 1].sum()
        block = np.array([[n, x, n, x, n, x]])
    else:
        block = stream.weighted[max(0, t - width + 1): t + 1].sum(axis=0, keepdims=True)
    [estimate] = estimator.estimate(block, None)
    return estimate.rate, estimate.low, estimate.high, estimate.n


def _template(stream: _Stream, policy: Policy) -> Alert:
    return Alert(
        id=alert_id(policy.deployment, stream.algorithm, stream.type, stream.alert_metric, stream.group_text),
        type=stream.type, severity=policy.severity[stream.type], deployment=policy.deployment,
        algorithm=stream.algorithm, group=stream.group_text, metric=stream.alert_metric, estimate=None, low=None,
        high=None, baseline=stream.baseline_rate, detector=stream.detector, evidence={"n": 0}, state="firing",
        opened_at=_utc(0), resolved_at=None, runbook_url=policy.runbook_url, dashboard_url=policy.dashboard_url,
        routing=policy.routing,
    )


def detect(policy: Policy, config: CoreConfig, streams: list[_Stream], mon_start: int, stored_open: list[Alert]):
    """Replay the detectors and the incident lifecycle over the monitored buckets.

    Returns ``(incidents, threshold)``: every incident seen (latest state per ``(id, opened_at)``)."""
    bucket = config.bucket_seconds
    tested = [s for s in streams if s.type not in ("insufficient_evidence", "label_backlog")]
    threshold = threshold_for_budget(max(1, len(tested)), DAY_SECONDS / bucket, policy.false_alarms_per_day)
    T = len(streams[0].x) if streams else 0
    width = max(1, math.ceil(policy.resolve_after / bucket)) if policy.resolve_after else 1
    tracker = IncidentTracker(policy.resolve_after)
    # stored firing incidents rejoin the replay when it reaches their opened_at: an alarm then
    # updates them (same incident) and a clear spell resolves them
    waiting = sorted(stored_open, key=lambda a: a.opened_at)
    estimator = RateEstimator(CoreConfig(bucket_seconds=bucket, confidence=config.confidence))
    incidents: dict[tuple[str, datetime], Alert] = {}
    templates = [_template(s, policy) for s in streams]
    if tested and T:
        log_lr = np.stack([_log_lr(s) for s in tested], axis=1)  # [T, S, K]
        alarms, log_stats = MixtureShiryaevRoberts(len(tested), math.log(threshold),
                                                   n_alternatives=len(DEFAULT_GRID)).run(log_lr)
        clear = np.stack([_clear(s, width) for s in tested], axis=1)
    index = {id(s): i for i, s in enumerate(tested)}
    for t in range(T):
        at = _utc(mon_start + (t + 1) * bucket)  # the end of the bucket: when its evidence is complete
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
                alarm, is_clear, stat = (t == 0), False, None
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
            elif alarm:
                estimate, low, high, n = _value(stream, t, width, estimator)
                evidence = {"n": float(n), "e_value": None,
                            "statistic": None if stat is None else round(stat / math.log(10), 6),
                            "threshold": round(math.log10(threshold), 6)}
                template = replace(template, estimate=estimate, low=low, high=high, evidence=evidence)
            for transition in tracker.observe(template, at, alarm, is_clear):
                incidents[transition.alert.incident] = transition.alert
    tracker.restore(waiting)
    for still_open in tracker.open.values():
        incidents.setdefault(still_open.alert.incident, still_open.alert)
    return list(incidents.values()), threshold


def read_alerts(store: Store, start: datetime | None = None, end: datetime | None = None, state: str = "all",
                deployment: str | None = None) -> list[Alert]:
    """Incidents (latest version of each) open at some time in ``[start, end)``, newest first."""
    conditions, params = ["1"], {}
    if end is not None:
        conditions.append("opened_at < %(end)s")
        params["end"] = end
    if start is not None:
        conditions.append("(resolved_at IS NULL OR resolved_at >= %(start)s)")
        params["start"] = start
    if state != "all":
        conditions.append("toString(state) = %(state)s")
        params["state"] = state
    if deployment:
        conditions.append("deployment = %(deployment)s")
        params["deployment"] = deployment
    columns = ", ".join(f"toString({c})" if c in ("type", "severity", "state") else c for c in ALERT_COLUMNS)
    rows = store.query(f"SELECT {columns} FROM alerts FINAL WHERE {' AND '.join(conditions)}"
                       " ORDER BY opened_at DESC, id", params)
    return [Alert.from_row(row) for row in rows]


def _overlaps(a: Alert, b: Alert) -> bool:
    far = datetime.max.replace(tzinfo=timezone.utc)
    return a.opened_at <= (b.resolved_at or far) and b.opened_at <= (a.resolved_at or far)


def _audit(store: Store, changed: list[Alert]) -> None:
    try:
        from fairwatch.store.auditlog import append_records
    except ImportError:  # the audit log is optional in a store without it
        return
    append_records(store, "alert", [a.to_record() for a in changed])


def run_detection(store: Store, config: CoreConfig, policies: dict[str, Policy] | Sequence[Policy],
                  delivery: Delivery | None = None, now: datetime | None = None) -> list[Alert]:
    """One detection cycle over every policy; returns the incidents that changed (opened or
    resolved), after writing them to the ``alerts`` table (and the audit log) and handing them to
    ``delivery``. Idempotent: a second call with the same store and ``now`` changes nothing."""
    now = now or datetime.now(timezone.utc)
    bucket = config.bucket_seconds
    changed: list[Alert] = []
    firing: list[Alert] = []
    for policy in (policies.values() if isinstance(policies, dict) else policies):
        started = time.monotonic()
        period = _baseline_period(store, policy)
        if period is None:
            continue
        base_start, base_end = (_bucket_of(t.timestamp(), bucket) for t in period)
        horizon = _bucket_of(now.timestamp() - policy.label_delay, bucket)
        day_start = _bucket_of(now.timestamp() - policy.lookback, DAY_SECONDS)
        mon_start = max(base_end, day_start)
        if horizon <= mon_start:
            continue
        counts = _read_counts(store, policy, _utc(min(base_start, mon_start)), _utc(horizon))
        scores = (_read_scores(store, policy, config, _utc(base_start), _utc(base_end), _utc(horizon))
                  if policy.score_quantile else [])
        streams = build_streams(policy, config, counts, scores, base_start, base_end, mon_start, horizon)
        streams += backlog_streams(policy, read_backlog(store, policy, mon_start, horizon, bucket))
        stored = read_alerts(store, deployment=policy.deployment)
        stored_open = [a for a in stored if a.state == "firing"]
        # an insufficient-evidence notice on record whose baseline now has enough (its stream is a
        # tested one): that condition has cleared, so the notice resolves now
        thin = {_template(s, policy).id for s in streams if s.type == "insufficient_evidence"}
        cleared = [a for a in stored_open if a.type == "insufficient_evidence" and a.id not in thin]
        stored_open = [a for a in stored_open if a not in cleared]
        changed += [replace(a, state="resolved", resolved_at=max(now, a.opened_at)) for a in cleared]
        computed, threshold = detect(policy, config, streams, mon_start, stored_open)
        by_id: dict[str, list[Alert]] = {}
        for a in stored:
            by_id.setdefault(a.id, []).append(a)
        seen: set[tuple[str, datetime]] = set()
        for incident in sorted(computed, key=lambda a: (a.id, a.opened_at)):
            match = next((s for s in by_id.get(incident.id, []) if _overlaps(s, incident)), None)
            if match is not None:
                seen.add(match.incident)
                if match.state == "resolved":
                    continue  # a resolution on record is final
                incident = replace(incident, opened_at=match.opened_at)
                if incident.state == "firing":
                    firing.append(incident)
                    continue
            elif incident.state == "firing":
                firing.append(incident)
            changed.append(incident)
            seen.add(incident.incident)
        # firing on record but no longer in the replayed history (e.g. late outcomes removed the
        # evidence): left firing, and re-sent, until its condition is seen to clear
        firing += [a for a in stored_open if a.incident not in seen]
        log.info("detection %s: %d streams, threshold 10^%.2f, %d changes in %.2fs", policy.deployment,
                 len(streams), math.log10(threshold), len(changed), time.monotonic() - started)
    firing = list({a.incident: a for a in firing}.values())
    if changed:
        version = time.time_ns()
        store.insert("alerts", ALERT_COLUMNS, [a.to_row(version) for a in changed])
        _audit(store, changed)
    if delivery is not None:
        delivery.submit(changed, firing)
    return changed
