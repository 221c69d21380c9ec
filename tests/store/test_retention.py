"""Retention: a TTL with a floor where the server has TTLs (chDB), rows that really go when older,
and where it has none (ClickHouse 18.16) the refusal that says so; ``fairwatch audit retention``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from fairwatch.store.retention import LOG_FLOOR_DAYS, TABLES, RetentionError, apply_retention, retention_status
from fairwatch.testing.cli_runs import invoke, one_error
from fairwatch.testing.stack import INSERT_EVENT


def _event(store, event_id: str, when: datetime) -> None:
    # INSERT ... SELECT: the native client waits for a data block after INSERT ... VALUES
    store.execute(f"{INSERT_EVENT} SELECT '{event_id}', toDateTime({int(when.timestamp())}), 0, 'gate', 'algo',"
                  " 'verification', 0.5, 0.4, 'match', ['sex'], ['F'], emptyArrayString(), emptyArrayString(), '{}',"
                  f" toDateTime({int(when.timestamp())}), ''")


def test_a_retention_deletes_older_rows_and_never_goes_below_its_floor(migrated_store):
    now = datetime.now(timezone.utc)
    _event(migrated_store, "old", now - timedelta(days=400))
    _event(migrated_store, "recent", now - timedelta(days=100))
    with pytest.raises(RetentionError, match=f"at least {LOG_FLOOR_DAYS} days, got 30"):
        apply_retention(migrated_store, 30)
    with pytest.raises(RetentionError, match="no retention for nonsense"):
        apply_retention(migrated_store, 365, ["nonsense"])
    before = {t.table: t for t in retention_status(migrated_store)}
    assert set(before) == set(TABLES)
    assert before["match_events"].rows == 2 and before["match_events"].ttl_days is None
    assert before["match_events"].status == "kept"
    if migrated_store.server_version() < (19, 6):  # the local stack's 18.16
        with pytest.raises(RetentionError, match=r"has no TTL \(from 19.6\)"):
            apply_retention(migrated_store, 200)
        return
    done = apply_retention(migrated_store, 200)
    assert len(done) == len(TABLES) - 1  # the dead letters keep their 90 days (migration 002)
    migrated_store.execute("OPTIMIZE TABLE match_events FINAL")
    assert [row[0] for row in migrated_store.query("SELECT event_id FROM match_events")] == ["recent"]
    after = {t.table: t for t in retention_status(migrated_store)}
    assert {t: r.ttl_days for t, r in after.items()} == {t: 90 if t == "dead_letters" else 200 for t in TABLES}
    assert all(r.status == "ok" for r in after.values())
    assert after["match_events"].rows == 1


def test_audit_retention_prints_each_table_and_fails_below_a_floor(tmp_path):
    url = f"chdb://{tmp_path}/store"
    assert invoke("migrate", "--store", url).exit_code == 0
    set_ = invoke("retention", "--days", "365", "--table", "match_events", "--store", url)
    assert set_.exit_code == 0, set_.output
    assert set_.stdout.strip() == "match_events: rows older than 365 days by occurred_at are deleted"
    one_error(invoke("retention", "--days", "100", "--store", url), 2, "at least 183 days, got 100")
    again = invoke("retention", "--days", "400", "--table", "group_counts", "--store", url, "--json")
    assert json.loads(again.stdout) == {"days": 400, "done": [
        "group_counts: rows older than 400 days by bucket are deleted"]}
    shown = invoke("audit", "retention", "--store", url, "--json")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    rows = {t["table"]: t for t in document["tables"]}
    assert document["ttl_supported"] is True
    assert (rows["match_events"]["ttl_days"], rows["match_events"]["status"]) == (365, "ok")
    assert (rows["verified_outcomes"]["ttl_days"], rows["verified_outcomes"]["status"]) == (None, "kept")
    # a TTL set by hand below the floor is found
    from fairwatch.store.clickhouse import open_store

    store = open_store(url)
    try:
        store.execute("ALTER TABLE verified_outcomes MODIFY TTL verified_at + toIntervalDay(30)")
    finally:
        store.close()
    one_error(invoke("audit", "retention", "--store", url), 1, "below the floor: verified_outcomes (30 < 183 days)")


def test_migrate_applies_a_retention_policy_where_the_server_has_ttl_and_says_where_it_has_not(stack, tmp_path):
    """The regulation issue's "applied by the migrations on servers that support TTL and reported as
    a clear limitation where they do not": chDB gets the TTLs (audit retention reads them back),
    ClickHouse 18.16 keeps every row and the migration says so; a period below a floor is refused."""
    url = f"chdb://{tmp_path}/store"
    done = invoke("migrate", "--store", url, "--retention-days", "200", "--json")
    assert done.exit_code == 0, done.output
    applied = json.loads(done.stdout)["retention"]["applied"]
    assert len(applied) == len(TABLES) - 1 and all("200 days" in line for line in applied)
    shown = {t["table"]: t["ttl_days"] for t in json.loads(invoke("audit", "retention", "--store", url, "--json").stdout)["tables"]}
    assert shown == {t: 90 if t == "dead_letters" else 200 for t in TABLES}
    one_error(invoke("migrate", "--store", url, "--retention-days", "30"), 2, "at least 183 days, got 30")
    from fairwatch.testing.stack import server_url

    import uuid

    server = server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_test_{uuid.uuid4().hex[:10]}")
    old = invoke("migrate", "--store", server, "--retention-days", "200")
    try:
        assert old.exit_code == 0, old.output
        assert "retention: not applied: ClickHouse 18.16" in old.stdout and "has no TTL" in old.stdout
    finally:
        from contextlib import closing

        from fairwatch.store.clickhouse import open_store

        with closing(open_store(server)) as opened:
            opened.execute(f"DROP DATABASE IF EXISTS {opened.database}")
