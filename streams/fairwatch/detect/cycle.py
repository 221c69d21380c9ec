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
  every firing incident at each cycle, as its API expects of clients, with the values the store
  holds (one source of truth), and every resolution younger than the resend horizon, so one that
  a stopped worker never delivered still arrives.
* every stream's state at its last bucket (alarm, near its threshold, quiet, no recent evidence,
  or not tested for lack of baseline evidence: :mod:`fairwatch.detect.states`) is written to
  ``detector_state`` at every cycle, for the Overview board's "what is wrong now".

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
from dataclasses import replace
from datetime import datetime, timezone
from typing import Protocol, Sequence

from fairwatch.core.config import DAY_SECONDS, CoreConfig
from fairwatch.detect.coverage import PolicyMismatch, policy_coverage
from fairwatch.detect.delivery import RESEND_HORIZON
from fairwatch.detect.evaluation import alert_template, detect_with_states
from fairwatch.detect.incidents import ALERT_COLUMNS, Alert, utc
from fairwatch.detect.policy import Policy
from fairwatch.detect.reads import (
    baseline_period,
    read_alerts,
    read_backlog,
    read_cluster_moments,
    read_counts,
    read_score_tails,
)
from fairwatch.detect.states import STATE_COLUMNS, StreamState
from fairwatch.detect.streams import backlog_streams, build_streams
from fairwatch.store.clickhouse import Store

log = logging.getLogger(__name__)

__all__ = ["run_detection", "Delivery"]


class Delivery(Protocol):
    """Where changed incidents go besides the store (``fairwatch.detect.delivery.AlertDelivery``)."""

    def submit(self, changed: Sequence[Alert], standing: Sequence[Alert], *, taking_over: bool = False) -> None: ...


def bucket_of(seconds: float, bucket: int) -> int:
    """The start of the bucket (of ``bucket`` seconds) that holds ``seconds``."""
    return int(math.floor(seconds / bucket) * bucket)


def _overlaps(a: Alert, b: Alert) -> bool:
    far = datetime.max.replace(tzinfo=timezone.utc)
    return a.opened_at <= (b.resolved_at or far) and b.opened_at <= (a.resolved_at or far)


def _as_recorded(incident: Alert, record: Alert) -> Alert:
    """A firing incident re-sent with the numbers its record holds (they are those of its opening),
    so Alertmanager shows what ``fairwatch alerts`` shows; the detector's other details (its
    threshold, the policy's needs) are not stored and come from this cycle."""
    return replace(incident, opened_at=record.opened_at, estimate=record.estimate, low=record.low, high=record.high,
                   baseline=record.baseline, evidence={**incident.evidence, **record.evidence})


def _audit(store: Store, changed: list[Alert]) -> None:
    try:
        from fairwatch.store.auditlog import append_records
    except ImportError:  # the audit log is optional in a store without it
        return
    append_records(store, "alert", [a.to_record() for a in changed])


