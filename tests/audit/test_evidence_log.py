"""The evidence log on chDB and on the ClickHouse server: a sealed store verifies, and each kind of
tampering (edit, insert, delete, reorder, truncation, fork) is found with the first bad row named.

The oracle for "which row" is the tampering itself: each test changes one known row and expects
exactly that row named."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fairwatch.audit.evidence_log import EvidenceError, origin_dir, seal
from fairwatch.audit.evidence_proofs import check, prove
from fairwatch.audit.evidence_verify import verify
from fairwatch.contracts.keys import generate_key
from fairwatch.core import merkle
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.evidence import SOURCES, leaves
from fairwatch.stream.replay import replay
from fairwatch.testing.stack import wait_for_mutations
from fairwatch.testing.stack import INSERT_EVENT, INSERT_OUTCOME

BASE = "test.fairwatch"
KEY = generate_key("operator")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sim")
    paths = write_jsonl(simulate(load_scenario("default"), seed=5, events=1500), out)
    with paths["events"].open("ab") as events:
        events.write(b'{"event_id": "broken"\n')  # a dead letter, so that log is exercised too
    return paths


@pytest.fixture
def sealed(migrated_store, files, tmp_path):
    replay(migrated_store, files["events"], files["outcomes"])
    outside = tmp_path / "checkpoints"
    result = seal(migrated_store, KEY, base=BASE, outside=outside)
    assert result.leaves > 0
    return migrated_store, outside, result


def _verify(store, outside):
    return verify(store, [KEY.verifier], base=BASE, outside=[outside])


def _one_event(store):
    return store.query_values("SELECT event_id, deployment FROM match_events FINAL ORDER BY event_id LIMIT 1 OFFSET 7")[0]


def test_a_sealed_store_verifies_and_every_row_is_a_leaf(sealed):
    store, outside, result = sealed
    expected = sum(int(store.query_values(f"SELECT count() FROM ({source.select()})")[0][0]) for source in SOURCES)
    assert result.leaves == expected  # the recount: every evidence row, once
    verification = _verify(store, outside)
    assert verification.ok, [f.text() for f in verification.findings]
    assert verification.rows_checked == expected
    assert {log.origin for log in verification.logs} == set(result.checkpoints)
    assert any(origin.endswith("/dead-letters") for origin in result.checkpoints)
    # the signed roots are the roots of the leaves, recomputed here by the brute-force fold
    for origin, checkpoint in result.checkpoints.items():
        hashes = [bytes.fromhex(row[3]) for row in leaves(store, origin)]
        assert merkle.root(hashes) == checkpoint.root_hash and len(hashes) == checkpoint.size


def test_sealing_again_adds_nothing_and_new_rows_extend_the_log_consistently(sealed, files):
    store, outside, first = sealed
    assert seal(store, KEY, base=BASE, outside=outside).leaves == 0
    replay(store, files["events"], files["outcomes"])  # a replay of the same input: nothing new
    assert seal(store, KEY, base=BASE, outside=outside).leaves == 0
    event_id, deployment = _one_event(store)
    store.execute(
        f"{INSERT_EVENT} SELECT concat(event_id, '-new'), occurred_at, occurred_at_us, deployment, algorithm,"
        " mode, score, threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " now(), cluster_id FROM match_events WHERE event_id = %(e)s", {"e": event_id})
    second = seal(store, KEY, base=BASE, outside=outside)
    origin = f"{BASE}/deployment/{deployment}"
    assert second.appended == {origin: 1}
    old, new = first.checkpoints[origin], second.checkpoints[origin]
    proof = json.loads((origin_dir(outside, origin) / f"{new.size:012d}.proof.json").read_text())
    assert proof["old_size"] == old.size
    import base64
    assert merkle.check_tree([base64.b64decode(h) for h in proof["proof"]], new.size, new.root_hash, old.size,
                             old.root_hash)
    assert _verify(store, outside).ok


def _only(verification, what):
    assert not verification.ok
    assert [f.what for f in verification.findings][:1] == [what], [f.text() for f in verification.findings]
    return verification.findings[0]


def test_an_edited_row_is_named(sealed):
    store, outside, _ = sealed
    event_id, _ = _one_event(store)
    # the writer's attack: a later insert of the same key supersedes the row (ReplacingMergeTree)
    store.execute(
        f"{INSERT_EVENT} SELECT event_id, occurred_at, occurred_at_us, deployment, algorithm, mode, score,"
        " threshold, if(decision = 'match', 'non_match', 'match'), subject_keys, subject_values, reference_keys,"
        " reference_values, context, ingested_at + 1, cluster_id FROM match_events WHERE event_id = %(e)s",
        {"e": event_id})
    finding = _only(_verify(store, outside), "edited")
    assert finding.row == f"match_events (event_id={event_id})"


def test_an_edited_outcome_revision_is_named(sealed):
    store, outside, _ = sealed
    event_id, revision = store.query_values("SELECT event_id, revision FROM verified_outcomes FINAL "
                                            "ORDER BY event_id LIMIT 1")[0]
    store.execute(
        f"{INSERT_OUTCOME} SELECT event_id, verified_at, if(truth = 'genuine', 'impostor', 'genuine'),"
        " reviewer, revision, inclusion_prob, ingested_at + 1 FROM verified_outcomes WHERE event_id = %(e)s",
        {"e": event_id})
    finding = _only(_verify(store, outside), "edited")
    assert finding.row == f"verified_outcomes (event_id={event_id}, revision={revision})"


def test_an_inserted_row_is_named(sealed):
    store, outside, _ = sealed
    event_id, _ = _one_event(store)
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)  # claims to be old, so the sealer never saw it
    store.execute(
        f"{INSERT_EVENT} SELECT 'forged-1', occurred_at, occurred_at_us, deployment, algorithm, mode, score,"
        " threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " %(old)s, cluster_id FROM match_events WHERE event_id = %(e)s", {"e": event_id, "old": old})
    finding = _only(_verify(store, outside), "inserted")
    assert finding.row == "match_events (event_id=forged-1)"


def test_a_deleted_row_is_named(sealed):
    store, outside, _ = sealed
    event_id, _ = _one_event(store)
    _delete_event(store, event_id)
    wait_for_mutations(store)
    finding = _only(_verify(store, outside), "deleted")
    assert finding.row == f"match_events (event_id={event_id})"


def test_a_row_deleted_before_its_retention_date_fails_and_one_after_it_does_not(sealed, monkeypatch):
    """With a retention of 200 days (a TTL on every table: chDB), deleting a sealed event now is
    deleted evidence (its verdict's evidence row, read with the event, goes with it); the same seen
    201 days after the seal is the TTL's, lawful. On 18.16, which has no TTL, the tables keep
    everything, so any deletion is a finding."""
    import time

    from fairwatch.audit import evidence_verify
    from fairwatch.store.retention import apply_retention, ttl_supported

    store, outside, _ = sealed
    if ttl_supported(store):
        apply_retention(store, 200)
    event_id, _ = _one_event(store)
    _delete_event(store, event_id)
    wait_for_mutations(store)
    finding = _only(_verify(store, outside), "deleted")
    assert finding.row == f"match_events (event_id={event_id})"
    kept = "though its table keeps rows 200 days" if ttl_supported(store) else "its table has no retention"
    assert kept in finding.text()
    later = time.time() + 201 * 86_400
    monkeypatch.setattr(evidence_verify.time, "time", lambda: later)
    verification = _verify(store, outside)
    outcomes = int(store.query_values("SELECT count() FROM verified_outcomes FINAL WHERE event_id = %(e)s",
                                      {"e": event_id})[0][0])
    if ttl_supported(store):
        assert verification.ok, [f.text() for f in verification.findings]
        assert sum(log.expired for log in verification.logs) == 1 + outcomes
    else:
        assert [f.what for f in verification.findings] == ["deleted"] * (1 + outcomes)


def test_reordered_leaves_are_found_at_the_first_moved_leaf(sealed):
    store, outside, result = sealed
    origin = sorted(o for o in result.checkpoints if "/deployment/" in o)[0]
    rows = leaves(store, origin)
    i, j = 3, 11
    (_, kind_i, key_i, hash_i, _), (_, kind_j, key_j, hash_j, _) = rows[i], rows[j]
    store.execute(
        "ALTER TABLE evidence_leaves UPDATE kind = if(leaf_index = %(i)s, %(kj)s, %(ki)s),"
        " row_key = if(leaf_index = %(i)s, %(rj)s, %(ri)s), leaf_hash = if(leaf_index = %(i)s, %(hj)s, %(hi)s)"
        " WHERE origin = %(o)s AND leaf_index IN (%(i)s, %(j)s)",
        {"i": i, "j": j, "ki": kind_i, "kj": kind_j, "ri": key_i, "rj": key_j, "hi": hash_i, "hj": hash_j, "o": origin})
    wait_for_mutations(store)
    finding = _only(_verify(store, outside), "reordered")
    assert finding.leaf_index == i


def test_a_truncated_store_is_caught_by_the_checkpoints_kept_outside(sealed):
    store, outside, result = sealed
    origin = sorted(o for o in result.checkpoints if "/deployment/" in o)[0]
    size = result.checkpoints[origin].size
    # a rollback: the newest leaves, their tree hashes and the store's checkpoints are removed
    store.execute("ALTER TABLE evidence_leaves DELETE WHERE origin = %(o)s AND leaf_index >= %(n)s",
                  {"o": origin, "n": size - 5})
    store.execute("ALTER TABLE evidence_checkpoints DELETE WHERE origin = %(o)s", {"o": origin})
    wait_for_mutations(store)
    verification = _verify(store, outside)
    assert "truncated" in [f.what for f in verification.findings]
    truncated = next(f for f in verification.findings if f.what == "truncated")
    assert f"held {size} leaves" in truncated.detail and f"holds {size - 5}" in truncated.detail


def test_a_fork_is_caught(sealed, tmp_path):
    store, outside, result = sealed
    origin = sorted(o for o in result.checkpoints if "/deployment/" in o)[0]
    checkpoint = result.checkpoints[origin]
    from fairwatch.contracts.signed_note import Checkpoint, sign_note

    other = Checkpoint(origin, checkpoint.size, merkle.leaf_hash(b"another history"))
    forked = tmp_path / "forked"
    (origin_dir(forked, origin)).mkdir(parents=True)
    (origin_dir(forked, origin) / f"{other.size:012d}.checkpoint").write_text(sign_note(other.text(), [KEY]))
    verification = verify(store, [KEY.verifier], base=BASE, outside=[outside, forked])
    assert "fork" in [f.what for f in verification.findings]


def test_a_checkpoint_not_signed_by_the_operator_is_refused(sealed, tmp_path):
    store, outside, result = sealed
    verification = verify(store, [generate_key("operator").verifier], base=BASE, outside=[outside])
    # every checkpoint is refused, so each log stands unsigned
    assert {f.what for f in verification.findings} == {"bad_signature", "unsigned"}
    assert verification.findings[0].what == "bad_signature"


def test_nothing_to_verify_is_an_error(migrated_store):
    with pytest.raises(EvidenceError, match="nothing to verify"):
        verify(migrated_store, [KEY.verifier], base=BASE)


def test_an_inclusion_bundle_checks_offline_and_fails_when_tampered(sealed):
    store, _, _ = sealed
    event_id, _ = _one_event(store)
    bundle = prove(store, "match_event", event_id, base=BASE)
    checked = check(json.loads(json.dumps(bundle)), [KEY.verifier])
    assert event_id in checked.content and checked.row == f"match_event/v2 {event_id}"
    # the row is named from the proved bytes: a bundle's own "row" field proves nothing
    assert check({**bundle, "row": "something else"}, [KEY.verifier]).row == checked.row
    import base64
    data = base64.b64decode(bundle["leaf"]).replace(b'"match"', b'"non_match"').replace(b'"non_match"', b'"match"', 1)
    with pytest.raises(EvidenceError, match="inclusion proof fails"):
        check({**bundle, "leaf": base64.b64encode(data + b" ").decode()}, [KEY.verifier])
    with pytest.raises(EvidenceError, match="does not verify"):
        check(bundle, [generate_key("operator").verifier])


def _delete_event(store, event_id: str) -> None:
    """Delete one match event the way an operator would (synchronously where the server can)."""
    sql = "ALTER TABLE match_events DELETE WHERE event_id = %(e)s"
    store.execute(f"{sql} SETTINGS mutations_sync = 1" if _modern(store) else sql, {"e": event_id})


def _modern(store) -> bool:
    return store.server_version() >= (20,)


def test_a_row_with_an_old_ingestion_time_stored_after_a_seal_is_sealed_by_the_next(sealed):
    """The ingestion time is the client's: the sealer takes every row no leaf holds."""
    store, outside, _ = sealed
    event_id, deployment = _one_event(store)
    store.execute(
        f"{INSERT_EVENT} SELECT 'late-1', occurred_at, occurred_at_us, deployment, algorithm, mode, score,"
        " threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " %(old)s, cluster_id FROM match_events WHERE event_id = %(e)s",
        {"e": event_id, "old": datetime(2020, 1, 1, tzinfo=timezone.utc)})
    assert seal(store, KEY, base=BASE, outside=outside).appended == {f"{BASE}/deployment/{deployment}": 1}
    assert _verify(store, outside).ok


def test_a_second_stored_copy_of_a_key_is_named_not_a_crash(sealed):
    store, outside, _ = sealed
    event_id, _ = _one_event(store)
    # the same event_id under another algorithm: a different row of match_events with the same row key
    store.execute(
        f"{INSERT_EVENT} SELECT event_id, occurred_at, occurred_at_us, deployment, 'other-algo', mode, score,"
        " threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " ingested_at, cluster_id FROM match_events WHERE event_id = %(e)s", {"e": event_id})
    finding = _only(_verify(store, outside), "edited")
    assert finding.row == f"match_events (event_id={event_id})"


def test_the_sealer_refuses_to_sign_over_a_changed_tree(sealed):
    store, outside, result = sealed
    origin = sorted(o for o in result.checkpoints if "/deployment/" in o)[0]
    size = result.checkpoints[origin].size
    # the stored tree hashes are changed: signing on top of them would put the key on a fork
    store.execute("ALTER TABLE evidence_hashes UPDATE hash = %(h)s WHERE origin = %(o)s AND storage_index >= %(i)s",
                  {"h": "00" * 32, "o": origin, "i": merkle.stored_hash_index(0, size // 2)})
    wait_for_mutations(store)
    event_id, deployment = store.query_values(
        "SELECT event_id, deployment FROM match_events FINAL WHERE %(o)s = concat(%(b)s, '/deployment/', deployment)"
        " LIMIT 1", {"o": origin, "b": BASE})[0]
    store.execute(
        f"{INSERT_EVENT} SELECT 'new-1', occurred_at, occurred_at_us, deployment, algorithm, mode, score,"
        " threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " now(), cluster_id FROM match_events WHERE event_id = %(e)s", {"e": event_id})
    with pytest.raises(EvidenceError, match="no longer gives the root signed"):
        seal(store, KEY, base=BASE, outside=outside)


def test_verifying_under_another_origin_says_so(sealed):
    store, outside, _ = sealed
    verification = verify(store, [KEY.verifier], base="another.origin", outside=[outside])
    assert {f.what for f in verification.findings} >= {"unknown_origin"}
    assert "deleted" not in {f.what for f in verification.findings}


def test_a_checkpoint_lost_outside_is_spanned_by_the_next_proof(sealed):
    store, outside, first = sealed
    origin = sorted(o for o in first.checkpoints if "/deployment/" in o)[0]
    lost = origin_dir(outside, origin) / f"{first.checkpoints[origin].size:012d}.checkpoint"
    lost.unlink()  # a crash between the store's checkpoint and the file
    event_id = store.query_values(
        "SELECT event_id FROM match_events FINAL WHERE %(o)s = concat(%(b)s, '/deployment/', deployment) LIMIT 1",
        {"o": origin, "b": BASE})[0][0]
    store.execute(
        f"{INSERT_EVENT} SELECT 'new-2', occurred_at, occurred_at_us, deployment, algorithm, mode, score,"
        " threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " now(), cluster_id FROM match_events WHERE event_id = %(e)s", {"e": event_id})
    second = seal(store, KEY, base=BASE, outside=outside)
    proof = json.loads((origin_dir(outside, origin) / f"{second.checkpoints[origin].size:012d}.proof.json").read_text())
    assert proof["old_size"] == 0 and proof["proof"] == []  # no earlier checkpoint outside: nothing to span from
    assert _verify(store, outside).ok
