"""Where every stream of a detection cycle stands at its last bucket: the ``detector_state`` table.

The Overview board reads it to answer "what is wrong now" beside the open incidents: a stream
whose detector statistic is near its alarm threshold, a stream that saw no comparison lately, and
a group that is not tested at all for lack of baseline evidence (never shown as fine). One
:class:`StreamState` per stream and cycle:

==================  ====================================================================
state               when
==================  ====================================================================
alarm               the detector alarmed at the last bucket (the label backlog: over
                    max_share)
near                ``log10 R >= log10 A - NEAR_DECADES``: within a factor
                    ``10^NEAR_DECADES`` of the alarm threshold ``A``
no_recent_evidence  tested, neither, and not one comparison in the trailing
                    ``resolve_after`` (``evidence_n == 0``): the detector saw nothing it
                    could alarm on lately, so "quiet" would claim what nobody looked at
quiet               tested, neither, with comparisons in the trailing ``resolve_after``
insufficient        not tested: the baseline has fewer than ``min_evidence`` comparisons
                    (the label backlog: fewer than ``min_matches`` matches counted)
==================  ====================================================================

What "near" costs when nothing drifts: ``R_t - t`` is a supermartingale from each restart
(:mod:`fairwatch.detect.detectors`), so at a look ``t`` buckets after it Markov's inequality gives
``P(R_t >= A / 10) <= 10 t / A``; with ``A = S x buckets_per_day / false_alarms_per_day`` the
expected number of a deployment's ``S`` streams shown near at a look is at most ``10 x
false_alarms_per_day x`` the days monitored (about 1 at the default budget 0.1 and a day's
lookback). A near stream is a reason to look, not evidence of drift.

A cycle that stops before its detectors run (no baseline yet, or the monitoring horizon not
reached: :func:`fairwatch.detect.cycle.run_detection`) writes no state, so the deployment's newest
rows stay those of an older cycle; the boards show their ``cycle_at`` and its age, and mark them
stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from fairwatch.detect.incidents import alert_id, utc
from fairwatch.detect.policy import Policy
from fairwatch.detect.streams import Stream

__all__ = ["StreamState", "NEAR_DECADES", "STATE_COLUMNS", "stream_states"]

NEAR_DECADES = 1.0
STATE_COLUMNS = ("deployment", "id", "algorithm", "mode", "type", "metric", "group_label", "detector", "severity",
                 "state", "statistic", "threshold", "evidence_n", "needed", "evaluated_at", "cycle_at", "version")


@dataclass(frozen=True)
class StreamState:
    """One stream at the end of its last monitored bucket (``evaluated_at``).

    ``statistic`` / ``threshold``: ``log10 R`` and ``log10 A`` for detector streams, the share
    and ``max_share`` for ``label_backlog``, None where nothing is tested. ``evidence_n``: the
    comparisons of the trailing ``resolve_after`` (disparity: the group's, in buckets where the
    reference has comparisons too; 0 makes a quiet stream ``no_recent_evidence``; insufficient:
    of the baseline; backlog: the matches counted); ``needed``: what a test needs
    (``min_evidence`` / ``min_matches``).
    """

    deployment: str
    id: str
    algorithm: str
    mode: str
    type: str
    metric: str
    group: str
    detector: str
    severity: str
    state: str
    statistic: float | None
    threshold: float | None
    evidence_n: float
    needed: float | None
    evaluated_at: datetime

    def to_row(self, cycle_at: datetime, version: int) -> tuple:
        """A row of the ``detector_state`` table (:data:`STATE_COLUMNS`)."""
        return (self.deployment, self.id, self.algorithm, self.mode, self.type, self.metric, self.group,
                self.detector, self.severity, self.state, self.statistic, self.threshold, float(self.evidence_n),
                self.needed, self.evaluated_at, cycle_at, version)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def stream_states(policy: Policy, streams: list[Stream], tested: list[Stream], alarms: np.ndarray | None,
                  log_stats: np.ndarray | None, threshold: float, mon_start: int, bucket: int) -> list[StreamState]:
    """The state of every stream at the last of its ``T`` monitored buckets; ``alarms`` and
    ``log_stats`` (``[T, len(tested)]``, natural log) as :func:`~fairwatch.detect.evaluation.run_detectors`
    returns them. Empty when no bucket is monitored.

    Examples
    --------
    >>> from fairwatch.detect.policy import parse_policy
    >>> policy = parse_policy("deployment: gate-a\\nattributes: [race]\\nbaseline: {duration: 1h}\\n")
    >>> thin = Stream("insufficient_evidence", "algo-v1", "verification", "race", "Black", "fmr", "baseline_count",
    ...               None, None, x=np.full(3, 120.0), n=np.full(3, 1000.0))
    >>> [(s.state, s.evidence_n, s.needed) for s in stream_states(policy, [thin], [], None, None, 1e6, 0, 60)]
    [('insufficient', 120.0, 1000.0)]

    A tested stream (``resolve_after`` an hour: 60 buckets) with comparisons in its first 10
    buckets only and a statistic far below ``A``: quiet while the trailing hour still holds the
    10th bucket, then without recent evidence.

    >>> def states(n):
    ...     rate = Stream("error_rate_drift", "algo-v1", "verification", "race", "White", "fmr", "sr_band", 0.01,
    ...                   0.02, x=np.zeros(len(n)), n=n)
    ...     T = len(n)
    ...     found = stream_states(policy, [rate], [rate], np.zeros((T, 1), bool), np.full((T, 1), np.log(5.0)),
    ...                           1e6, 0, 60)
    ...     return [(s.state, s.evidence_n) for s in found]
    >>> states(np.r_[np.full(10, 500.0), np.zeros(59)]), states(np.r_[np.full(10, 500.0), np.zeros(60)])
    ([('quiet', 500.0)], [('no_recent_evidence', 0.0)])
    """
    T = len(streams[0].x) if streams else 0
    if not T:
        return []
    t = T - 1
    width = max(1, math.ceil(policy.resolve_after / bucket)) if policy.resolve_after else 1
    log10_threshold = math.log10(threshold)
    index = {id(s): i for i, s in enumerate(tested)}
    at = utc(mon_start + T * bucket)
    found = []
    for stream in streams:
        statistic = limit = needed = None
        if stream.type == "insufficient_evidence":  # its x / n hold the baseline's comparisons and the need
            state, n, needed = "insufficient", float(stream.x[t]), float(stream.n[t])
        elif stream.type == "label_backlog":
            spec = policy.label_backlog
            unverified, n, limit = float(stream.x[t]), float(stream.n[t]), spec.max_share
            needed = float(spec.min_matches)
            statistic = unverified / n if n > 0 else None
            state = ("insufficient" if n < spec.min_matches else
                     "alarm" if unverified > spec.max_share * n else "quiet")
        else:
            i = index[id(stream)]
            statistic, limit = _finite(log_stats[t, i] / math.log(10)), log10_threshold
            trailing = slice(max(0, t - width + 1), t + 1)
            used = stream.n[trailing]
            if stream.type == "disparity_breach":  # a bucket without reference comparisons tells it nothing
                used = np.where(stream.n_ref[trailing] > 0, used, 0.0)
            n = float(used.sum())
            # a stream without one comparison in the trailing resolve_after is not known to be quiet
            state = ("alarm" if alarms[t, i] else
                     "near" if statistic is not None and statistic >= limit - NEAR_DECADES else
                     "no_recent_evidence" if n == 0 else "quiet")
        found.append(StreamState(
            policy.deployment, alert_id(policy.deployment, stream.algorithm, stream.type, stream.alert_metric,
                                        stream.group_text),
            stream.algorithm, stream.mode, stream.type, stream.alert_metric, stream.group_text, stream.detector,
            policy.severity[stream.type], state, statistic, limit, n, needed, at))
    return found
