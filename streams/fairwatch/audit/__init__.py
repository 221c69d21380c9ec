"""Audit: what auditors and operators read back.

Estimates for any past window (recomputed from stored counts with the core's math), their
snapshots, reports with figures (JSON, CSV, HTML, PDF), and the Grafana boards as code.
"""
