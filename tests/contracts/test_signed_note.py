"""Signed notes and checkpoints against the published examples of golang.org/x/mod/sumdb/note
(its package documentation, example_test.go and note_test.go) and of C2SP tlog-checkpoint:
Ed25519 is deterministic, so a note signed here must equal Go's byte for byte."""

import base64

import pytest

from fairwatch.contracts.keys import VerifierKey, generate_key, parse_signing_key, parse_verifier_key
from fairwatch.contracts.signed_note import (
    Checkpoint, NoteError, OpenedNote, cosign, open_note, parse_checkpoint, sign_note,
)

PETER_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
# Go's ExampleSign_add_signatures makes EnochRoot's key with a reader of zeros: its seed is 32 zero bytes.
ENOCH_SIGNER = "PRIVATE+KEY+EnochRoot+af0cfe78+" + base64.b64encode(b"\x01" + bytes(32)).decode()
ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
GO_NOTE = TEXT + "\n" + PETER_SIG
GO_COSIGNED = TEXT + "\n" + PETER_SIG + ENOCH_SIG


@pytest.fixture(scope="module")
def keys():
    peter, enoch = parse_signing_key(PETER_SIGNER), parse_signing_key(ENOCH_SIGNER)
    assert peter.verifier.text() == PETER and enoch.verifier.text() == ENOCH
    return peter, enoch


def test_a_note_signed_here_equals_gos_published_note(keys):
    peter, enoch = keys
    assert sign_note(TEXT, [peter]) == GO_NOTE
    assert cosign(GO_NOTE, [enoch]) == GO_COSIGNED
    assert sign_note(TEXT, [peter, enoch]) == GO_COSIGNED


def test_gos_notes_open_with_the_known_keys():
    assert open_note(GO_NOTE, [PETER]) == OpenedNote(TEXT, ["PeterNeumann+c74f20a3"], [])
    assert open_note(GO_COSIGNED.encode(), [parse_verifier_key(PETER)]) == OpenedNote(
        TEXT, ["PeterNeumann+c74f20a3"], [("EnochRoot", 0xAF0CFE78)])
    assert open_note(GO_COSIGNED, [ENOCH, PETER]).verified == ["PeterNeumann+c74f20a3", "EnochRoot+af0cfe78"]


def test_unknown_keys_are_listed_and_a_note_without_a_known_key_is_refused():
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(GO_COSIGNED, [])
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(GO_NOTE, [ENOCH, generate_key("PeterNeumann").verifier])  # same name, other key
    note = GO_NOTE + PETER_SIG + ENOCH_SIG + ENOCH_SIG  # repeated lines count once
    assert open_note(note, [PETER]) == OpenedNote(TEXT, ["PeterNeumann+c74f20a3"], [("EnochRoot", 0xAF0CFE78)])


def flip_base64(line: str, at: int) -> str:
    """The signature line with one byte of its decoded signature flipped."""
    name, encoded = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[at] ^= 1
    return f"{name} {base64.b64encode(bytes(raw)).decode()}\n"


@pytest.mark.parametrize("note, says", [
    ("If you think cryptography is the answer to your problem,\nthen you do know what your problem is.\n\n" + PETER_SIG,
     "invalid signature for key PeterNeumann"),
    (TEXT + "\n" + flip_base64(PETER_SIG, 4), "invalid signature for key PeterNeumann"),
    (TEXT + "\n" + flip_base64(PETER_SIG, 67), "invalid signature for key PeterNeumann"),
    (TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], "invalid signature for key PeterNeumann"),  # Go's test
    (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "PeterNeumanN"), "no signature by a known key"),
    (TEXT + "\n" + flip_base64(PETER_SIG, 0), "no signature by a known key"),  # the key hash
    # Go checks a known key's first line only; a second, bad one is refused here (C2SP: SHOULD)
    (GO_NOTE + flip_base64(PETER_SIG, 40), "invalid signature for key PeterNeumann"),
])
def test_tampering_is_refused(note, says):
    with pytest.raises(NoteError, match=says):
        open_note(note, [PETER, ENOCH])


