"""What fairwatch signs and proves, checked by Go's golang.org/x/mod/sumdb/note and sumdb/tlog
(tests/go/evidencecheck): Go accepts it as made, and rejects it with any one byte changed."""

import base64

import pytest

from fairwatch.contracts.keys import generate_key
from fairwatch.contracts.signed_note import Checkpoint, NoteError, cosign, open_note, sign_note
from fairwatch.core.merkle import append_leaves, leaf_hash, prove_record, prove_tree, tree_hash
from fairwatch.testing import goverifier
from fairwatch.testing.goverifier import run_evidencecheck


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.fixture(scope="module")
def keys():
    return generate_key("fairwatch.example/log"), generate_key("witness.example/w1"), generate_key("witness.example/w2")


@pytest.fixture(scope="module")
def log():
    """A log of 40 records kept as a database would: stored hashes by index."""
    stored = []

    def read(indexes):
        return [stored[i] for i in indexes]

    leaves = [leaf_hash(b"evidence row %d" % i) for i in range(40)]
    for n in (0, 1, 8, 13):  # in batches of several sizes
        stored += [h for _, h in append_leaves(n, leaves[n : {0: 1, 1: 8, 8: 13, 13: 40}[n]], read)]
    return leaves, read


def tampered_notes(note: str, keys):
    """(verifier keys, note) pairs: a byte flipped in the text, then in each signature line's key
    name and signature, each offered to the key whose signature it spoils."""
    text_end = note.index("\n\n") + 1
    raw = note.encode()
    for at in range(0, text_end, 7):
        yield [k.verifier.text() for k in keys], flip(raw, at)
    for key in keys:
        line = raw.index(f"— {key.name} ".encode())
        name = line + len("— ".encode())
        signature = name + len(key.name) + 1
        for at in (name, name + len(key.name) - 1, signature, signature + 5, signature + 40, signature + 80):
            yield [key.verifier.text()], flip(raw, at)


def assert_go_and_python_reject(verifiers, note: bytes):
    ok, reason = run_evidencecheck("note", {"note": note.decode(), "verifiers": verifiers})
    assert not ok and reason, note
    with pytest.raises(NoteError):
        open_note(note, verifiers)


def test_go_opens_notes_signed_and_cosigned_here(keys):
    log_key, w1, w2 = keys
    note = cosign(sign_note("a text\n\nwith an empty line\n", [log_key, w1]), [w2])
    ok, signers = run_evidencecheck("note", {"note": note, "verifiers": [k.verifier.text() for k in keys]})
    assert ok, signers
    assert signers.splitlines() == [log_key.key_id, w1.key_id, w2.key_id]
    ok, signers = run_evidencecheck("note", {"note": note, "verifiers": [w2.verifier.text()]})
    assert ok and signers.splitlines() == [w2.key_id]  # the others are unknown keys, ignored
    for verifiers, tampered in tampered_notes(note, keys):
        assert_go_and_python_reject(verifiers, tampered)


def test_go_opens_a_cosigned_checkpoint_of_a_log_built_here(keys, log):
    log_key, w1, w2 = keys
    leaves, read = log
    checkpoint = Checkpoint(log_key.name, 40, tree_hash(40, read), ("an extension line",))
    note = cosign(cosign(sign_note(checkpoint.text(), [log_key]), [w1]), [w2])
    ok, out = run_evidencecheck("checkpoint", {"note": note, "verifiers": [k.verifier.text() for k in keys]})
    assert ok, out
    assert out.splitlines() == [log_key.name, "40", b64(checkpoint.root_hash), log_key.key_id, w1.key_id, w2.key_id]
    for verifiers, tampered in tampered_notes(note, keys):
        assert_go_and_python_reject(verifiers, tampered)


@pytest.mark.parametrize("size, index", [(1, 0), (2, 1), (3, 2), (7, 4), (8, 0), (13, 12), (40, 17), (40, 39)])
def test_go_checks_inclusion_proofs_made_here(log, size, index):
    leaves, read = log
    request = {"size": size, "index": index, "leaf_hash": b64(leaves[index]), "root": b64(tree_hash(size, read)),
               "proof": [b64(h) for h in prove_record(size, index, read)]}
    ok, out = run_evidencecheck("inclusion", request)
    assert ok, out
    for field in ("leaf_hash", "root"):
        assert not run_evidencecheck("inclusion", {**request, field: b64(flip(base64.b64decode(request[field]), 9))})[0]
    for i, h in enumerate(request["proof"]):
        proof = list(request["proof"])
        proof[i] = b64(flip(base64.b64decode(h), 31))
        assert not run_evidencecheck("inclusion", {**request, "proof": proof})[0]
    ok, reason = run_evidencecheck("inclusion", {**request, "index": size})
    assert not ok and "invalid inputs" in reason


@pytest.mark.parametrize("old, new", [(1, 1), (1, 2), (3, 8), (7, 13), (8, 40), (13, 40), (39, 40)])
def test_go_checks_consistency_proofs_made_here(log, old, new):
    _, read = log
    request = {"old_size": old, "old_root": b64(tree_hash(old, read)), "new_size": new,
               "new_root": b64(tree_hash(new, read)), "proof": [b64(h) for h in prove_tree(new, old, read)]}
    ok, out = run_evidencecheck("consistency", request)
    assert ok, out
    for field in ("old_root", "new_root"):
        assert not run_evidencecheck("consistency", {**request, field: b64(flip(base64.b64decode(request[field]), 0))})[0]
    for i, h in enumerate(request["proof"]):
        proof = list(request["proof"])
        proof[i] = b64(flip(base64.b64decode(h), 16))
        assert not run_evidencecheck("consistency", {**request, "proof": proof})[0]


def test_a_note_signed_by_go_opens_here_and_equals_ours(keys):
    log_key, _, _ = keys
    text = "fairwatch.example/log\n3\n" + b64(bytes(range(32))) + "\n"
    ok, note = run_evidencecheck("sign", {"skey": log_key.text(), "text": text})
    assert ok, note
    assert note == sign_note(text, [log_key])  # Ed25519 is deterministic
    assert open_note(note, [log_key.verifier]).verified == [log_key.key_id]


def test_a_missing_go_is_an_error_not_a_skip(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(goverifier, "_GO_FALLBACK", "/nonexistent/go")
    with pytest.raises(RuntimeError, match="go is not installed"):
        goverifier.build_evidencecheck.__wrapped__()
