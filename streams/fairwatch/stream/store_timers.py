"""The worker's periodic work against the store, off the event loop: estimate snapshots and the
detection cycle (by the owner of input partition 0 only: one writer is enough), and every worker's
own health samples for the pipeline board."""

from __future__ import annotations

import asyncio
import atexit
import logging
import socket
from datetime import datetime, timezone
from typing import Callable

import faust

from fairwatch.audit.snapshots import write_differential_snapshots, write_snapshots
from fairwatch.contracts.topics import MATCH_EVENTS
from fairwatch.detect.cycle import run_detection
from fairwatch.detect.delivery import delivery_from_env
from fairwatch.store.clickhouse import open_store
from fairwatch.stream.health import health_rows, write_health
from fairwatch.stream.worker_metrics import WorkerMetrics
from fairwatch.stream.worker_settings import WorkerSettings

log = logging.getLogger("fairwatch.worker")


class LazyStore:
    """A store opened on first use, in the executor thread that uses it, and reopened after a failure."""

    def __init__(self, url: str):
        self.url = url
        self._store = None

    def run(self, work):
        if self._store is None:
            self._store = open_store(self.url)
        try:
            return work(self._store)
        except Exception:  # the connection may be the broken part: the next call opens a new one
            self._store = None
            raise


def register_store_timers(app: faust.App, settings: WorkerSettings, policies: dict | None, metrics: WorkerMetrics,
                          count_sink_failures: Callable[[], None]) -> None:
    """Add the timers to the worker; ``policies`` (deployment -> policy) switch on detection."""

    def owns_partition_0() -> bool:
        # one writer of snapshots and alerts is enough: the worker that owns partition 0 of match-events
        assigned = app.consumer.assignment() if app.consumer else set()
        return any(tp.topic == settings.topic(MATCH_EVENTS) and tp.partition == 0 for tp in assigned)

    @app.timer(settings.snapshot_seconds)
    async def snapshot_estimates():
        if not owns_partition_0():
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_snapshots_now)
        except Exception as exc:  # a missed snapshot is retried at the next tick
            log.warning("estimate snapshot failed: %s", exc)

    snapshot_store = LazyStore(settings.clickhouse)  # its own connection: the sink's runs in another thread

    def write_snapshots_now() -> None:
        def write(store) -> None:
            now = datetime.now(timezone.utc).replace(microsecond=0)  # one instant for both tables
            write_snapshots(store, settings.core, now=now)
            write_differential_snapshots(store, settings.core, now=now)
        snapshot_store.run(write)

    # "detecting": this worker owned partition 0 at its last successful cycle. One that has just taken
    # detection over re-sends the standing incidents to the alerts topic: the previous owner may have
    # written a change and died (kill -9, a lost host) before its delivery thread sent it.
    detection: dict[str, object] = {"store": LazyStore(settings.clickhouse), "detecting": False}

    if policies:
        @app.timer(settings.detect_seconds)
        async def detect_drift():
            if not owns_partition_0():
                detection["detecting"] = False
                return
            try:
                taking_over = not detection["detecting"]
                changed = await asyncio.get_running_loop().run_in_executor(None, detect_now, taking_over)
                detection["detecting"] = True
                metrics.alerts_changed.inc(len(changed))
            except Exception as exc:  # the next cycle rebuilds everything from the store
                log.warning("detection cycle failed: %s", exc)

    def detect_now(taking_over: bool = False):
        if "delivery" not in detection:  # Kafka alerts topic, Alertmanager, Grafana: background threads
            detection["delivery"] = delivery = delivery_from_env()
            if delivery is not None:  # on shutdown, give queued deliveries a last chance
                atexit.register(delivery.close)
        return detection["store"].run(lambda store: run_detection(
            store, settings.core, policies, detection["delivery"], taking_over=taking_over))

    health_samples: dict[str, object] = {"previous": None}
    health_store = LazyStore(settings.clickhouse)
    worker_name = f"{socket.gethostname()}:{settings.web_port}"

    @app.timer(15.0)
    async def record_health():
        # every worker writes its own pipeline-health samples (lag, joins, sink) for the dashboards
        count_sink_failures()  # attempts still failing (a write being retried) count already
        rows = health_rows(metrics.registry, worker_name, previous=health_samples["previous"])
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_health_now, rows)
            health_samples["previous"] = rows
        except Exception as exc:  # a missed sample is only a gap on a dashboard
            log.info("health sample not written: %s", exc)

    def write_health_now(rows) -> None:
        health_store.run(lambda store: write_health(store, rows))
