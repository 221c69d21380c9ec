"""The witness of the evidence log (fairwatch.audit.witness) and verification with a quorum of
witnesses, on chDB and on the ClickHouse server.

The witness cosigns a log's newest checkpoint only when the consistency proofs the sealer wrote
show that it extends the last one the witness cosigned. The oracles: a sequence sealed by one
store is cosigned at each newest size; two stores sealed with the same key that diverge (a fork),
a directory set back to older checkpoints (a rollback), a tampered proof and a foreign signature
are refused, with nothing cosigned for that log."""

import base64
import json
import shutil
import uuid
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from fairwatch.audit.evidence_log import origin_dir, seal
from fairwatch.audit.evidence_verify import verify
from fairwatch.audit.witness import cosigned_name, state_path, witness
from fairwatch.contracts.keys import generate_key
from fairwatch.contracts.signed_note import NoteError, open_note, parse_checkpoint, sign_note
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.stream.replay import replay
from fairwatch.testing.stack import server_url
from fairwatch.testing.stack import wait_for_mutations
from fairwatch.testing.stack import INSERT_EVENT

BASE = "test.fairwatch"
LOG_KEY = generate_key("operator")
W1, W2, W3 = generate_key("witness.example/w1"), generate_key("witness.example/w2"), generate_key("w3")
SERVER = pytest.param("server", marks=pytest.mark.services)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sim")
    paths = write_jsonl(simulate(load_scenario("default"), seed=11, events=400), out)
    with paths["events"].open("ab") as events:
        events.write(b'{"event_id": "broken"\n')  # a dead letter: that log too
    return paths


@pytest.fixture(params=[SERVER, "embedded"])
def fresh_store(request, tmp_path):
    """Opens a new migrated store per name, one at a time (chDB serves one directory per process)."""
    dropped = []

    @contextmanager
    def opened(name: str):
        if request.param == "embedded":
            url = f"chdb://{tmp_path / name}"
        else:
            url = server_url(request.getfixturevalue("stack")["FAIRWATCH_CLICKHOUSE_MIGRATOR"],
                             f"fw_test_{uuid.uuid4().hex[:10]}")
        with closing(open_store(url)) as store:
            if request.param == "server":
                dropped.append(url)
            migrate(store)
            yield store

    yield opened
    for url in dropped:
        with closing(open_store(url)) as store:
            store.execute(f"DROP DATABASE IF EXISTS {store.database}")


def _event(store):
    return store.query_values("SELECT event_id, deployment FROM match_events FINAL ORDER BY event_id LIMIT 1 OFFSET 7")[0]


