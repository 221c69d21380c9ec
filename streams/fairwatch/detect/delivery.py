"""Delivery of incidents: the alerts topic, Alertmanager (API v2) and Grafana annotations.

The ``alerts`` table is written by the detection cycle itself (it is the record the next cycle
reconciles with); everything else goes through :class:`AlertDelivery`: one bounded queue and one
background thread per destination, retries with exponential backoff, and ``submit`` never waits.
When a queue is full the oldest message is dropped and counted (``dropped``): a slow or dead
destination can lose messages but never stall the pipeline. Alertmanager is sent every firing
incident at every cycle anyway, so what it misses is repaired at the next one.

Alertmanager conventions: ``alertname`` (``FairwatchErrorRateDrift``, ...), identifying labels
``deployment``, ``algorithm``, ``group``, ``metric``, ``type``, ``severity`` plus the policy's
routing labels; ``summary``, ``description``, ``runbook_url`` and ``dashboard_url`` as
annotations; ``startsAt`` is when the incident opened, ``endsAt`` is in the future while it fires
(``resend_horizon`` ahead, so an incident whose sender died resolves by itself) and is the
resolution time once resolved.

One source of truth: what Alertmanager is sent is the incident as the ``alerts`` table holds it
(the cycle re-sends the stored record, not a recomputation with newer evidence), and each cycle
re-sends the resolutions younger than the resend horizon, so a resolution a stopped worker never
delivered reaches Alertmanager from the next cycle of any worker.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import httpx

from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.contracts.topics import ALERTS, DEFAULT_PREFIX
from fairwatch.detect.incidents import Alert
from fairwatch.store.clickhouse import without_passwords

log = logging.getLogger(__name__)

# how far ahead a firing alert's endsAt is set, and so how long a resolution is worth re-sending:
# after it, Alertmanager has resolved the alert by itself
RESEND_HORIZON = timedelta(hours=1)

__all__ = ["AlertDelivery", "KafkaAlertSink", "AlertmanagerSink", "GrafanaAnnotationSink", "alertmanager_payload",
           "delivery_from_env", "alertmanager_client", "AlertmanagerLinkError", "RESEND_HORIZON"]


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def alertname(alert: Alert) -> str:
    """``error_rate_drift`` -> ``FairwatchErrorRateDrift``."""
    return "Fairwatch" + "".join(part.capitalize() for part in alert.type.split("_"))


def _summary(alert: Alert) -> str:
    value = "n/a" if alert.estimate is None else f"{alert.estimate:.4g} [{alert.low:.4g}, {alert.high:.4g}]"
    baseline = "n/a" if alert.baseline is None else f"{alert.baseline:.4g}"
    return (f"{alert.metric.upper()} {alert.type.replace('_', ' ')} for {alert.group} on "
            f"{alert.deployment}/{alert.algorithm}: {value}, baseline {baseline}")


METRIC_WORDS = {
    "fmr": "false match rate (FMR)", "fnmr": "false non-match rate (FNMR)",
    "fpir": "false positive identification rate (FPIR)", "fnir": "false negative identification rate (FNIR)",
    "score": "share of non-match scores above the baseline's upper quantile",
    "label_backlog": "share of returned matches still without a verified outcome",
}


def describe(alert: Alert) -> str:
    """What an on-call person needs, in plain words: what changed, for whom, how sure, since when,
    over how many comparisons (the detector's own numbers go to separate annotations).

    The interval is the one stated by the store's estimators at the configured confidence; "sure"
    refers to the policy's false-alarm budget, the only promise the detector makes.
    """
    what = METRIC_WORDS.get(alert.metric, alert.metric)
    where = f"{alert.group} at {alert.deployment} (algorithm {alert.algorithm})"
    since = alert.opened_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n = alert.evidence.get("n")
    count = f"{n:,.0f}" if isinstance(n, (int, float)) else "an unknown number of"
    value = ("" if alert.estimate is None else
             f" It is {alert.estimate:.4g} (interval {alert.low:.4g} to {alert.high:.4g}) over the last {count}"
             " verified comparisons")
    baseline = "" if alert.baseline is None else f", against {alert.baseline:.4g} in the baseline"
    ending = f" Resolved at {alert.resolved_at.astimezone(timezone.utc):%Y-%m-%d %H:%M UTC}." if alert.resolved_at else ""
    if alert.type == "insufficient_evidence":
        needed = alert.evidence.get("needed")
        need = f"; the policy needs {needed:,.0f}" if isinstance(needed, (int, float)) else ""
        return (f"Too little evidence to watch the {what} of {where}: its baseline holds {count} comparisons"
                f"{need}. It is not tested, so no alert about it means nothing; since {since}.{ending}")
    if alert.type == "label_backlog":
        return (f"The {what} of {where} is above the policy's limit since {since}.{value}. Unverified matches "
                f"make every rate shown for this deployment less certain.{ending}")
    if alert.type == "disparity_breach":
        reference = alert.detector.partition(":")[2] or "the reference group"
        return (f"The {what} of {where} exceeds the policy's ratio to {reference}'s since {since}.{value}"
                f"{baseline}. The detector's false alarms stay within the policy's budget per day.{ending}")
    rose = "The label-free warning: the" if alert.type == "score_drift" else "The"
    return (f"{rose} {what} of {where} rose above its baseline since {since}.{value}{baseline}. "
            f"The detector's false alarms stay within the policy's budget per day.{ending}")


def alertmanager_payload(alert: Alert, now: datetime, resend_horizon: timedelta = RESEND_HORIZON) -> dict:
    """One alert of Alertmanager's ``POST /api/v2/alerts`` body."""
    labels = {**alert.routing, "alertname": alertname(alert), "deployment": alert.deployment,
              "algorithm": alert.algorithm, "group": alert.group, "metric": alert.metric, "type": alert.type,
              "severity": alert.severity}
    ends = alert.resolved_at if alert.state == "resolved" else max(now, alert.opened_at) + resend_horizon
    # the detector's numbers, for machines: one annotation each
    numbers = {f"evidence_{k}": f"{v:g}" if isinstance(v, float) else str(v)
               for k, v in alert.evidence.items() if v is not None}
    return {
        "labels": labels,
        # links only where the policy has them: a placeholder host would send people nowhere
        "annotations": {"summary": _summary(alert), "description": describe(alert), "detector": alert.detector,
                        **numbers, **({"runbook_url": alert.runbook_url} if alert.runbook_url else {}),
                        **({"dashboard_url": alert.dashboard_url} if alert.dashboard_url else {}),
                        "incident_id": alert.id, "opened_at": _iso(alert.opened_at)},
        "startsAt": _iso(alert.opened_at),
        "endsAt": _iso(ends),
        **({"generatorURL": alert.dashboard_url} if alert.dashboard_url else {}),
    }


class Sink(Protocol):
    name: str

    def send(self, alerts: Sequence[Alert]) -> None: ...

    def close(self) -> None: ...


class KafkaAlertSink:
    """Alert records (JSON, schema-shaped) on the alerts topic, keyed by incident id."""

    name = "kafka"

    def __init__(self, bootstrap: str, topic: str = "fairwatch.alerts", timeout: float = 10.0,
                 link: KafkaLink | None = None):
        from kafka import KafkaProducer

        self.topic, self.timeout = topic, timeout
        link = link or KafkaLink.from_env()  # the FAIRWATCH_KAFKA_* settings of the environment
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                       client_id="fairwatch-alerts", **link.kafka_python_kwargs())

    def send(self, alerts: Sequence[Alert]) -> None:
        futures = [self._producer.send(self.topic, key=a.id.encode(), value=json.dumps(a.to_record()).encode())
                   for a in alerts]
        for future in futures:
            future.get(timeout=self.timeout)  # raises: the delivery thread retries

    def close(self) -> None:
        self._producer.close(timeout=self.timeout)


