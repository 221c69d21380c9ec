"""The end-of-run scan for leaked secrets finds a planted one, and only where others may read it."""

from __future__ import annotations

import os

from fairwatch.testing.secrets_scan import find_leaks, stack_secrets


def _write(path, text: str, mode: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def test_a_planted_secret_is_found_in_readable_files_and_captured_output(tmp_path):
    stack = tmp_path / "stack"
    _write(stack / "secrets" / "clickhouse-writer", "Zq8dX1-secret-value-0123456789\n", 0o600)
    _write(stack / "secrets" / "alertmanager-fairwatch.bcrypt", "$2b$10$hash-not-a-password-xxxxxxxx", 0o600)
    _write(stack / "secrets" / "short", "abc", 0o600)
    secrets = stack_secrets(stack)
    assert secrets == {"clickhouse-writer": "Zq8dX1-secret-value-0123456789"}  # hashes and short values left out
    run = tmp_path / "run"
    _write(run / "w1" / "worker.log", "connecting as writer with Zq8dX1-secret-value-0123456789 ...", 0o644)
    _write(run / "w2" / "clickhouse-client.xml", "<password>Zq8dX1-secret-value-0123456789</password>", 0o600)
    _write(run / "w3" / "report.html", "nothing to see", 0o640)
    _write(run / "data" / "part.bin", "Zq8dX1-secret-value-0123456789", 0o644)  # a store's data, not output
    leaks = find_leaks(secrets, [run, stack / "secrets"],
                       [("test_x (Captured stderr call)", "error: Wrong password Zq8dX1-secret-value-0123456789"),
                        ("test_y (Captured stdout call)", "ok")])
    assert sorted(leaks) == sorted([f"clickhouse-writer in {run / 'w1' / 'worker.log'}",
                                    "clickhouse-writer in test_x (Captured stderr call)"])
    assert find_leaks({}, [run]) == [] and stack_secrets(tmp_path / "nowhere") == {}


def test_a_secret_across_a_chunk_boundary_of_a_large_log_is_found(tmp_path, monkeypatch):
    from fairwatch.testing import secrets_scan

    monkeypatch.setattr(secrets_scan, "CHUNK", 64)  # as a log of many chunks would be read
    secret = "Zq8dX1-secret-value-0123456789"
    log = tmp_path / "big.log"
    _write(log, "x" * 50 + secret + "y" * 500, 0o644)  # the secret straddles the first boundary
    assert secrets_scan.find_leaks({"kafka-admin": secret}, [tmp_path]) == [f"kafka-admin in {log}"]
