"""Delivery: the real Alertmanager (API v2), Kafka alerts topic and the alerts table on ClickHouse
18.16 and chDB; Grafana against its documented annotations API; retries and a full queue."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fairwatch.detect.delivery import (
    AlertDelivery,
    AlertmanagerSink,
    GrafanaAnnotationSink,
    alertmanager_client,
    KafkaAlertSink,
)
from fairwatch.detect.incidents import ALERT_COLUMNS, Alert
from fairwatch.detect.reads import read_alerts
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.testing.live import delete_resources
from fairwatch.testing.stack import server_url
from fairwatch.testing.oracles import alert_validator
from fairwatch.testing.stack import kafka_link

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def make_alert(test_id: str, state: str = "firing", **changes) -> Alert:
    base = dict(id=f"gate-a/algo-v1/error_rate_drift/fmr/race=Black-{test_id}", type="error_rate_drift",
                severity="critical", deployment="gate-a", algorithm="algo-v1", group="race=Black", metric="fmr",
                estimate=0.03, low=0.021, high=0.041, baseline=0.01, detector="sr_band",
                evidence={"n": 1200.0, "e_value": None, "statistic": 6.2, "threshold": 5.5}, state=state,
                opened_at=NOW - timedelta(minutes=5), resolved_at=None if state == "firing" else NOW - timedelta(seconds=2),
                runbook_url="https://runbook.example/drift", dashboard_url="https://grafana.example/d/x",
                routing={"team": "oncall", "test_id": test_id})
    return Alert(**{**base, **changes})


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


@pytest.mark.services
def test_alertmanager_receives_the_firing_alert_then_the_resolution(stack):
    test_id = uuid.uuid4().hex
    delivery = AlertDelivery([AlertmanagerSink(stack["FAIRWATCH_ALERTMANAGER"], environ=stack)], backoff=0.05)
    firing = make_alert(test_id)
    delivery.submit([firing], [firing])
    assert delivery.flush()
    with alertmanager_client(stack["FAIRWATCH_ALERTMANAGER"], 10, stack) as client:
        def ours():
            r = client.get("/api/v2/alerts", params={"filter": f'test_id="{test_id}"'})
            r.raise_for_status()
            return r.json()

        [got] = _wait(ours)
        assert got["labels"] == {"alertname": "FairwatchErrorRateDrift", "deployment": "gate-a",
                                 "algorithm": "algo-v1", "group": "race=Black", "metric": "fmr",
                                 "type": "error_rate_drift", "severity": "critical", "team": "oncall",
                                 "test_id": test_id}
        assert got["annotations"]["runbook_url"] == "https://runbook.example/drift"
        assert got["annotations"]["incident_id"] == firing.id
        assert got["status"]["state"] == "active"
        starts = datetime.fromisoformat(got["startsAt"].replace("Z", "+00:00"))
        assert starts == firing.opened_at
        assert datetime.fromisoformat(got["endsAt"].replace("Z", "+00:00")) > datetime.now(timezone.utc)

        resolved = make_alert(test_id, state="resolved")
        delivery.submit([resolved], [])
        assert delivery.flush()

        def resolved_now():
            now = datetime.now(timezone.utc)
            alerts = ours()
            return alerts == [] or all(datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) <= now
                                       for a in alerts)

        assert _wait(resolved_now)
        active = client.get("/api/v2/alerts", params={"filter": f'test_id="{test_id}"', "active": "true",
                                                      "silenced": "false", "inhibited": "false"}).json()
        assert [a for a in active if a["status"]["state"] == "active"
                and datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) > datetime.now(timezone.utc)] == []
    delivery.close()
    assert delivery.stats["alertmanager_sent"] == 2 and delivery.stats["alertmanager_failed"] == 0


def deliver_and_read_back(stack, topic: str):
    """Two alerts (firing, then resolved) through the Kafka sink, as the worker principal that
    delivers them in production; the messages read back by the admin."""
    from kafka import KafkaConsumer

    kafka = stack["FAIRWATCH_KAFKA"]
    test_id = uuid.uuid4().hex
    alerts = [make_alert(test_id), make_alert(test_id, state="resolved")]
    delivery = AlertDelivery([KafkaAlertSink(kafka, topic, link=kafka_link(stack, "worker"))])
    delivery.submit(alerts, [alerts[0]])
    delivery.close(timeout=30)
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=10_000,
                             **kafka_link(stack).kafka_python_kwargs())
    got = []
    for message in consumer:
        got.append(message)
        if len(got) == 2:
            break
    consumer.close()
    return got, alerts


@pytest.mark.services
def test_kafka_alerts_topic_carries_schema_shaped_records(stack):
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"fairwatch-test.alerts-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=stack["FAIRWATCH_KAFKA"], **kafka_link(stack).kafka_python_kwargs())
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    try:
        got, alerts = deliver_and_read_back(stack, topic)
    finally:
        delete_resources(stack["FAIRWATCH_KAFKA"], (topic,), [], "", [], link=kafka_link(stack))
    validator = alert_validator()
    assert [m.key.decode() for m in got] == [a.id for a in alerts]
    for message, alert in zip(got, alerts):
        record = json.loads(message.value)
        validator.validate(record)
        assert record == alert.to_record()


@pytest.mark.services
@pytest.mark.parametrize("backend", ["clickhouse", "chdb"])
def test_alerts_table_round_trip(stack, backend, tmp_path):
    if backend == "clickhouse":
        url = server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_alerts_{uuid.uuid4().hex[:8]}")
    else:
        url = f"chdb://{tmp_path / 'store'}"
    store = open_store(url)
    try:
        check_alerts_round_trip(store)
    finally:
        if backend == "clickhouse":
            store.execute(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()


def check_alerts_round_trip(store) -> None:
    migrate(store)
    test_id = uuid.uuid4().hex
    evidence = {"n": 1200.0, "e_value": 41.5, "statistic": 6.2}  # the columns the table keeps
    firing = make_alert(test_id, evidence=evidence)
    other = make_alert(test_id, evidence=evidence, id="gate-a/algo-v1/score_drift/score/race=White", type="score_drift",
                       severity="warning", metric="score", estimate=None, low=None, high=None,
                       opened_at=NOW - timedelta(days=3))
    store.insert("alerts", ALERT_COLUMNS, [firing.to_row(1), other.to_row(1)])
    # the resolution is a newer version of the same incident: it replaces the firing row
    resolved = make_alert(test_id, state="resolved", evidence=evidence)
    store.insert("alerts", ALERT_COLUMNS, [resolved.to_row(2)])
    everything = read_alerts(store)
    assert [a.to_record() for a in everything] == [resolved.to_record(), other.to_record()]
    assert [a.id for a in read_alerts(store, state="firing")] == [other.id]
    # a window after the resolution sees only the incident still firing
    assert [a.id for a in read_alerts(store, NOW, NOW + timedelta(hours=1))] == [other.id]
    assert [a.id for a in read_alerts(store, NOW - timedelta(days=4), NOW - timedelta(days=2))] == [other.id]


class _FakeGrafana(BaseHTTPRequestHandler):
    """Grafana's documented annotations API: POST /api/annotations (time, timeEnd in epoch ms,
    tags, text required; dashboardUID, panelId optional) -> {"message", "id"}; PUT
    /api/annotations/:id replaces the annotation."""

    annotations: dict[int, dict] = {}
    calls: list[tuple[str, str]] = []

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    @staticmethod
    def _valid(body: dict) -> bool:
        return (isinstance(body.get("time"), int) and (body.get("timeEnd") is None or isinstance(body["timeEnd"], int))
                and isinstance(body.get("text"), str) and body["text"] != ""
                and isinstance(body.get("tags"), list) and all(isinstance(t, str) for t in body["tags"]))

    def do_POST(self):  # noqa: N802 (http.server naming)
        self.calls.append(("POST", self.path))
        body = self._body()
        if self.path != "/api/annotations" or not self._valid(body):
            return self._reply(400, {"message": "bad request"})
        new_id = len(self.annotations) + 1
        self.annotations[new_id] = body
        self._reply(200, {"message": "Annotation added", "id": new_id})

    def do_PUT(self):  # noqa: N802
        self.calls.append(("PUT", self.path))
        m = re.fullmatch(r"/api/annotations/(\d+)", self.path)
        body = self._body()
        if not m or int(m.group(1)) not in self.annotations or not self._valid(body):
            return self._reply(400, {"message": "bad request"})
        self.annotations[int(m.group(1))] = body
        self._reply(200, {"message": "Annotation updated"})

    def log_message(self, *args):
        pass


def test_grafana_annotation_point_then_region():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = GrafanaAnnotationSink(f"http://127.0.0.1:{server.server_port}", credential="token")
        firing, resolved = make_alert("g"), make_alert("g", state="resolved")
        sink.send([firing])
        sink.send([resolved])
        assert _FakeGrafana.calls == [("POST", "/api/annotations"), ("PUT", "/api/annotations/1")]
        stored = _FakeGrafana.annotations[1]
        assert stored["time"] == int(firing.opened_at.timestamp() * 1000)
        assert stored["timeEnd"] == int(resolved.resolved_at.timestamp() * 1000)
        assert set(stored["tags"]) >= {"fairwatch", "error_rate_drift", "gate-a", "race=Black"}
        assert stored["text"].startswith("resolved: FMR error rate drift for race=Black")
    finally:
        server.shutdown()


class _Flaky:
    name = "flaky"

    def __init__(self, failures: int):
        self.failures, self.received = failures, []

    def send(self, alerts):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("destination down")
        self.received.append(list(alerts))

    def close(self):
        pass


class _Stuck:
    name = "stuck"

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def send(self, alerts):
        self.entered.set()
        self.release.wait()

    def close(self):
        pass


def test_retries_with_backoff_then_delivers():
    sink = _Flaky(failures=2)
    delivery = AlertDelivery([sink], backoff=0.01)
    delivery.submit([make_alert("r")], [])
    assert delivery.flush(10)
    assert delivery.stats["flaky_errors"] == 2 and delivery.stats["flaky_sent"] == 1
    assert sink.received == [[make_alert("r")]]
    gives_up = AlertDelivery([_Flaky(failures=10)], attempts=3, backoff=0.01)
    gives_up.submit([make_alert("r")], [])
    assert gives_up.flush(10) and gives_up.stats["flaky_failed"] == 1 and gives_up.stats["flaky_errors"] == 3


class _Recording(_Flaky):
    def __init__(self, name: str):
        super().__init__(failures=0)
        self.name = name


def test_the_alerts_topic_gets_the_standing_incidents_only_from_a_worker_taking_over():
    """A cycle sends the alerts topic its changes only; the first cycle of a worker that has just
    taken detection over sends it the standing incidents too (what a killed owner wrote but never
    sent), while Grafana's annotations (each send a new one) get changes only, always."""
    kafka, grafana = _Recording("kafka"), _Recording("grafana")
    delivery = AlertDelivery([kafka, grafana])
    changed, standing = [make_alert("new")], [make_alert("written-by-the-dead-owner")]
    delivery.submit(changed, standing)
    assert delivery.flush(10)
    delivery.submit(changed, standing, taking_over=True)
    assert delivery.flush(10)
    assert kafka.received == [changed, changed + standing]
    assert grafana.received == [changed, changed]