def _add_event(store, event_id: str, suffix: str) -> None:
    """A new match event (a copy of ``event_id`` under a new id), stored now: the next seal logs it."""
    store.execute(
        f"{INSERT_EVENT} SELECT concat(event_id, %(s)s), occurred_at, occurred_at_us, deployment, algorithm,"
        " mode, score, threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " now(), cluster_id FROM match_events WHERE event_id = %(e)s", {"e": event_id, "s": suffix})


def _seal(store, outside):
    return seal(store, LOG_KEY, base=BASE, outside=outside)


def _witness(outside, key, state):
    return witness(outside, [LOG_KEY.verifier], key, state)


def _by_origin(result):
    return {w.origin: w for w in result.origins}


def _cosigned_files(outside: Path, origin: str) -> list[str]:
    return sorted(p.name for p in origin_dir(outside, origin).glob("*.cosigned"))


def test_a_consistent_sequence_is_cosigned_at_its_newest_checkpoint(fresh_store, files, tmp_path):
    outside, state = tmp_path / "checkpoints", tmp_path / "w1-state"
    with fresh_store("a") as store:
        replay(store, files["events"], files["outcomes"])
        first = _seal(store, outside)
        done = _witness(outside, W1, state)
        assert done.ok, [w.text() for w in done.origins]
        # trust on first use: each log's first checkpoint is cosigned
        assert {o: (w.previous_size, w.size) for o, w in _by_origin(done).items()} == {
            o: (0, c.size) for o, c in first.checkpoints.items()}
        for origin, checkpoint in first.checkpoints.items():
            cosigned = (origin_dir(outside, origin) / cosigned_name(checkpoint.size, W1)).read_text()
            opened = open_note(cosigned, [LOG_KEY.verifier, W1.verifier], require=[LOG_KEY.verifier], quorum=1)
            assert parse_checkpoint(opened.text) == checkpoint
            assert opened.verified == [LOG_KEY.key_id, W1.key_id]
            assert parse_checkpoint(open_note(state_path(state, origin).read_text(), [W1.verifier]).text) == checkpoint
        # two seals before the witness runs again: it checks both steps and cosigns the newest only
        event_id, deployment = _event(store)
        origin = f"{BASE}/deployment/{deployment}"
        _add_event(store, event_id, "-second")
        second = _seal(store, outside)
        _add_event(store, event_id, "-third")
        third = _seal(store, outside)
        assert second.appended == third.appended == {origin: 1}
    sizes = first.checkpoints[origin].size, second.checkpoints[origin].size, third.checkpoints[origin].size
    assert sizes[0] < sizes[1] < sizes[2]
    again = _by_origin(_witness(outside, W1, state))
    assert all(w.refused is None for w in again.values())
    assert (again[origin].previous_size, again[origin].size) == (sizes[0], sizes[2])
    assert _cosigned_files(outside, origin) == [cosigned_name(sizes[0], W1), cosigned_name(sizes[2], W1)]
    assert {o: w.size for o, w in again.items() if o != origin} == {
        o: c.size for o, c in first.checkpoints.items() if o != origin}  # nothing new there
    # a third run has nothing new and changes nothing
    assert [w.text() for w in _witness(outside, W1, state).origins] == [
        f"{o}: nothing new, size {w.size} cosigned" for o, w in sorted(again.items())]


def test_a_fork_is_refused(fresh_store, files, tmp_path):
    """Two stores sealed with the same key, one history up to size n, then each its own row."""
    dir_a, dir_b, state = tmp_path / "a-checkpoints", tmp_path / "b-checkpoints", tmp_path / "w1-state"
    with fresh_store("a") as store:
        replay(store, files["events"], files["outcomes"])
        common = _seal(store, dir_a)
        event_id, deployment = _event(store)
        _add_event(store, event_id, "-a")
        a = _seal(store, dir_a)
    with fresh_store("b") as store:
        replay(store, files["events"], files["outcomes"])
        assert _seal(store, dir_b).checkpoints == common.checkpoints  # the same history so far
        _add_event(store, event_id, "-b")
        b = _seal(store, dir_b)
        origin = f"{BASE}/deployment/{deployment}"
        n = common.checkpoints[origin].size
        assert a.checkpoints[origin].size == b.checkpoints[origin].size == n + 1
        assert a.checkpoints[origin].root_hash != b.checkpoints[origin].root_hash
        assert _witness(dir_a, W1, state).ok
        refused = _witness(dir_b, W1, state)
        assert not refused.ok
        assert [(w.origin, w.refused) for w in refused.origins if w.refused] == [
            (origin, f"fork: the checkpoint of size {n + 1} has another root than the checkpoint of size {n + 1} that "
                     "this witness cosigned")]
        assert _by_origin(refused)[origin].text().startswith(f"REFUSED {origin}: fork")
        assert _cosigned_files(dir_b, origin) == []
        # B grows on: its own proofs hold, but none starts from what the witness cosigned
        _add_event(store, event_id, "-b2")
        _seal(store, dir_b)
    again = _by_origin(_witness(dir_b, W1, state))
    assert again[origin].refused.startswith(f"fork: the checkpoint of size {n + 1}")
    assert _cosigned_files(dir_b, origin) == []
    assert state_path(state, origin).read_text() == (origin_dir(dir_a, origin) / cosigned_name(n + 1, W1)).read_text()
    # A witness that never saw A cosigns B: the refusal comes from what W1 cosigned, not from B
    fresh = _by_origin(_witness(dir_b, W2, tmp_path / "w2-state"))
    assert fresh[origin].refused is None and fresh[origin].size == n + 2
    # without B's checkpoint of size n + 1, B's proof from n + 1 to n + 2 is checked against A's n + 1
    (origin_dir(dir_b, origin) / f"{n + 1:012d}.checkpoint").unlink()
    alone = _by_origin(_witness(dir_b, W1, state))[origin]
    assert alone.refused == (f"inconsistent: the checkpoint of size {n + 2} does not extend the checkpoint of size "
                             f"{n + 1} (the consistency proof fails)")


@pytest.fixture
def sealed_twice(fresh_store, files, tmp_path):
    """A store sealed, witnessed by W1, grown by one row and sealed again (not witnessed yet);
    with a copy of the checkpoint directory as it was after the first seal."""
    outside, state = tmp_path / "checkpoints", tmp_path / "w1-state"
    with fresh_store("a") as store:
        replay(store, files["events"], files["outcomes"])
        first = _seal(store, outside)
        assert _witness(outside, W1, state).ok
        shutil.copytree(outside, tmp_path / "old-checkpoints")
        event_id, deployment = _event(store)
        _add_event(store, event_id, "-new")
        second = _seal(store, outside)
        origin = f"{BASE}/deployment/{deployment}"
        yield store, outside, state, origin, first.checkpoints[origin].size, second.checkpoints[origin].size


def test_a_rollback_is_refused(sealed_twice, tmp_path):
    _, outside, state, origin, old, new = sealed_twice
    assert _by_origin(_witness(outside, W1, state))[origin].size == new
    rolled_back = _by_origin(_witness(tmp_path / "old-checkpoints", W1, state))
    assert rolled_back[origin].refused == (f"rollback: the newest checkpoint has size {old}, smaller than size {new} "
                                           "that this witness cosigned")
    assert (rolled_back[origin].previous_size, rolled_back[origin].size) == (new, new)
    assert _cosigned_files(tmp_path / "old-checkpoints", origin) == [cosigned_name(old, W1)]  # from before
    assert parse_checkpoint(open_note(state_path(state, origin).read_text(), [W1.verifier]).text).size == new


def test_a_step_whose_proof_fails_is_refused_and_nothing_is_cosigned(sealed_twice):
    _, outside, state, origin, old, new = sealed_twice
    proof_file = origin_dir(outside, origin) / f"{new:012d}.proof.json"
    proof = json.loads(proof_file.read_text())
    first = bytearray(base64.b64decode(proof["proof"][0]))
    first[0] ^= 1
    proof_file.write_text(json.dumps({**proof, "proof": [base64.b64encode(first).decode(), *proof["proof"][1:]]}))
    result = _by_origin(_witness(outside, W1, state))
    assert result[origin].refused == (f"inconsistent: the checkpoint of size {new} does not extend the checkpoint "
                                      f"of size {old} (the consistency proof fails)")
    assert _cosigned_files(outside, origin) == [cosigned_name(old, W1)]
    assert parse_checkpoint(open_note(state_path(state, origin).read_text(), [W1.verifier]).text).size == old
    proof_file.unlink()
    assert _by_origin(_witness(outside, W1, state))[origin].refused.endswith(f"{proof_file} is missing")


def test_a_checkpoint_not_signed_by_the_log_is_refused(sealed_twice):
    _, outside, state, origin, old, new = sealed_twice
    path = origin_dir(outside, origin) / f"{new:012d}.checkpoint"
    text = open_note(path.read_text(), [LOG_KEY.verifier]).text
    path.write_text(sign_note(text, [generate_key("operator")]))  # the same name, another key
    refused = _by_origin(_witness(outside, W1, state))[origin].refused
    assert refused.startswith(f"the checkpoint of size {new} ({path}) does not verify with the log's key")
    assert _cosigned_files(outside, origin) == [cosigned_name(old, W1)]


def test_verify_requires_a_quorum_of_witnesses_on_the_newest_checkpoint(sealed_twice):
    store, outside, state, origin, old, new = sealed_twice

    def findings(**kwargs):
        result = verify(store, [LOG_KEY.verifier], base=BASE, outside=[outside], **kwargs)
        return [(f.origin, f.what, f.detail) for f in result.findings], result

    # the newest checkpoint of `origin` is not witnessed yet; the other logs' are, by W1
    assert findings()[0] == []  # without witnesses, as before
    missing, _ = findings(witnesses=[W1.verifier], quorum=1)
    assert missing == [(origin, "unwitnessed", f"the newest checkpoint, size {new}, has 0 of the 1 witness "
                                               "cosignatures required")]
    assert _witness(outside, W1, state).ok and _witness(outside, W2, state.with_name("w2-state")).ok
    met, result = findings(witnesses=[W1.verifier, W2.verifier])
    assert met == [] and {log.witnesses for log in result.logs} == {2}
    assert findings(witnesses=[W1.verifier, W2.verifier, W3.verifier], quorum=2)[0] == []
    short, _ = findings(witnesses=[W1.verifier, W3.verifier])
    assert {(o, what) for o, what, _ in short} == {(log.origin, "unwitnessed") for log in result.logs}
    assert (origin, "unwitnessed", f"the newest checkpoint, size {new}, has 1 of the 2 witness cosignatures "
                                   "required") in short
    with pytest.raises(ValueError, match="quorum of 3 of 2"):
        findings(witnesses=[W1.verifier, W2.verifier], quorum=3)
    # a cosignature with a byte changed does not count, and says so
    path = origin_dir(outside, origin) / cosigned_name(new, W2)
    note = path.read_text()
    line = note.index(f"— {W2.name} ")
    at = line + len(f"— {W2.name} ") + 20
    path.write_text(note[:at] + ("A" if note[at] != "A" else "B") + note[at + 1:])
    with pytest.raises(NoteError):
        open_note(path.read_text(), [W2.verifier])
    tampered, _ = findings(witnesses=[W1.verifier, W2.verifier])
    assert [what for o, what, _ in tampered if o == origin] == ["bad_signature", "unwitnessed"]
    assert (origin, "unwitnessed", f"the newest checkpoint, size {new}, has 1 of the 2 witness cosignatures "
                                   "required") in tampered


def test_cosigned_checkpoints_count_for_truncation(sealed_twice):
    """Cosigned notes are checkpoints: with the plain checkpoint files gone, they still show
    that the log was larger than a rolled-back store."""
    store, outside, state, origin, old, new = sealed_twice
    assert _witness(outside, W1, state).ok
    for path in origin_dir(outside, origin).glob("*.checkpoint"):
        path.unlink()
    store.execute("ALTER TABLE evidence_checkpoints DELETE WHERE origin = %(o)s", {"o": origin})
    store.execute("ALTER TABLE evidence_leaves DELETE WHERE origin = %(o)s AND leaf_index >= %(n)s",
                  {"o": origin, "n": old})
    wait_for_mutations(store)
    result = verify(store, [LOG_KEY.verifier], base=BASE, outside=[outside])
    truncated = [f for f in result.findings if f.what == "truncated"]
    assert len(truncated) == 1 and f"held {new} leaves; the store holds {old}" in truncated[0].detail


