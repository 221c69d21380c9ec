"""Audit: what auditors and operators read back.

Estimates for any past window (recomputed from stored counts with the core's math), their
snapshots, reports with figures (JSON, CSV, HTML, PDF), and the Grafana boards as code.
"""

from fairwatch.audit.boards import export, generate
from fairwatch.audit.estimates import metrics_document, window_metrics
from fairwatch.audit.grafana_push import PushError, push
from fairwatch.audit.report import EmptyWindow, Report, build_report
from fairwatch.audit.report_render import FORMATS, render
from fairwatch.audit.snapshots import write_differential_snapshots, write_snapshots
from fairwatch.audit.window import Window, WindowError, resolve_window

__all__ = [
    "Window", "WindowError", "resolve_window", "window_metrics", "metrics_document", "write_snapshots",
    "write_differential_snapshots", "Report", "EmptyWindow", "build_report", "FORMATS", "render", "generate",
    "export", "push", "PushError",
]
