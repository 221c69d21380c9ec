"""The issue's acceptance point "The Go verifier accepts every checkpoint, cosignature and proof
fairwatch writes, and rejects a tampered one", on what a sealed store really writes: the
checkpoint notes and consistency proofs of its outside directory, the notes its witnesses
cosign, and the inclusion proofs of `fairwatch audit prove` bundles, each checked by Go's
golang.org/x/mod/sumdb/note and sumdb/tlog (tests/go/evidencecheck), and each rejected with one
byte flipped. The roots that the proofs are checked against are the ones Go reads from the notes."""

import base64
import hashlib
import json
from pathlib import Path

import pytest

from fairwatch.audit.evidence_log import seal
from fairwatch.audit.evidence_proofs import prove
from fairwatch.audit.witness import witness
from fairwatch.contracts.keys import generate_key
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.stream.replay import replay
from fairwatch.testing.goverifier import run_evidencecheck
from fairwatch.testing.stack import INSERT_EVENT

BASE = "test.fairwatch"
LOG_KEY = generate_key("log.example/operator")
W1, W2 = generate_key("witness.example/w1"), generate_key("witness.example/w2")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sim")
    paths = write_jsonl(simulate(load_scenario("default"), seed=3, events=300), out)
    with paths["events"].open("ab") as events:
        events.write(b'{"event_id": "broken"\n[1, 2]\n')  # two dead letters: that log too, with a proof path
    return paths


