"""A live worker takes acquisition attempts and use records from Kafka (topics ``acquisitions``,
``uses``) into ClickHouse: per-group attempts and failures equal a loop over the produced lines, an
attempt delivered twice counts once, a use's end record replaces its start record, a bad record goes
to the dead-letter topic with its reason, and the worker keeps running."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from fairwatch.contracts.topics import ACQUISITIONS, USES
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.acquisitions import simulate_acquisitions
from fairwatch.store.acquisitions import read_acquisition_counts
from fairwatch.store.clickhouse import open_store
from fairwatch.store.uses import read_uses
from fairwatch.testing.live import LiveSetup
from fairwatch.testing.oracles import attempts_by_group

pytestmark = [pytest.mark.services, pytest.mark.timeout(600), pytest.mark.xdist_group("live-workers")]

SCENARIO = {
    "start": "2026-11-25T06:00:00Z", "duration_hours": 2, "events": 4000,
    "attributes": {"sex": {"F": 0.5, "M": 0.5}, "race": {"White": 0.6, "Black": 0.4}},
    "algorithms": {"algo-1": {"fmr": 0.01, "fnmr": 0.05}},
    "deployments": [{"name": "gate", "algorithm": "algo-1", "threshold": 3.0}],
    "acquisition": {"fta": {"base": 0.05, "factors": {"race": {"Black": 2.0}}}, "labelled_share": 0.9},
}


@pytest.fixture
def setup(stack, tmp_path):
    live = LiveSetup(stack, tmp_path, partitions=4)
    yield live
    problems = live.cleanup()
    LiveSetup.created.remove(live)
    assert not problems, problems


def test_a_worker_stores_attempts_and_uses_once_and_dead_letters_the_bad(setup):
    lines = simulate_acquisitions(simulate(parse_scenario(SCENARIO), seed=4)).lines()
    bad = b'{"attempt_id": "bad-1", "occurred_at": "2026-11-25T07:00:00Z", "deployment": "gate", "outcome": "no_face"}'
    key = lambda line: json.loads(line)["attempt_id"].encode()  # noqa: E731
    use = {"use_id": "u-1", "deployment": "gate", "started_at": "2026-11-25T06:00:00Z", "reference_database": "wl"}
    ended = {**use, "ended_at": "2026-11-25T08:00:00Z"}
    bad_use = b'{"use_id": "u-2", "deployment": "gate", "started_at": "2026-11-25T06:00:00Z"}'
    setup.produce([(ACQUISITIONS, key(line), line) for line in [*lines, lines[3], lines[10]]]
                  + [(ACQUISITIONS, b"bad-1", bad)]
                  + [(USES, b"u-1", json.dumps(r).encode()) for r in (use, ended)] + [(USES, b"u-2", bad_use)])
    worker = setup.start_worker()
    try:
        setup.wait_drained([worker], timeout=300)
        assert worker.alive()
        store = open_store(setup.store_url)
        start = datetime(2026, 11, 25, 5, tzinfo=timezone.utc)
        counts = read_acquisition_counts(store, start, start + timedelta(hours=4), (("sex", "race"),))
        raw = attempts_by_group(lines, (("sex", "race"),))
        assert {k[2:]: v.tolist() for k, v in counts.items()} == {
            cell: [len(rows), sum(r[1] for r in rows), sum(r[2] == "no_face" for r in rows),
                   sum(r[2] == "low_quality" for r in rows)] for cell, rows in raw.items()}
        assert [(u["use_id"], u["started_at"], u["ended_at"]) for u in read_uses(store, start, start + timedelta(hours=4))] \
            == [("u-1", use["started_at"], ended["ended_at"])]
        letters = setup.dead_letters()
        assert sorted((r["source_topic"], r["reason_code"], r["field"], base64.b64decode(r["value_b64"]))
                      for r in letters.values()) == [(setup.topic(ACQUISITIONS), "missing_field", "algorithm", bad),
                                                     (setup.topic(USES), "missing_field", "reference_database", bad_use)]
        assert 'fairwatch_consumed_messages_total{topic="acquisitions"}' in worker.metrics_text()
    finally:
        worker.stop()
