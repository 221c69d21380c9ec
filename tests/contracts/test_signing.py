"""Signed input on the wire: the bytes a site signs and the headers they travel in.

Oracles: the signed text is rebuilt here by hand from the documented format, and the signature is
checked by the openssl command line (its own Ed25519, reading the key as PEM) as well as by raw
``cryptography``; neither goes through fairwatch's key classes.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fairwatch.contracts.keys import generate_key
from fairwatch.contracts.records import RejectCode, Rejection
from fairwatch.contracts.signing import (
    FORWARDED_HEADER,
    SignatureClaim,
    parse_signed_at,
    read_claim,
    sign_value,
    signed_message,
    verify_many,
)

VALUE = b'{"batch_version":1,"bucket":3,"partitions":8,"records":[{"event_id":"e-1"}]}'
AT = "2026-11-25T06:00:00Z"


def by_hand(deployment: str, kind: str, signed_at: str, value: bytes) -> bytes:
    return (f"fairwatch-input/v1\n{deployment}\n{kind}\n{signed_at}\n{hashlib.sha256(value).hexdigest()}\n").encode()


def test_the_signed_text_is_the_documented_one():
    assert signed_message("gate-a", "match_event", AT, VALUE) == by_hand("gate-a", "match_event", AT, VALUE)
    # every field changes it: deployment, kind, time, one byte of the value
    base = signed_message("gate-a", "match_event", AT, VALUE)
    for other in (signed_message("gate-b", "match_event", AT, VALUE),
                  signed_message("gate-a", "verified_outcome", AT, VALUE),
                  signed_message("gate-a", "match_event", "2026-11-25T06:00:01Z", VALUE),
                  signed_message("gate-a", "match_event", AT, VALUE.replace(b"e-1", b"e-2"))):
        assert other != base


def test_headers_carry_a_signature_that_outside_verifiers_accept(tmp_path):
    key = generate_key("gate-a-2026")
    headers = dict(sign_value(key, "gate-a", "match_event", VALUE, signed_at=AT))
    assert headers == {"fairwatch-key": key.key_id.encode(), "fairwatch-deployment": b"gate-a",
                       "fairwatch-signed-at": AT.encode(), "fairwatch-signature": headers["fairwatch-signature"]}
    signature = base64.b64decode(headers["fairwatch-signature"], validate=True)
    assert len(signature) == 64 and len(headers["fairwatch-signature"]) == 88
    public = Ed25519PublicKey.from_public_bytes(key.verifier.public_key)
    public.verify(signature, by_hand("gate-a", "match_event", AT, VALUE))  # raises if it does not verify
    # the openssl command line, from a PEM file of the public key
    assert shutil.which("openssl"), "openssl is needed as the outside verifier"
    (tmp_path / "pub.pem").write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "sig").write_bytes(signature)

    def openssl_verifies(text: bytes) -> bool:
        (tmp_path / "msg").write_bytes(text)
        result = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg",
                                 "-sigfile", "sig"], cwd=tmp_path, capture_output=True, text=True)
        return result.returncode == 0 and "Signature Verified Successfully" in result.stdout

    assert openssl_verifies(by_hand("gate-a", "match_event", AT, VALUE))
    assert not openssl_verifies(by_hand("gate-b", "match_event", AT, VALUE))
    assert not openssl_verifies(by_hand("gate-a", "match_event", AT, VALUE + b" "))


def test_a_claim_is_read_back_and_verifies_only_over_its_own_value():
    key = generate_key("gate-a-2026")
    claim = read_claim(sign_value(key, "gate-a", "verified_outcome", VALUE, signed_at=AT))
    assert isinstance(claim, SignatureClaim)
    assert (claim.key_id, claim.deployment, claim.signed_at, claim.forwarded) == (key.key_id, "gate-a", AT, False)
    assert claim.signed_time == datetime(2026, 11, 25, 6, tzinfo=timezone.utc)
    good = (key.verifier.public_key, claim.message(VALUE, "verified_outcome"), claim.signature)
    wrong_kind = (key.verifier.public_key, claim.message(VALUE, "match_event"), claim.signature)
    other_key = (generate_key("x").verifier.public_key, claim.message(VALUE, "verified_outcome"), claim.signature)
    assert verify_many([good, wrong_kind, other_key]) == [True, False, False]
    forwarded = read_claim([*sign_value(key, "gate-a", "match_event", VALUE), (FORWARDED_HEADER, b"t:1:2")])
    assert forwarded.forwarded


def test_signed_at_defaults_to_now_in_utc_whole_seconds():
    claim = read_claim(sign_value(generate_key("k"), "gate-a", "match_event", VALUE))
    assert abs((claim.signed_time - datetime.now(timezone.utc)).total_seconds()) < 5
    assert claim.signed_at.endswith("Z") and len(claim.signed_at) == 20


@pytest.mark.parametrize("headers, why", [
    ([("fairwatch-key", b"k+00000000")], "incomplete"),
    ([("fairwatch-key", b"a"), ("fairwatch-key", b"b")], "twice"),
    ("bad-time", "signed_at"),
    ("year-2200", "signed_at"),
    ("feb-30", "signed_at"),
    ("offset", "signed_at"),
    ("short-signature", "64 bytes"),
    ("not-base64", "64 bytes"),
    ("non-ascii", "ASCII"),
    ("newline-deployment", "deployment"),
])
def test_malformed_signature_headers_are_bad_signature(headers, why):
    good = dict(sign_value(generate_key("k"), "gate-a", "match_event", VALUE, signed_at=AT))
    changes = {"bad-time": {"fairwatch-signed-at": b"yesterday"},
               "year-2200": {"fairwatch-signed-at": b"2200-01-01T00:00:00Z"},
               "feb-30": {"fairwatch-signed-at": b"2026-02-30T00:00:00Z"},
               "offset": {"fairwatch-signed-at": b"2026-11-25T06:00:00+01:00"},
               "short-signature": {"fairwatch-signature": base64.b64encode(b"x" * 63)},
               "not-base64": {"fairwatch-signature": b"!" * 88},
               "non-ascii": {"fairwatch-deployment": "gäte".encode()},
               "newline-deployment": {"fairwatch-deployment": b"gate-a\nx"}}
    if isinstance(headers, str):
        headers = list({**good, **changes[headers]}.items())
    result = read_claim(headers)
    assert isinstance(result, Rejection) and result.code == RejectCode.BAD_SIGNATURE, result
    assert why in result.message


def test_no_signature_headers_is_unsigned_whatever_else_is_there():
    assert read_claim(None) is None and read_claim(()) is None
    assert read_claim([("traceparent", b"00-abc"), (FORWARDED_HEADER, b"x")]) is None


def test_signed_at_is_exact_and_bounded():
    assert parse_signed_at("1971-01-01T00:00:00Z") == datetime(1971, 1, 1, tzinfo=timezone.utc)
    assert parse_signed_at("2105-12-31T23:59:59Z").year == 2105
    for bad in ("1970-12-31T23:59:59Z", "2106-01-01T00:00:00Z", "2026-11-25T06:00:00.5Z", "2026-11-25 06:00:00Z",
                "2026-11-25T06:00:00z", "2026-13-01T00:00:00Z", " 2026-11-25T06:00:00Z"):
        assert parse_signed_at(bad) is None, bad


def test_signing_refuses_what_could_not_be_read_back():
    key = generate_key("k")
    with pytest.raises(ValueError, match="kind"):
        sign_value(key, "gate-a", "alerts", VALUE)
    with pytest.raises(ValueError, match="signed_at"):
        sign_value(key, "gate-a", "match_event", VALUE, signed_at="2200-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="deployment"):
        sign_value(key, "gate\na", "match_event", VALUE)
