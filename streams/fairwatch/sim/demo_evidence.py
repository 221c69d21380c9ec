"""The demo's chain of custody: seal the run's evidence, verify it as an auditor would, and show a
tampered copy failing.

The operator key is made for the run and kept in the demo's output folder (0600); its public key
and the checkpoints written outside the store sit beside it, so the printed `fairwatch audit
verify` command can be run again later. The tampered copy is a second database holding the same
rows with one verified outcome's truth flipped by a later insert (what a writer could do); it is
verified with the same key and checkpoints, then dropped.
"""

from __future__ import annotations

import shlex
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

from fairwatch.audit.evidence_log import origin_dir, seal
from fairwatch.audit.evidence_verify import verify
from fairwatch.contracts.keys import generate_key, write_signing_key
from fairwatch.store.clickhouse import open_store, redacted_url


def chain_of_custody(store, migrator_url: str, auditor_url: str, database: str, run: str, out: Path,
                     database_url: Callable[[str, str], str], say: Callable[[str], None]) -> dict[str, Any]:
    """Seal, verify, and verify a tampered copy; what to show and the commands to repeat it."""
    folder = out / "evidence"
    folder.mkdir(parents=True, exist_ok=True)
    key_path, public_path, outside = folder / "operator.key", folder / "operator.pub", folder / "checkpoints"
    key = generate_key(f"fairwatch-demo-{run}")
    write_signing_key(key, key_path, force=True)
    public_path.write_text(key.verifier.text() + "\n")
    base = f"demo/{run}"
    sealed = seal(store, key, base=base, outside=outside)
    say(f"sealed {sealed.leaves} evidence rows into {len(sealed.checkpoints)} Merkle logs; signed checkpoints in "
        f"the store and in {outside}")
    with closing(open_store(database_url(auditor_url, database), create=False)) as auditor:
        intact = verify(auditor, [key.verifier], base=base, outside=[outside])
    tampered_db = f"{database}_tampered"
    with closing(open_store(database_url(migrator_url, database))) as admin:
        tables = [row[0] for row in admin.query("SELECT name FROM system.tables WHERE database = %(d)s",
                                                {"d": database})]
        admin.execute(f"DROP DATABASE IF EXISTS {tampered_db}")
        admin.execute(f"CREATE DATABASE {tampered_db}")
        try:
            for table in tables:
                admin.execute(f"CREATE TABLE {tampered_db}.{table} AS {database}.{table}")
                admin.execute(f"INSERT INTO {tampered_db}.{table} SELECT * FROM {database}.{table}")
            flipped = admin.query(f"SELECT event_id, revision, truth FROM {tampered_db}.verified_outcomes FINAL "
                                  "WHERE truth = 'impostor' ORDER BY event_id LIMIT 1")
            event_id, revision, truth = flipped[0]
            admin.execute(
                f"INSERT INTO {tampered_db}.verified_outcomes (event_id, verified_at, truth, reviewer, revision, "
                f"inclusion_prob, ingested_at, mate_rank) SELECT event_id, verified_at, 'genuine', reviewer, "
                f"revision, inclusion_prob, ingested_at + 1, mate_rank FROM {tampered_db}.verified_outcomes "
                "WHERE event_id = %(e)s AND revision = %(r)s", {"e": event_id, "r": revision})
            with closing(open_store(database_url(migrator_url, tampered_db), create=False)) as copy:
                tampered = verify(copy, [key.verifier], base=base, outside=[outside])
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {tampered_db}")
    command = shlex.join(["fairwatch", "audit", "verify", "--store", redacted_url(database_url(auditor_url, database)),
                          "--key", str(public_path), "--checkpoints", str(outside), "--origin", base])
    return {
        "base": base, "key": str(public_path), "checkpoints": str(outside),
        "logs": {origin: {"size": c.size, "root": c.root_hash.hex(), "folder": str(origin_dir(outside, origin))}
                 for origin, c in sealed.checkpoints.items()},
        "sealed_rows": sealed.leaves, "verified": {"ok": intact.ok, "rows": intact.rows_checked,
                                                   "seconds": round(intact.seconds, 2),
                                                   "findings": [f.text() for f in intact.findings]},
        "tampered": {"row": f"verified_outcomes (event_id={event_id}, revision={revision})",
                     "change": f"truth {truth} -> genuine", "ok": tampered.ok,
                     "findings": [f.text() for f in tampered.findings]},
        "verify_command": command,
    }
