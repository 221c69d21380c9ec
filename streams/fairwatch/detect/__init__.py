"""Detect: drift detectors, alerting policies, the detection cycle, incidents and their delivery.

Detectors are river-style objects (``update()`` then read ``drift_detected`` / ``statistic``);
the cycle reads stored counts, drives them, keeps one incident per condition and hands changed
incidents to delivery (Kafka alerts topic, Alertmanager, Grafana annotations).
"""

from fairwatch.detect.cycle import run_detection
from fairwatch.detect.delivery import AlertDelivery, delivery_from_env
from fairwatch.detect.detectors import (
    AdwinErrorDetector,
    Baseline,
    DisparityDetector,
    MixtureShiryaevRoberts,
    RateDriftDetector,
    ScoreMeanPageHinkley,
    threshold_for_budget,
)
from fairwatch.detect.evaluation import detect
from fairwatch.detect.incidents import Alert, IncidentTracker
from fairwatch.detect.policy import Policy, PolicyError, load_policies, load_policy
from fairwatch.detect.reads import read_alerts
from fairwatch.detect.streams import build_streams

__all__ = [
    "RateDriftDetector", "DisparityDetector", "MixtureShiryaevRoberts", "AdwinErrorDetector",
    "ScoreMeanPageHinkley", "Baseline", "threshold_for_budget", "Policy", "PolicyError", "load_policy",
    "load_policies", "Alert", "IncidentTracker", "build_streams", "detect", "run_detection", "read_alerts",
    "AlertDelivery", "delivery_from_env",
]
