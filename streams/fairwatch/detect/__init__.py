"""Detect: drift detectors, alerting policies, the detection cycle, incidents and their delivery.

Detectors are river-style objects (``update()`` then read ``drift_detected`` / ``statistic``);
the cycle reads stored counts, drives them, keeps one incident per condition and hands changed
incidents to delivery (Kafka alerts topic, Alertmanager, Grafana annotations).
"""
