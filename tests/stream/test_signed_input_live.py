"""Signed input end to end over the real Kafka and ClickHouse of the stack: a `fairwatch worker`
with a keyring (FAIRWATCH_KEYRING) requiring signatures of site-0 and site-1, and producers that
send with the right key, unsigned, forged, with an unknown key, an expired key, a revoked key and
another deployment's key, then outcomes replayed from another deployment (fairwatch.testing.signed).

The stored counts must equal a brute-force recount of the valid records only
(fairwatch.testing.workload.oracle_counts); dead-letter must hold every refused record, in its
message, with its send's reason; the worker keeps running; the stored provenance re-checks
offline (fairwatch.store.signed_input).
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
from fairwatch.contracts.keyring import parse_keyring
from fairwatch.producer import FairwatchProducer
from fairwatch.store.clickhouse import open_store
from fairwatch.store.signed_input import verify_signed_input
from fairwatch.testing.live import LiveSetup, assert_counts_equal, stored_counts
from fairwatch.testing.signed import counted_workload, encoded, records_of, scenario_messages, signed_scenario
from fairwatch.testing.workload import oracle_counts
from kafka import KafkaProducer

pytestmark = [pytest.mark.services, pytest.mark.timeout(900), pytest.mark.xdist_group("live-workers")]


def send_with_the_sdk(setup: LiveSetup, send) -> int:
    """The send through the producer SDK (signing when it has a key); its messages sent. Records go
    through send_encoded, which does not look inside them (a site could bypass the SDK's check)."""
    signing = {} if send.key is None else {"signing_key": send.key, "deployment": send.deployment}
    with FairwatchProducer(setup.kafka, topic_prefix=setup.prefix, partitions=setup.partitions, max_records=50,
                           linger=0.05, link=setup.producer_link, **signing) as producer:
        for kind, doc in records_of(send):
            producer.send_encoded(setup.topic(kind), doc["event_id"], encoded(doc))
    return producer.sent_messages


def send_forged(setup: LiveSetup, scenario) -> int:
    """The forged send: envelopes signed with site-0's key, a verdict changed afterwards."""
    forged = [s for s in scenario.sends if s.forge]
    alone = type(scenario)(scenario.keys, scenario.keyring_text, forged)
    messages, _ = scenario_messages(alone, setup.partitions)
    producer = KafkaProducer(bootstrap_servers=setup.kafka, acks="all", **setup.producer_link.kafka_python_kwargs())
    sent = [producer.send(setup.topic(kind), key=key, value=value, partition=partition, headers=list(headers))
            for kind, partition, key, value, headers in messages]
    producer.flush()
    producer.close()
    assert all(f.succeeded() for f in sent)
    return len(sent)


def test_only_validly_signed_input_is_counted_and_the_rest_is_dead_lettered_with_its_reason(stack, tmp_path):
    scenario = signed_scenario(4000, seed=81)
    setup = LiveSetup(stack, tmp_path, partitions=4)
    keyring_path = tmp_path / "keyring.yaml"
    keyring_path.write_text(scenario.keyring_text)
    setup.env["FAIRWATCH_KEYRING"] = str(keyring_path)
    sent = Counter()
    for send in scenario.sends:
        if not send.later and not send.forge:
            sent[send.label] = send_with_the_sdk(setup, send)
    sent["forged"] = send_forged(setup, scenario)
    worker = setup.start_worker()
    try:
        setup.wait_drained([worker], timeout=300)
        for send in scenario.sends:  # outcomes of another deployment, once the events they name are held
            if send.later:
                sent[send.label] = send_with_the_sdk(setup, send)
        setup.wait_drained([worker], timeout=300)
        assert worker.alive(), "the worker must keep running through refused input"
        metrics = worker.metrics_text()
    finally:
        worker.stop()
    store = open_store(setup.store_url)
    assert_counts_equal(stored_counts(store), oracle_counts(counted_workload(scenario)))

    # dead-letter: each refused record once, inside its message, with its send's reason
    wanted = {}
    for send in scenario.sends:
        if send.expected is not None:
            wanted.update(dict.fromkeys(set(send.workload.events) | set(send.workload.outcomes), send.expected))
        wanted.update(dict.fromkeys(send.refused_events, "deployment_mismatch"))
    seen = Counter()
    letters = setup.dead_letters()
    for letter in letters.values():
        doc = json.loads(base64.b64decode(letter["value_b64"]))
        for record in doc["records"] if "batch_version" in doc else [doc]:
            assert wanted.get(record["event_id"]) == letter["reason_code"], (record["event_id"], letter)
            seen[record["event_id"]] += 1
    assert set(seen) == set(wanted)
    reasons = Counter(letter["reason_code"] for letter in letters.values())
    assert set(reasons) == {"unsigned", "bad_signature", "unknown_key", "expired_key", "revoked_key",
                            "key_not_for_deployment", "deployment_mismatch"}
    # whole messages for what the keyring refuses: one dead letter per message sent
    for label, reason in (("unsigned", "unsigned"), ("unknown-key", "unknown_key"), ("expired-key", "expired_key"),
                          ("revoked-key", "revoked_key"), ("other-key", "key_not_for_deployment"),
                          ("forged", "bad_signature")):
        assert reasons[reason] == sent[label], (label, reasons[reason], sent[label])
    stored_reasons = Counter(dict(store.query("SELECT reason_code, count() FROM dead_letters FINAL GROUP BY reason_code")))
    assert stored_reasons == reasons
    for reason, n in reasons.items():
        assert f'fairwatch_rejected_messages_total{{reason="{reason}"}} {float(n)}' in metrics

    # provenance: one row per verified message, re-checked offline against the keyring
    verified = sent["valid"] + sent["valid-site-1"] + sent["mixed"] + sent["replayed"]
    assert store.query("SELECT count() FROM signed_input FINAL") == [(verified,)]
    signed_metric = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                        if line.startswith("fairwatch_signed_messages_total{"))
    assert signed_metric == verified
    report = verify_signed_input(store, parse_keyring(scenario.keyring_text))
    assert report.ok, [str(f) for f in report.findings[:5]]
    assert report.verified == verified and report.rows >= len(counted_workload(scenario).events)
