"""Stream: the live worker and the paths that feed the core from Kafka or files.

The faust app (thin agents), the batch processor it hands raw messages to, the offset ledger,
the sink executor that runs ClickHouse writes off the event loop, health and metrics endpoints,
topic creation, worker settings from the environment, and file replay (:mod:`fairwatch.stream.replay`).

The names below load on first use: the sink's child process and file replay import this package
and must not pay for faust.
"""

import importlib

_HOMES = {
    "create_app": "app", "BatchProcessor": "processor", "RawMessage": "processor", "ResidentJoins": "processor",
    "OffsetLedger": "offsets", "SinkExecutor": "write_executor", "WorkerSettings": "worker_settings",
    "SettingsError": "worker_settings", "WorkerMetrics": "worker_metrics", "ensure_topics": "topics",
    "TopicError": "topics",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