def test_the_alerts_topic_gets_the_standing_incidents_after_its_lane_gave_a_message_up():
    """A change the Kafka lane gave up on (every attempt failed: a long outage) goes out inside the
    standing incidents of the next cycle; after that, changes only again."""
    kafka = _Flaky(failures=2)
    kafka.name = "kafka"
    delivery = AlertDelivery([kafka], attempts=2, backoff=0.01)
    delivery.submit([make_alert("lost")], [])
    assert delivery.flush(10) and delivery.stats["kafka_failed"] == 1 and kafka.received == []
    standing = [make_alert("lost"), make_alert("older")]
    delivery.submit([make_alert("new")], standing)
    assert delivery.flush(10)
    delivery.submit([make_alert("newer")], standing)
    assert delivery.flush(10)
    assert kafka.received == [[make_alert("new")] + standing, [make_alert("newer")]]


def test_a_stuck_destination_never_blocks_submit():
    stuck = _Stuck()
    delivery = AlertDelivery([stuck], capacity=5)
    delivery.submit([make_alert("first")], [])
    assert stuck.entered.wait(10)
    for i in range(49):  # would hang here if submit waited for the destination
        delivery.submit([make_alert(str(i))], [])
    # one batch is in the destination's hands, five wait, the rest were dropped oldest first
    assert delivery.stats["stuck_dropped"] == 50 - 5 - 1
    stuck.release.set()
    assert delivery.flush(10)


