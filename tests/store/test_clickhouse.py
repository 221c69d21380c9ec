"""The DDL runs unchanged on ClickHouse 18.16 (server) and chDB; a round trip through each table."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from fairwatch.core.layout import COLUMNS
from fairwatch.store.clickhouse import (
    EmbeddedStore,
    ServerStore,
    StoreError,
    open_store,
)
from fairwatch.store.migrations import load_migrations, migrate

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)


@pytest.mark.services
def test_migrations_are_idempotent_and_version_aware(store):
    version = store.server_version()
    first = {r.name: r.status for r in migrate(store)}
    second = {r.name: r.status for r in migrate(store)}
    assert first["001_init"] == "applied"
    assert second["001_init"] == "already_applied"
    # TTL exists from 19.6: the retention step waits on the old server and runs on the new one.
    if version < (19, 6):
        assert first["002_dead_letter_retention"] == second["002_dead_letter_retention"] == "skipped_old_server"
    else:
        assert first["002_dead_letter_retention"] == "applied"
    tables = {row[0] for row in store.query("SHOW TABLES")}
    assert {"match_events", "verified_outcomes", "labeled_outcomes", "group_counts", "alerts", "dead_letters",
            "independent_reviews"} <= tables


@pytest.mark.services
def test_server_is_the_old_debian_clickhouse_and_chdb_is_modern(store):
    version = store.server_version()
    # The local stack (no FAIRWATCH_CLICKHOUSE given) is Debian's package: it must be the old one.
    if isinstance(store, ServerStore) and not os.environ.get("FAIRWATCH_CLICKHOUSE"):
        assert version[:2] == (18, 16), version
    if isinstance(store, EmbeddedStore):
        assert version[0] >= 24, version


@pytest.mark.services
def test_round_trip_through_every_table(store):
    migrate(store)
    store.insert(
        "match_events",
        ["event_id", "occurred_at", "occurred_at_us", "deployment", "algorithm", "mode", "score", "threshold",
         "decision", "subject_keys", "subject_values", "reference_keys", "reference_values", "context", "ingested_at"],
        [("e1", T0, 123456, "gate-a", "algo-1", "verification", 0.91, 0.8, "match", ["sex", "race"], ["F", "Black"],
          [], [], '{"site": "T2"}', T0)],
    )
    assert store.query("SELECT event_id, occurred_at, mode, decision, subject_values FROM match_events") == [
        ("e1", T0, "verification", "match", ["F", "Black"])
    ]
    store.insert(
        "verified_outcomes",
        ["event_id", "verified_at", "truth", "reviewer", "revision", "inclusion_prob", "ingested_at"],
        [("e1", T0, "impostor", "r1", 0, 0.25, T0)],
    )
    assert store.query("SELECT truth, revision, inclusion_prob FROM verified_outcomes") == [("impostor", 0, 0.25)]

    key = ["deployment", "algorithm", "mode", "attribute", "group_label", "bucket", "kafka_partition"]
    row = ("gate-a", "algo-1", "verification", "sex", "F", T0, 3)
    # The same bucket written twice (a retry, then a late outcome): FINAL keeps the newest version.
    store.insert("group_counts", key + list(COLUMNS) + ["version"],
                 [row + tuple(float(i) for i in range(12)) + (1,), row + tuple(float(i + 1) for i in range(12)) + (2,)])
    rows = store.query(
        "SELECT sum(impostor_n), sum(genuine_w2_err), count() FROM group_counts FINAL"
        " WHERE bucket >= %(start)s AND bucket < %(end)s AND group_label = %(group)s",
        {"start": T0, "end": datetime(2026, 11, 26, 8, 1, tzinfo=timezone.utc), "group": "F"},
    )
    assert rows == [(1.0, 12.0, 1)]

    store.insert(
        "alerts",
        ["id", "type", "severity", "deployment", "algorithm", "group_label", "metric", "value_estimate", "value_low",
         "value_high", "baseline", "detector", "evidence_n", "evidence_e_value", "evidence_statistic", "state",
         "opened_at", "resolved_at", "runbook_url", "dashboard_url", "version"],
        [("a1", "error_rate_drift", "critical", "gate-a", "algo-1", "sex=F", "fmr", 0.003, 0.002, 0.004, None,
          "cs_band", 21000.0, 41.5, None, "firing", T0, None, "https://r", "https://d", 1)],
    )
    assert store.query("SELECT id, state, baseline, resolved_at, evidence_e_value FROM alerts FINAL") == [
        ("a1", "firing", None, None, 41.5)
    ]
    store.insert(
        "dead_letters",
        ["source_topic", "kafka_partition", "kafka_offset", "key_b64", "value_b64", "reason_code", "field", "reason",
         "rejected_at"],
        [("fairwatch.match-events", -1, 7, None, "e30=", "missing_field", "event_id", "a match event needs event_id", T0)],
    )
    assert store.query("SELECT kafka_partition, kafka_offset, reason_code, field FROM dead_letters") == [
        (-1, 7, "missing_field", "event_id")
    ]


@pytest.mark.services
def test_a_changed_migration_is_refused(store, tmp_path):
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "001_t.sql").write_text("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = MergeTree() ORDER BY x;\n")
    assert [r.status for r in migrate(store, directory)] == ["applied"]
    (directory / "001_t.sql").write_text("CREATE TABLE IF NOT EXISTS t (x UInt16) ENGINE = MergeTree() ORDER BY x;\n")
    with pytest.raises(StoreError, match="changed after it was applied"):
        migrate(store, directory)


def test_migration_files_parse():
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    init = migrations[0]
    assert len(init.statements) == 6 and all(s.startswith("CREATE TABLE IF NOT EXISTS") for s in init.statements)
    assert migrations[1].min_server_version == (19, 6)


def test_unknown_store_urls_are_explained(monkeypatch):
    monkeypatch.delenv("FAIRWATCH_CLICKHOUSE", raising=False)
    with pytest.raises(StoreError, match="unknown store scheme"):
        open_store("postgres://x")
    with pytest.raises(StoreError, match="no store configured"):
        open_store("")