def run_detection(store: Store, config: CoreConfig, policies: dict[str, Policy] | Sequence[Policy],
                  delivery: Delivery | None = None, now: datetime | None = None, *,
                  taking_over: bool = False) -> list[Alert]:
    """One detection cycle over every policy; returns the incidents that changed (opened or
    resolved), after writing them to the ``alerts`` table (and the audit log) and handing them to
    ``delivery``. Idempotent: a second call with the same store and ``now`` changes nothing.
    ``taking_over``: the caller has just become the one that detects (see ``Delivery.submit``)."""
    now = now or datetime.now(timezone.utc)
    bucket = config.bucket_seconds
    changed: list[Alert] = []
    firing: list[Alert] = []
    resolved: list[Alert] = []  # on record, recently: re-sent until Alertmanager has surely seen them
    states: list[StreamState] = []
    for policy in (policies.values() if isinstance(policies, dict) else policies):
        started = time.monotonic()
        period = baseline_period(store, policy)
        if period is None:  # said every cycle: a policy that never matches must not pass unnoticed
            log.warning("detection %s: no verified outcome of deployment %r stored yet; nothing to detect",
                        policy.source, policy.deployment)
            continue
        try:  # what matches still runs; what does not is said every cycle
            policy_coverage(store, policy)
        except PolicyMismatch as exc:
            log.warning("detection %s; the rest of the policy runs", exc)
        base_start, base_end = (bucket_of(t.timestamp(), bucket) for t in period)
        horizon = bucket_of(now.timestamp() - policy.label_delay, bucket)
        day_start = bucket_of(now.timestamp() - policy.lookback, DAY_SECONDS)
        mon_start = max(base_end, day_start)
        if horizon <= mon_start:
            log.info("detection %s: the baseline ends at %s; monitoring starts after it", policy.source,
                     utc(base_end).isoformat())
            continue
        counts = read_counts(store, policy, utc(min(base_start, mon_start)), utc(horizon))
        scores = (read_score_tails(store, policy, config, utc(base_start), utc(base_end), utc(horizon))
                  if policy.score_quantile else [])
        clusters = read_cluster_moments(store, policy, utc(base_start), utc(base_end))
        streams = build_streams(policy, config, counts, scores, base_start, base_end, mon_start, horizon, clusters)
        streams += backlog_streams(policy, read_backlog(store, policy, mon_start, horizon, bucket))
        # the routing labels are the policy's, not stored: without them a resolution or a re-send
        # would be another alert to Alertmanager, and the one it holds would stay active
        stored = [replace(a, routing=policy.routing) for a in read_alerts(store, deployment=policy.deployment)]
        stored_open = [a for a in stored if a.state == "firing"]
        # an insufficient-evidence notice on record whose baseline now has enough (its stream is a
        # tested one): that condition has cleared, so the notice resolves now
        thin = {alert_template(s, policy).id for s in streams if s.type == "insufficient_evidence"}
        cleared = [a for a in stored_open if a.type == "insufficient_evidence" and a.id not in thin]
        stored_open = [a for a in stored_open if a not in cleared]
        changed += [replace(a, state="resolved", resolved_at=max(now, a.opened_at)) for a in cleared]
        computed, threshold, policy_states = detect_with_states(policy, config, streams, mon_start, stored_open)
        states += policy_states
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
                    firing.append(_as_recorded(incident, match))
                    continue
            elif incident.state == "firing":
                firing.append(incident)
            changed.append(incident)
            seen.add(incident.incident)
        # firing on record but no longer in the replayed history (e.g. late outcomes removed the
        # evidence): left firing, and re-sent, until its condition is seen to clear
        firing += [a for a in stored_open if a.incident not in seen]
        resolved += [a for a in stored if a.state == "resolved" and a.resolved_at >= now - RESEND_HORIZON]
        log.info("detection %s: %d streams, threshold 10^%.2f, %d changes in %.2fs", policy.deployment,
                 len(streams), math.log10(threshold), len(changed), time.monotonic() - started)
    firing = list({a.incident: a for a in firing}.values())
    version = time.time_ns()
    if changed:
        store.insert("alerts", ALERT_COLUMNS, [a.to_row(version) for a in changed])
        _audit(store, changed)
    if delivery is not None:
        # a resolution is not re-sent over a newer firing incident of the same alert (same labels)
        refiring = {a.id for a in firing}
        delivery.submit(changed, firing + [a for a in resolved if a.id not in refiring], taking_over=taking_over)
    if states:  # every stream, every cycle, for the boards' "now"; after delivery: paging comes first
        try:
            store.insert("detector_state", STATE_COLUMNS, [s.to_row(now, version) for s in states])
        except Exception as exc:  # the incidents are written and delivered; only the boards miss this cycle
            log.warning("detection: detector states not written (is the store migrated?): %s", exc)
    return changed