def test_descriptions_are_plain_words_and_the_numbers_are_annotations_of_their_own():
    """The on-call page: what changed, for whom, how sure, since when, over how many comparisons, in
    words (it read `detector sr_band; n=872.0, statistic=6.159109, threshold=5.749427`)."""
    from fairwatch.detect.delivery import alertmanager_payload, describe

    opened = datetime(2026, 11, 25, 7, 8, tzinfo=timezone.utc)
    drift = Alert("gate-a/algo-v1/error_rate_drift/fmr/race=Black", "error_rate_drift", "critical", "gate-a",
                  "algo-v1", "race=Black", "fmr", 0.0747, 0.061, 0.0902, 0.021, "sr_band",
                  {"n": 872.0, "e_value": None, "statistic": 6.159109, "threshold": 5.749427, "dispersion": 1.42},
                  "firing", opened, None, "https://runbook.example/drift", "https://grafana.example/d/x")
    text = describe(drift)
    for part in ("false match rate (FMR)", "race=Black", "gate-a", "2026-11-25 07:08 UTC", "0.0747",
                 "0.061 to 0.0902", "872 verified comparisons", "0.021 in the baseline", "budget"):
        assert part in text, (part, text)
    for jargon in ("sr_band", "statistic", "6.159", "threshold="):
        assert jargon not in text, (jargon, text)
    annotations = alertmanager_payload(drift, opened)["annotations"]
    assert annotations["description"] == text
    assert (annotations["detector"], annotations["evidence_statistic"], annotations["evidence_threshold"],
            annotations["evidence_n"], annotations["evidence_dispersion"]) == ("sr_band", "6.15911", "5.74943",
                                                                                "872", "1.42")
    thin = Alert("gate-a/algo-v1/insufficient_evidence/fmr/race=Indigenous", "insufficient_evidence", "info",
                 "gate-a", "algo-v1", "race=Indigenous", "fmr", None, None, None, None, "baseline_count",
                 {"n": 1126.0, "needed": 5000.0}, "firing", opened, None, "", "")
    words = describe(thin)
    assert "1,126 comparisons" in words and "needs 5,000" in words and "not tested" in words, words