class AlertmanagerLinkError(ValueError):
    """The Alertmanager link settings are unusable; the message names the setting, never a secret."""


def alertmanager_client(url: str, timeout: float = 10.0, environ: Mapping[str, str] | None = None) -> httpx.Client:
    """An HTTP client for the Alertmanager at ``url``, with the link settings of ``environ``
    (default: the process environment): ``FAIRWATCH_ALERTMANAGER_CA_FILE`` (TLS verified against
    this CA; an https URL without it is verified against the system's CAs),
    ``FAIRWATCH_ALERTMANAGER_USERNAME`` with ``FAIRWATCH_ALERTMANAGER_PASSWORD_FILE`` or
    ``FAIRWATCH_ALERTMANAGER_PASSWORD`` (basic auth). Secrets come from files or the environment,
    never from the URL's printed form."""
    import os
    import ssl

    env = os.environ if environ is None else environ
    options: dict[str, Any] = {"base_url": url, "timeout": timeout}
    ca = env.get("FAIRWATCH_ALERTMANAGER_CA_FILE")
    if ca:
        try:
            options["verify"] = ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise AlertmanagerLinkError(f"FAIRWATCH_ALERTMANAGER_CA_FILE: cannot load {ca}: {exc}") from None
    username = env.get("FAIRWATCH_ALERTMANAGER_USERNAME")
    password = env.get("FAIRWATCH_ALERTMANAGER_PASSWORD")
    password_file = env.get("FAIRWATCH_ALERTMANAGER_PASSWORD_FILE")
    if password_file and password:
        raise AlertmanagerLinkError("set FAIRWATCH_ALERTMANAGER_PASSWORD_FILE or FAIRWATCH_ALERTMANAGER_PASSWORD, not both")
    if password_file:
        try:
            password = Path(password_file).read_text().strip()
        except OSError as exc:
            raise AlertmanagerLinkError(f"FAIRWATCH_ALERTMANAGER_PASSWORD_FILE: cannot read {password_file}: "
                                        f"{exc.strerror}") from None
    if bool(username) != bool(password):
        raise AlertmanagerLinkError("FAIRWATCH_ALERTMANAGER_USERNAME and a password (FAIRWATCH_ALERTMANAGER_PASSWORD_FILE"
                                    " or FAIRWATCH_ALERTMANAGER_PASSWORD) go together")
    https = url.lower().startswith("https://")
    if username and not https:
        raise AlertmanagerLinkError(f"FAIRWATCH_ALERTMANAGER_USERNAME with {url.split('://')[0]}:// would send the password "
                                    "in clear text: use an https URL")
    if ca and not https:
        raise AlertmanagerLinkError("FAIRWATCH_ALERTMANAGER_CA_FILE is set but the URL is not https: nothing would be verified")
    if username:
        options["auth"] = httpx.BasicAuth(username, password)
    return httpx.Client(**options)


