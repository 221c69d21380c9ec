"""Ed25519 keys in Go's note format: the published example key, round trips and refusals."""

import os

import pytest

from fairwatch.contracts.keys import (
    BadKey, generate_key, key_hash, parse_signing_key, parse_verifier_key, read_signing_key, signing_key_from,
    write_signing_key,
)

# The example key of golang.org/x/mod/sumdb/note's documentation (an independent oracle).
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def test_the_go_documentation_key_gives_its_published_verifier_key():
    signer = parse_signing_key(GO_SIGNER)
    assert signer.verifier.text() == GO_VERIFIER
    assert signer.text() == GO_SIGNER
    assert parse_verifier_key(GO_VERIFIER) == signer.verifier
    assert signer.key_id == "PeterNeumann+c74f20a3"


def test_a_signature_verifies_with_its_key_only():
    key, other = generate_key("site-a"), generate_key("site-a")
    signature = key.sign(b"batch")
    assert key.verifier.verify(b"batch", signature)
    assert not key.verifier.verify(b"batch!", signature)
    assert not other.verifier.verify(b"batch", signature)
    assert key.hash == key_hash("site-a", key.verifier.public_key)


def test_the_secret_never_shows_in_repr_or_errors():
    key = parse_signing_key(GO_SIGNER)
    assert "AYEKF" not in repr(key) and "AYEKF" not in str(key)
    tampered = GO_SIGNER[:-2] + "AA"
    with pytest.raises(BadKey) as caught:
        parse_signing_key(tampered)
    assert "does not match" in str(caught.value) and "AYEKF" not in str(caught.value)


@pytest.mark.parametrize("text, says", [
    ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
    ("PeterNeumann+c74f20a3+ApcZ", "not an Ed25519 key"),
    ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad key name"),
    ("PeterNeumann", r"expected name\+hash\+base64"),
    (GO_SIGNER, "private signer key"),
])
def test_bad_verifier_keys_are_refused_with_the_reason(text, says):
    with pytest.raises(BadKey, match=says):
        parse_verifier_key(text)


def test_key_files_are_0600_exclusive_and_read_back(tmp_path):
    key = generate_key("operator")
    path = write_signing_key(key, tmp_path / "operator.key")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_signing_key(path).verifier == key.verifier
    with pytest.raises(BadKey, match="exists"):
        write_signing_key(generate_key("operator"), path)
    os.chmod(path, 0o644)
    with pytest.raises(BadKey, match="chmod 600"):
        read_signing_key(path)


def test_keys_from_the_environment(tmp_path):
    key = generate_key("w")
    path = write_signing_key(key, tmp_path / "w.key")
    assert signing_key_from({}, "K") is None
    assert signing_key_from({"K": key.text()}, "K").verifier == key.verifier
    assert signing_key_from({"K_FILE": str(path)}, "K").verifier == key.verifier
    with pytest.raises(BadKey, match="keep one"):
        signing_key_from({"K": key.text(), "K_FILE": str(path)}, "K")