def test_an_insufficient_evidence_alert_counts_the_baseline_not_zero():
    """It said n=0.0 for a group with 1,126 baseline comparisons."""
    import numpy as np
    from fairwatch.core.config import CoreConfig
    from fairwatch.detect.evaluation import detect
    from fairwatch.detect.policy import parse_policy
    from fairwatch.detect.streams import Stream

    policy = parse_policy("deployment: gate-a\nattributes: [race]\nbaseline: {duration: 1h}\nmin_evidence: 5000\n")
    T = 10
    thin = Stream("insufficient_evidence", "algo-v1", "verification", "race", "Indigenous", "fmr", "baseline_count",
                  None, None, x=np.full(T, 1126.0), n=np.full(T, 5000.0), weighted=np.zeros((T, 6)),
                  counts=np.zeros((T, 12)))
    [alert], _ = detect(policy, CoreConfig(), [thin], 0, [])
    assert alert.type == "insufficient_evidence" and alert.evidence["n"] == 1126.0 and alert.evidence["needed"] == 5000.0


def test_links_come_from_the_policy_filled_with_the_alert_or_are_left_out():
    """Runbook and dashboard links defaulted silently to placeholder hosts and carried no group or time."""
    from urllib.parse import parse_qs, urlsplit

    import numpy as np
    from fairwatch.core.config import CoreConfig
    from fairwatch.detect.delivery import alertmanager_payload
    from fairwatch.detect.evaluation import detect
    from fairwatch.detect.policy import PolicyError, parse_policy
    from fairwatch.detect.streams import Stream
    from fairwatch.testing.oracles import alert_validator

    base = "deployment: gate-a\nattributes: [race]\nbaseline: {duration: 1h}\nmin_evidence: 5000\n"
    thin = Stream("insufficient_evidence", "algo-v1", "verification", "race", "Black", "fmr", "baseline_count",
                  None, None, x=np.full(4, 10.0), n=np.full(4, 5000.0), weighted=np.zeros((4, 6)),
                  counts=np.zeros((4, 12)))
    start = 1_764_050_400  # 2025-11-25T06:00Z, a bucket boundary
    [plain], _ = detect(parse_policy(base), CoreConfig(), [thin], start, [])
    payload = alertmanager_payload(plain, plain.opened_at)
    assert "runbook_url" not in payload["annotations"] and "dashboard_url" not in payload["annotations"]
    assert "generatorURL" not in payload
    assert plain.to_record()["runbook_url"] is None
    alert_validator().validate(plain.to_record())
    linked = parse_policy(base + 'dashboard_url: "https://grafana.example/d/fw?var-group={group}&var-metric={metric}'
                                 '&from={from_ms}&to={to_ms}"\nrunbook_url: "https://wiki.example/{type}"\n')
    [alert], _ = detect(linked, CoreConfig(), [thin], start, [])
    url = urlsplit(alert.dashboard_url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    opened_ms = int(alert.opened_at.timestamp() * 1000)
    assert query == {"var-group": "race=Black", "var-metric": "fmr", "from": str(opened_ms - 6 * 3600 * 1000),
                     "to": str(opened_ms + 3600 * 1000)}
    assert "race%3DBlack" in alert.dashboard_url  # encoded, not a second query parameter
    assert alert.runbook_url == "https://wiki.example/insufficient_evidence"
    assert alertmanager_payload(alert, alert.opened_at)["generatorURL"] == alert.dashboard_url
    with pytest.raises(PolicyError, match=r"unknown placeholder \{grup\}"):
        parse_policy(base + 'runbook_url: "https://wiki.example/{grup}"\n')


def test_a_failed_delivery_is_logged_without_the_destinations_password(caplog):
    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server hook
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://oncall:s3cretPw@127.0.0.1:{server.server_address[1]}"
    delivery = AlertDelivery([AlertmanagerSink(url)], attempts=1, backoff=0.01)
    with caplog.at_level("WARNING", logger="fairwatch.detect.delivery"):
        delivery.submit([make_alert("pw")], [])
        delivery.close(timeout=10)
    server.shutdown()
    # only this lane's: a lane another test left running may log its own failures meanwhile
    warnings = [r.getMessage() for r in caplog.records if "delivery to alertmanager" in r.getMessage()]
    assert warnings and all("401" in w and "s3cretPw" not in w for w in warnings), warnings
    assert delivery.stats["alertmanager_failed"] == 1
