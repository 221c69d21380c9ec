"""`fairwatch keys`: a secret key goes to a 0600 file and nowhere else; its public half is printed;
failures are one `error:` line with exit 2."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from fairwatch.cli.boundary import EXIT_OK, EXIT_USAGE
from fairwatch.contracts.keys import parse_signing_key, parse_verifier_key
from fairwatch.testing.cli_runs import run_captured, single_error

REPO = Path(__file__).resolve().parents[2]


invoke, one_error = run_captured, single_error


def test_generate_writes_the_secret_0600_and_prints_only_the_public_key(capsys, tmp_path):
    out_file = tmp_path / "gate-a.key"
    code, out, err = invoke(capsys, "keys", "generate", "gate-a-2026", "--out", str(out_file))
    assert code == EXIT_OK and err == ""
    secret = out_file.read_text()
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    key = parse_signing_key(secret)
    verifier = parse_verifier_key(out.strip())
    assert out.strip() == key.verifier.text() and verifier.name == "gate-a-2026"
    assert "PRIVATE" not in out and secret.strip().split("+", 4)[4] not in out  # the seed is not printed
    # `keys public` gives the same line from the file
    code, out2, err = invoke(capsys, "keys", "public", str(out_file))
    assert code == EXIT_OK and out2 == out and err == ""


def test_generate_refuses_to_overwrite_without_force(capsys, tmp_path):
    out_file = tmp_path / "k"
    assert invoke(capsys, "keys", "generate", "k1", "--out", str(out_file))[0] == EXIT_OK
    first = out_file.read_text()
    code, out, err = invoke(capsys, "keys", "generate", "k2", "--out", str(out_file))
    assert code == EXIT_USAGE and out == "" and "--force" in one_error(err)
    assert out_file.read_text() == first
    code, out, err = invoke(capsys, "keys", "generate", "k2", "--out", str(out_file), "--force")
    assert code == EXIT_OK and out_file.read_text() != first and stat.S_IMODE(out_file.stat().st_mode) == 0o600


def test_generate_never_writes_through_a_symlink(capsys, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / "link").symlink_to(target)
    code, _, err = invoke(capsys, "keys", "generate", "k", "--out", str(tmp_path / "link"), "--force")
    assert code == EXIT_USAGE and one_error(err) and target.read_text() == "keep me"


@pytest.mark.parametrize("name", ["has+plus", "has space", ""])
def test_a_bad_key_name_is_one_error(capsys, tmp_path, name):
    code, out, err = invoke(capsys, "keys", "generate", name, "--out", str(tmp_path / "k"))
    assert code == EXIT_USAGE and out == "" and "bad key name" in one_error(err)
    assert not (tmp_path / "k").exists()


def test_public_refuses_a_key_file_others_can_read_and_never_echoes_it(capsys, tmp_path):
    path = tmp_path / "k"
    invoke(capsys, "keys", "generate", "k", "--out", str(path))
    secret = path.read_text().strip()
    os.chmod(path, 0o644)
    code, out, err = invoke(capsys, "keys", "public", str(path))
    assert code == EXIT_USAGE and out == "" and "chmod 600" in one_error(err)
    for bad, expected in ((tmp_path / "missing", "cannot read"), (path, "not a signer key")):
        if bad == path:
            path.write_text(secret.replace("PRIVATE+KEY+", ""))
            os.chmod(path, 0o600)
        code, out, err = invoke(capsys, "keys", "public", str(bad))
        assert code == EXIT_USAGE and expected in one_error(err)
        assert secret.strip().split("+", 4)[4] not in err


def test_check_lists_the_keyring_and_refuses_a_bad_one(capsys, tmp_path):
    example = REPO / "schemas" / "examples" / "keyring" / "keyring.yaml"
    code, out, err = invoke(capsys, "keys", "check", str(example), "--json")
    assert code == EXIT_OK and err == ""
    listed = json.loads(out)
    assert listed["deployments"]["gate-a"]["require_signatures"] is True
    assert [k["key_id"].split("+")[0] for k in listed["deployments"]["gate-a"]["keys"]] == ["gate-a-2026", "gate-a-2025"]
    assert listed["deployments"]["gate-a"]["keys"][1]["revoked_at"] == "2026-01-20T08:00:00Z"
    code, out, err = invoke(capsys, "keys", "check", str(example))
    assert code == EXIT_OK and "gate-a: signatures required, 2 keys" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("keyring_version: 1\ndeployments: {gate-a: {keys: [{key: nope}]}}\n")
    code, out, err = invoke(capsys, "keys", "check", str(bad))
    assert code == EXIT_USAGE and "deployments.gate-a.keys[0].key" in one_error(err)


def test_json_output_holds_the_public_key_only(capsys, tmp_path):
    path = tmp_path / "k"
    code, out, err = invoke(capsys, "keys", "generate", "k-json", "--out", str(path), "--json")
    assert code == EXIT_OK and err == ""
    printed = json.loads(out)
    assert printed == {"key_id": "+".join(printed["verifier_key"].split("+", 2)[:2]), "verifier_key": printed["verifier_key"],
                       "secret_key_file": str(path)}
    assert parse_signing_key(path.read_text()).verifier.text() == printed["verifier_key"]
    code, out, _ = invoke(capsys, "keys", "public", str(path), "--json")
    assert code == EXIT_OK and json.loads(out) == {k: printed[k] for k in ("key_id", "verifier_key")}


def test_a_worker_with_a_bad_keyring_refuses_to_start_with_one_error(capsys, tmp_path, monkeypatch):
    bad = tmp_path / "keyring.yaml"
    bad.write_text("keyring_version: 1\ndeployments: {gate-a: {keys: [{key: nope}]}}\n")
    monkeypatch.setenv("FAIRWATCH_KAFKA", "127.0.0.1:1")  # never reached: the keyring is checked first
    monkeypatch.setenv("FAIRWATCH_CLICKHOUSE", f"chdb://{tmp_path}/store")
    monkeypatch.setenv("FAIRWATCH_KEYRING", str(bad))
    code, out, err = invoke(capsys, "worker")
    assert code == EXIT_USAGE and "deployments.gate-a.keys[0].key" in one_error(err)
    monkeypatch.setenv("FAIRWATCH_KEYRING", str(tmp_path / "missing.yaml"))
    code, out, err = invoke(capsys, "worker")
    assert code == EXIT_USAGE and "cannot read the keyring" in one_error(err)