class AlertmanagerSink:
    """``POST /api/v2/alerts`` of a Prometheus Alertmanager."""

    name = "alertmanager"

    def __init__(self, url: str, timeout: float = 10.0, resend_horizon: timedelta = RESEND_HORIZON,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 environ: Mapping[str, str] | None = None):
        self._client = alertmanager_client(url, timeout, environ)
        self.resend_horizon, self.clock = resend_horizon, clock

    def send(self, alerts: Sequence[Alert]) -> None:
        now = self.clock()
        response = self._client.post("/api/v2/alerts",
                                     json=[alertmanager_payload(a, now, self.resend_horizon) for a in alerts])
        response.raise_for_status()

    def close(self) -> None:
        self._client.close()


class GrafanaAnnotationSink:
    """Grafana annotations through grafana-client: a point when an incident opens, turned into a
    region (``timeEnd``) when it resolves. Tags: ``fairwatch``, type, deployment, group, metric."""

    name = "grafana"

    def __init__(self, url: str, credential: Any = None, dashboard_uid: str | None = None, timeout: float = 10.0):
        from grafana_client import GrafanaApi

        self._api = GrafanaApi.from_url(url, credential=credential, timeout=timeout)
        self.dashboard_uid = dashboard_uid
        self._ids: dict[tuple[str, datetime], int] = {}  # incident -> annotation id (this process)

    def send(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            tags = ["fairwatch", alert.type, alert.deployment, alert.group, alert.metric, alert.severity]
            text = f"{alert.state}: {_summary(alert)}"
            end = _ms(alert.resolved_at) if alert.resolved_at else None
            known = self._ids.get(alert.incident)
            if known is not None:
                self._api.annotations.update_annotation(known, time_from=_ms(alert.opened_at), time_to=end,
                                                        tags=tags, text=text)
                continue
            result = self._api.annotations.add_annotation(dashboard_uid=self.dashboard_uid,
                                                          time_from=_ms(alert.opened_at), time_to=end, tags=tags,
                                                          text=text)
            if alert.state == "firing":
                self._ids[alert.incident] = int(result["id"])
            else:
                self._ids.pop(alert.incident, None)

    def close(self) -> None:
        pass


class _Lane:
    """One destination: a bounded queue drained by a thread that retries with backoff."""

    def __init__(self, sink: Sink, capacity: int, attempts: int, backoff: float, max_backoff: float,
                 stats: Counter, lock: threading.Lock):
        self.sink, self.attempts, self.backoff, self.max_backoff = sink, attempts, backoff, max_backoff
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.stats, self.lock = stats, lock
        self.lost = False  # a message was given up on or dropped since the last submit that made up for it
        self.thread = threading.Thread(target=self._drain, name=f"fairwatch-delivery-{sink.name}", daemon=True)
        self.thread.start()

    def put(self, item: Any) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.queue.task_done()
                    self._count("dropped")
                except queue.Empty:
                    pass

    def _count(self, what: str) -> None:
        with self.lock:
            self.stats[f"{self.sink.name}_{what}"] += 1
            if what in ("failed", "dropped"):
                self.lost = True

    def take_lost(self) -> bool:
        """Whether a message was given up on or dropped since the last call."""
        with self.lock:
            lost, self.lost = self.lost, False
            return lost

    def _drain(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                delay = self.backoff
                for attempt in range(1, self.attempts + 1):
                    try:
                        self.sink.send(item)
                        self._count("sent")
                        break
                    except Exception as exc:  # any failure of the destination: retry, then give up
                        self._count("errors")
                        log.warning("delivery to %s failed (attempt %d/%d): %s", self.sink.name, attempt,
                                    self.attempts, without_passwords(str(exc)))
                        if attempt == self.attempts:
                            self._count("failed")
                        else:
                            time.sleep(delay)
                            delay = min(delay * 2, self.max_backoff)
            finally:
                self.queue.task_done()


class AlertDelivery:
    """Hands changed and firing incidents to the destinations without ever blocking the caller.

    Parameters
    ----------
    sinks
        Destinations (:class:`KafkaAlertSink`, :class:`AlertmanagerSink`, :class:`GrafanaAnnotationSink`).
    capacity
        Messages each destination may have waiting; beyond it the oldest is dropped.
    attempts, backoff, max_backoff
        Tries per message and the doubling wait between them (seconds).
    """

    def __init__(self, sinks: Sequence[Sink], capacity: int = 1000, attempts: int = 6, backoff: float = 0.5,
                 max_backoff: float = 30.0):
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        self._lanes = [_Lane(s, capacity, attempts, backoff, max_backoff, self.stats, self._lock) for s in sinks]

    def submit(self, changed: Sequence[Alert], standing: Sequence[Alert], *, taking_over: bool = False) -> None:
        """Changes go everywhere; Alertmanager also gets ``standing`` again: every firing incident and
        every resolution younger than :data:`RESEND_HORIZON`, as the store holds them. The Kafka alerts
        topic gets ``standing`` too when this worker is ``taking_over`` (the first cycle of one that has
        just become the detecting one: the previous one may have written a change and died before
        sending it) or when its lane gave up on or dropped a message since (the topic is at least once;
        a record is an incident's whole state, and ``resolved`` is final for its id and opened_at)."""
        for lane in self._lanes:
            batch = list(changed)
            if lane.sink.name == KafkaAlertSink.name:
                # made up for by this batch (or lost again, and then by the next)
                resend = lane.take_lost() or taking_over
            else:
                resend = lane.sink.name == AlertmanagerSink.name
            if resend:
                batch += [a for a in standing if a.incident not in {c.incident for c in changed}]
            if batch:
                lane.put(batch)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queue is empty (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            while lane.queue.unfinished_tasks:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        for lane in self._lanes:
            lane.put(None)
            lane.thread.join(timeout)
            lane.sink.close()


def delivery_from_env(environ: dict[str, str] | None = None) -> AlertDelivery | None:
    """Destinations named by ``FAIRWATCH_KAFKA`` (+ ``FAIRWATCH_TOPIC_PREFIX``), ``FAIRWATCH_ALERTMANAGER``
    and ``FAIRWATCH_GRAFANA`` (+ ``FAIRWATCH_GRAFANA_TOKEN``); None when none is set."""
    import os

    env = os.environ if environ is None else environ
    sinks: list[Sink] = []
    if env.get("FAIRWATCH_KAFKA"):
        sinks.append(KafkaAlertSink(env["FAIRWATCH_KAFKA"], env.get("FAIRWATCH_TOPIC_PREFIX", DEFAULT_PREFIX) + ALERTS,
                                    link=KafkaLink.from_env(env)))
    if env.get("FAIRWATCH_ALERTMANAGER"):
        sinks.append(AlertmanagerSink(env["FAIRWATCH_ALERTMANAGER"], environ=env))
    if env.get("FAIRWATCH_GRAFANA"):
        sinks.append(GrafanaAnnotationSink(env["FAIRWATCH_GRAFANA"], credential=env.get("FAIRWATCH_GRAFANA_TOKEN")))
    return AlertDelivery(sinks) if sinks else None