@pytest.fixture
def sealed(migrated_store, files, tmp_path):
    """A store sealed three times (the later seals add rows to two logs), witnessed after the
    first seal by W1 and after the last by W1 and W2; and inclusion bundles of three kinds."""
    store, outside = migrated_store, tmp_path / "checkpoints"
    replay(store, files["events"], files["outcomes"])
    seal(store, LOG_KEY, base=BASE, outside=outside)
    assert witness(outside, [LOG_KEY.verifier], W1, tmp_path / "w1").ok
    events = store.query_values("SELECT event_id, deployment FROM match_events FINAL ORDER BY event_id")
    by_deployment = {deployment: event_id for event_id, deployment in events}
    for round_ in ("a", "b"):
        for event_id in sorted(by_deployment.values())[:2]:
            store.execute(
                f"{INSERT_EVENT} SELECT concat(event_id, %(s)s), occurred_at, occurred_at_us, deployment,"
                " algorithm, mode, score, threshold, decision, subject_keys, subject_values, reference_keys,"
                " reference_values, context, now(), cluster_id FROM match_events WHERE event_id = %(e)s",
                {"e": event_id, "s": f"-{round_}"})
        seal(store, LOG_KEY, base=BASE, outside=outside)
    assert witness(outside, [LOG_KEY.verifier], W1, tmp_path / "w1").ok
    assert witness(outside, [LOG_KEY.verifier], W2, tmp_path / "w2").ok
    outcome = store.query_values("SELECT event_id, revision FROM verified_outcomes FINAL ORDER BY event_id LIMIT 1")[0]
    dead = store.query_values("SELECT source_topic, kafka_partition, kafka_offset, record_index FROM dead_letters")[0]
    bundles = [prove(store, "match_event", events[len(events) // 2][0], base=BASE),
               prove(store, "verified_outcome", f"{outcome[0]} {outcome[1]}", base=BASE),
               prove(store, "dead_letter", " ".join(str(v) for v in dead), base=BASE)]
    return outside, [json.loads(json.dumps(b)) for b in bundles]  # as a bundle file holds them


def _note_flips(note: str, signers) -> list[tuple[list, bytes]]:
    """(verifier keys, the note with one byte flipped): every 5th byte of its text, offered all
    the signers' keys; then bytes of each signer's line (its key name, the key hash and the
    signature), offered the key whose signature it spoils (Go ignores a line of a key it is not
    given, and a flipped name or hash names a key it is not given)."""
    raw = note.encode()
    text_end = raw.index(b"\n\n") + 1
    flipped = [(list(signers), flip(raw, at)) for at in range(0, text_end, 5)]
    for key in signers:
        name = raw.index(f"— {key.name} ".encode()) + len("— ".encode())
        signature = name + len(key.name) + 1
        flipped += [([key], flip(raw, at)) for at in (name, name + len(key.name) - 1, signature + 1, signature + 30,
                                                      signature + 80)]
    return flipped


def _assert_go_rejects(command: str, note: bytes, verifiers) -> None:
    ok, reason = run_evidencecheck(command, {"note": note.decode(), "verifiers": [k.verifier.text() for k in verifiers]})
    assert not ok and reason, note


def _go_checkpoint(note: str, verifiers) -> tuple[str, int, bytes, list[str]]:
    ok, out = run_evidencecheck("checkpoint", {"note": note, "verifiers": [k.verifier.text() for k in verifiers]})
    assert ok, out
    origin, size, root, *signers = out.splitlines()
    return origin, int(size), base64.b64decode(root), signers


def test_go_accepts_every_checkpoint_in_the_outside_directory_and_rejects_each_tampered(sealed):
    outside, _ = sealed
    paths = sorted(outside.glob("*/*.checkpoint"))
    assert len(paths) >= 5  # every log's first checkpoint and the two grown logs' later ones
    for path in paths:
        origin, size, _, signers = _go_checkpoint(path.read_text(), [LOG_KEY])
        assert signers == [LOG_KEY.key_id]
        assert path.name == f"{size:012d}.checkpoint" and path.parent.name == origin.replace("/", "%2F")
        for verifiers, tampered in _note_flips(path.read_text(), [LOG_KEY]):
            _assert_go_rejects("checkpoint", tampered, verifiers)


def test_go_accepts_every_cosigned_checkpoint_and_rejects_each_tampered(sealed):
    outside, _ = sealed
    cosigned = sorted(outside.glob("*/*.cosigned"))
    assert len(cosigned) >= 5
    for path in cosigned:
        witness_key = W1 if ".witness.example%2Fw1." in path.name else W2
        note = path.read_text()
        origin, size, root, signers = _go_checkpoint(note, [LOG_KEY, witness_key])
        assert signers == [LOG_KEY.key_id, witness_key.key_id]
        assert _go_checkpoint(path.with_name(f"{size:012d}.checkpoint").read_text(), [LOG_KEY])[:3] == (origin, size,
                                                                                                       root)
        for verifiers, tampered in _note_flips(note, [LOG_KEY, witness_key]):
            _assert_go_rejects("checkpoint", tampered, verifiers)


def test_go_checks_every_consistency_proof_file_and_rejects_each_tampered(sealed):
    outside, _ = sealed
    checked = 0
    for path in sorted(outside.glob("*/*.proof.json")):
        proof = json.loads(path.read_text())
        if proof["old_size"] == 0:
            assert proof["proof"] == []  # a log's first checkpoint: nothing before it to be consistent with
            continue
        roots = {}
        for size in (proof["old_size"], proof["new_size"]):
            _, read_size, roots[size], _ = _go_checkpoint((path.parent / f"{size:012d}.checkpoint").read_text(),
                                                          [LOG_KEY])
            assert read_size == size
        request = {"old_size": proof["old_size"], "old_root": b64(roots[proof["old_size"]]),
                   "new_size": proof["new_size"], "new_root": b64(roots[proof["new_size"]]), "proof": proof["proof"]}
        ok, out = run_evidencecheck("consistency", request)
        assert ok, (path, out)
        checked += 1
        assert proof["proof"]
        for i, h in enumerate(proof["proof"]):
            for at in (0, 31):
                tampered = [*proof["proof"][:i], b64(flip(base64.b64decode(h), at)), *proof["proof"][i + 1:]]
                assert not run_evidencecheck("consistency", {**request, "proof": tampered})[0]
        for field in ("old_root", "new_root"):
            assert not run_evidencecheck("consistency", {**request, field: b64(flip(roots[request[field.replace(
                "root", "size")]], 7))})[0]
        assert not run_evidencecheck("consistency", {**request, "old_size": request["old_size"] - 1 or 2})[0]
    assert checked >= 4  # two logs grew twice


def test_go_checks_the_inclusion_proofs_of_prove_bundles_and_rejects_each_tampered(sealed):
    _, bundles = sealed
    for bundle in bundles:
        origin, size, root, signers = _go_checkpoint(bundle["checkpoint"], [LOG_KEY])
        assert signers == [LOG_KEY.key_id]
        leaf = base64.b64decode(bundle["leaf"])
        request = {"size": size, "index": bundle["leaf_index"], "root": b64(root), "proof": bundle["proof"],
                   "leaf_hash": b64(hashlib.sha256(b"\x00" + leaf).digest())}
        ok, out = run_evidencecheck("inclusion", request)
        assert ok, (bundle["row"], out)
        assert bundle["proof"], bundle["row"]  # a real path, not a one-leaf tree
        for at in (0, len(leaf) // 2, len(leaf) - 1):
            tampered_leaf = b64(hashlib.sha256(b"\x00" + flip(leaf, at)).digest())
            assert not run_evidencecheck("inclusion", {**request, "leaf_hash": tampered_leaf})[0]
        for i, h in enumerate(bundle["proof"]):
            tampered = [*bundle["proof"][:i], b64(flip(base64.b64decode(h), 13)), *bundle["proof"][i + 1:]]
            assert not run_evidencecheck("inclusion", {**request, "proof": tampered})[0]
        assert not run_evidencecheck("inclusion", {**request, "root": b64(flip(root, 0))})[0]
        other = bundle["leaf_index"] + 1 if bundle["leaf_index"] + 1 < size else bundle["leaf_index"] - 1
        assert not run_evidencecheck("inclusion", {**request, "index": other})[0]
        for verifiers, tampered in _note_flips(bundle["checkpoint"], [LOG_KEY]):
            _assert_go_rejects("checkpoint", tampered, verifiers)