@pytest.mark.parametrize("note", [  # Go's note_test.go TestOpen badMsgs, and more
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    b"\xff" + GO_NOTE.encode(),
    "\udc80" + GO_NOTE,
    TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    GO_NOTE + "Unexpected line.\n",
    GO_NOTE.replace("— ", "- "),
    GO_NOTE.replace("AM=\n", "AM\n"),  # base64 without its padding
    TEXT + "\n— PeterNeumann x08g\n",  # too short to hold a key hash and a signature
    TEXT + "\n" + PETER_SIG * 101,
])
def test_malformed_notes_are_refused(note):
    with pytest.raises(NoteError, match="malformed note"):
        open_note(note, [PETER])


def test_sign_refuses_what_could_not_be_opened(keys):
    peter, _ = keys
    with pytest.raises(NoteError, match="end in a newline"):
        sign_note("abc", [peter])
    with pytest.raises(NoteError, match="control character"):
        sign_note("a\tb\n", [peter])
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note(TEXT, [])
    with pytest.raises(NoteError, match="ambiguous key"):
        open_note(GO_NOTE, [PETER, VerifierKey("PeterNeumann", 0xC74F20A3, generate_key("x").verifier.public_key)])
    with pytest.raises(NoteError, match="bad verifier key"):
        open_note(GO_NOTE, ["PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"])


def test_cosign_keeps_the_other_signatures_and_replaces_its_own(keys):
    peter, enoch = keys
    witness = generate_key("witness.example/w1")
    cosigned = cosign(cosign(GO_NOTE, [enoch]), [witness])
    assert cosigned == GO_COSIGNED + cosign(GO_NOTE, [witness]).removeprefix(GO_NOTE)
    assert cosign(cosigned, [enoch, peter]).count("— ") == 3  # no duplicate per key
    assert cosign(cosigned + ENOCH_SIG, [witness]) == cosigned  # a repeated line is dropped
    opened = open_note(cosign(cosigned, [peter]), [PETER, ENOCH, witness.verifier])
    assert sorted(opened.verified) == sorted([peter.key_id, enoch.key_id, witness.key_id])
    with pytest.raises(NoteError, match="malformed note"):
        cosign(TEXT, [witness])


def test_required_keys_and_a_quorum_of_cosignatures(keys):
    peter, enoch = keys
    w1, w2 = generate_key("w1"), generate_key("w2")
    note = cosign(sign_note(TEXT, [peter]), [w1])
    verifiers = [PETER, ENOCH, w1.verifier, w2.verifier]
    assert open_note(note, verifiers, require=["PeterNeumann+c74f20a3"], quorum=1).verified == [peter.key_id, w1.key_id]
    with pytest.raises(NoteError, match="has 1 of the 2 cosignatures required"):
        open_note(note, verifiers, require=[peter.verifier], quorum=2)
    with pytest.raises(NoteError, match="not signed by the required key.* w2\\+"):
        open_note(note, verifiers, require=[peter.verifier, w2.verifier])
    assert len(open_note(cosign(note, [w2]), verifiers, require=[peter.verifier], quorum=2).verified) == 3


# C2SP tlog-checkpoint's example (its signature is by a key not published, so only the text is used).
C2SP_CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_checkpoints_round_trip_and_sign():
    checkpoint = parse_checkpoint(C2SP_CHECKPOINT)
    assert checkpoint == Checkpoint("example.com/behind-the-sofa", 20852163,
                                    base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="))
    assert checkpoint.text() == C2SP_CHECKPOINT
    extended = Checkpoint("fairwatch.example/log", 0, bytes(32), ("extension one", "two"))
    assert extended.text() == "fairwatch.example/log\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nextension one\ntwo\n"
    assert parse_checkpoint(extended.text()) == extended
    key = generate_key("fairwatch.example/log")
    assert parse_checkpoint(open_note(sign_note(extended.text(), [key]), [key.verifier]).text) == extended


@pytest.mark.parametrize("text", [
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",  # no final newline
    "o\n1\n",
    "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # empty origin
    "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "o\n+1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "o\n 1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "o\n١\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # a non-ASCII digit
    f"o\n{1 << 63}\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "o\n1" + "0" * 5000 + "\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2\n",  # 31 bytes
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",  # not canonical base64
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",  # an empty extension line
])
def test_malformed_checkpoints_are_refused(text):
    with pytest.raises(NoteError, match="checkpoint"):
        parse_checkpoint(text)
