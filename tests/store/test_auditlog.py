"""The tamper-evident audit log on ClickHouse 18.16 and chDB: intact chains verify, and an edited, a
deleted or an inserted row is caught at exactly that row.

The oracle for the hashes is the format written out here from the module's documentation
(SHA-256 over prev-hash, chain, seq, kind, time and canonical JSON joined by the unit separator),
not the module's own functions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from fairwatch.audit.snapshots import write_snapshots
from fairwatch.cli import app
from fairwatch.core.config import CoreConfig
from fairwatch.store.auditlog import AuditError, append_records, migrate_access, verify
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.testing.stack import wait_for_mutations
from typer.testing import CliRunner

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
ONE_DAY = (T0, T0 + timedelta(days=1))


@pytest.fixture
def store(migrated_store):
    return migrated_store


@pytest.fixture
def embedded(tmp_path):
    """chDB allows one data directory per process at a time: close it after the test."""
    opened = open_store(f"chdb://{tmp_path}/chdb")
    yield opened
    opened.close()


def oracle_hash(prev: str, chain: str, seq: int, kind: str, recorded_at: datetime, record: dict) -> str:
    content = json.dumps(record, sort_keys=True, separators=(",", ":"))
    text = "\x1f".join((prev, chain, str(seq), kind, recorded_at.strftime("%Y-%m-%d %H:%M:%S"), content))
    return hashlib.sha256(text.encode()).hexdigest()


def fill(store, n_calls: int = 10, per_call: int = 5, kind: str = "alert", key: bytes | None = None) -> list[dict]:
    """n_calls appends of per_call records, one minute apart; returns the records in order."""
    records = []
    for call in range(n_calls):
        batch = [{"call": call, "i": i, "value": call * 0.5 + i, "group": "F&Black"} for i in range(per_call)]
        append_records(store, kind, batch, key=key, now=T0 + timedelta(minutes=call))
        records += batch
    return records


def row(store, seq: int) -> tuple:
    rows = store.query("SELECT chain, seq, kind, recorded_at, content, prev_hash, hash, mac FROM audit_log"
                       " WHERE chain = 'alert' AND seq = %(seq)s", {"seq": seq})
    assert len(rows) == 1
    return rows[0]


@pytest.mark.services
def test_intact_chain_matches_the_documented_hash_format(store):
    records = fill(store)
    prev = "0" * 64
    for seq, record in enumerate(records, start=1):
        stored = row(store, seq)
        expected = oracle_hash(prev, "alert", seq, "alert", T0 + timedelta(minutes=(seq - 1) // 5), record)
        assert stored[5] == prev and stored[6] == expected and stored[7] == ""
        prev = expected
    result = verify(store, *ONE_DAY)
    assert result.ok and result.checked == 50
    assert result.chains == {"alert": (50, prev)}
    # a window in the middle starts from the record before it (the anchor) and checks the rest
    middle = verify(store, T0 + timedelta(minutes=4), T0 + timedelta(minutes=6))
    assert middle.ok and middle.checked == 1 + 10 and middle.chains["alert"][0] == 30


@pytest.mark.services
def test_an_edited_row_breaks_at_that_row(store):
    fill(store)
    store.execute("ALTER TABLE audit_log UPDATE content = replaceAll(content, 'F&Black', 'M&White')"
                  " WHERE chain = 'alert' AND seq = 23")
    wait_for_mutations(store)
    assert "M&White" in row(store, 23)[4]
    result = verify(store, *ONE_DAY)
    assert not result.ok
    assert (result.first_break.chain, result.first_break.seq) == ("alert", 23)
    assert "edited" in result.first_break.reason
    assert result.checked == 23  # it stops at the first broken link


@pytest.mark.services
def test_a_deleted_row_breaks_at_that_row(store):
    fill(store)
    store.execute("ALTER TABLE audit_log DELETE WHERE chain = 'alert' AND seq = 31")
    wait_for_mutations(store)
    result = verify(store, *ONE_DAY)
    assert (result.first_break.seq, result.ok) == (31, False)
    assert "missing" in result.first_break.reason
    # also when the window starts right at the deleted row (the anchor is the row before it)
    window = verify(store, T0 + timedelta(minutes=6), T0 + timedelta(minutes=8))
    assert window.first_break.seq == 31


@pytest.mark.services
def test_an_inserted_row_breaks_at_that_row(store):
    fill(store)
    chain, seq, kind, recorded_at, content, prev, digest, mac = row(store, 12)
    forged = content.replace("F&Black", "M&White")
    # a forger who knows the format gives the row a hash that fits the record before it
    forged_hash = oracle_hash(prev, chain, seq, kind, recorded_at, json.loads(forged))
    store.insert("audit_log", ["chain", "seq", "kind", "recorded_at", "content", "prev_hash", "hash", "mac"],
                 [(chain, seq, kind, recorded_at, forged, prev, forged_hash, "")])
    result = verify(store, *ONE_DAY)
    assert (result.first_break.seq, result.ok) == (12, False)
    assert "two records" in result.first_break.reason


@pytest.mark.services
def test_the_key_catches_a_rewritten_suffix(store):
    key = b"operator-secret"
    fill(store, key=key)
    # rewrite from seq 40 on, recomputing every hash: the chain is consistent again without the key
    rows = store.query("SELECT chain, seq, kind, recorded_at, content, prev_hash, hash, mac FROM audit_log"
                       " WHERE seq >= 40 ORDER BY seq")
    store.execute("ALTER TABLE audit_log DELETE WHERE seq >= 40")
    wait_for_mutations(store)
    prev, rewritten = rows[0][5], []
    for chain, seq, kind, recorded_at, content, _, _, mac in rows:
        content = content.replace('"value":', '"value":-')
        digest = oracle_hash(prev, chain, seq, kind, recorded_at, json.loads(content))
        rewritten.append((chain, seq, kind, recorded_at, content, prev, digest, mac))
        prev = digest
    store.insert("audit_log", ["chain", "seq", "kind", "recorded_at", "content", "prev_hash", "hash", "mac"], rewritten)
    assert verify(store, *ONE_DAY, key=None).ok  # the limit of a bare hash chain
    result = verify(store, *ONE_DAY, key=key)
    assert (result.first_break.seq, result.macs_checked) == (40, True)
    assert "MAC" in result.first_break.reason
    expected_mac = hmac.new(key, row(store, 1)[6].encode(), hashlib.sha256).hexdigest()
    assert row(store, 1)[7] == expected_mac


@pytest.mark.services
def test_verify_cli_exit_status_and_first_broken_link(store):
    fill(store, n_calls=3)
    args = ["audit", "verify-chain", "--store", store.url, "--from", "2026-11-25T00:00:00Z", "--to", "2026-11-26T00:00:00Z"]
    ok = CliRunner().invoke(app, args + ["--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["records_checked"] == 15
    store.execute("ALTER TABLE audit_log DELETE WHERE seq = 7")
    wait_for_mutations(store)
    broken = CliRunner().invoke(app, args)
    assert broken.exit_code == 1
    assert "BROKEN chain 'alert' seq 7" in broken.stdout


@pytest.mark.services
def test_snapshots_are_logged_as_written(store):
    from fairwatch.store.sink import ClickHouseSink
    from fairwatch.stream.processor import BatchProcessor, RawMessage
    from fairwatch.testing.workload import make_workload

    workload = make_workload(600, seed=5, hours=1)
    messages = [RawMessage(k, k, 0, i, key, value) for i, (k, key, value) in enumerate(workload.messages)]
    ClickHouseSink(store, CoreConfig()).write(BatchProcessor(CoreConfig()).process(messages, lambda e, p: None).sink)
    now = T0 + timedelta(hours=1)
    written = write_snapshots(store, CoreConfig(), now=now)
    assert written > 0
    snapshots = store.query("SELECT window_seconds, deployment, mode, attribute, group_label, impostor, fmr, status"
                            " FROM estimate_snapshots")
    logged = [json.loads(c) for (c,) in store.query(
        "SELECT content FROM audit_log WHERE chain = 'snapshot' ORDER BY seq")]
    assert len(logged) == written == len(snapshots)
    assert sorted(snapshots, key=str) == sorted(
        [(r["window_seconds"], r["deployment"], r["mode"], r["attribute"], r["group_label"], r["impostor"], r["fmr"],
          r["status"]) for r in logged], key=str)
    assert verify(store, now - timedelta(minutes=1), now + timedelta(minutes=1)).ok


def test_threads_of_one_process_do_not_fork_a_chain(embedded):
    store = embedded
    migrate(store)

    def writer(n: int) -> None:
        for i in range(10):
            append_records(store, "alert", [{"writer": n, "i": i}], now=T0)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [s for (s,) in store.query("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, 41))
    assert verify(store, *ONE_DAY).ok


def test_bad_input_is_refused_with_a_reason(embedded):
    store = embedded
    migrate(store)
    with pytest.raises(AuditError, match="naive datetime"):
        append_records(store, "alert", [{"at": datetime(2026, 1, 1)}])
    with pytest.raises(AuditError, match="audit chain"):
        append_records(store, "alert", [{}], chain="bad chain\x1f")
    with pytest.raises(AuditError, match="not before"):
        verify(store, T0, T0)
    append_records(store, "alert", [])  # nothing to log is not an error
    assert store.query("SELECT count() FROM audit_log") == [(0,)]


def test_access_migration_parses_and_is_skipped_where_it_cannot_run(embedded):
    from fairwatch.store.auditlog import ACCESS_DIR
    from fairwatch.store.migrations import load_migrations

    store = embedded
    [role] = load_migrations(ACCESS_DIR)
    assert role.min_server_version == (20, 4)
    for statement in role.statements:  # chDB's parser is current ClickHouse's: the SQL is valid there
        assert store.query(f"EXPLAIN AST {statement}")
    assert [r.status for r in migrate_access(store)] == ["skipped_no_access_control"]
