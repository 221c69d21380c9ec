"""The ``evidence`` section of a report: the signed checkpoints its numbers were computed from.

For each deployment in the report, the newest signed checkpoint of its evidence log
(:mod:`fairwatch.audit.evidence_log`) in the store when the report was made: origin, tree size,
root hash (base64) and the signed note itself, so that anyone holding the operator's public key
can check the note, and ``fairwatch audit verify-report`` (:mod:`fairwatch.audit.report_verify`)
can verify the log up to it and recompute the report's numbers from the rows sealed by then.

A deployment without a checkpoint is said to be not sealed, with a sentence, never left out. The
section also counts the window's match events and labelled outcomes that are not under the
checkpoints (stored after the last seal): the numbers include them, so they are not bound to the
signed evidence. The
report's numbers themselves are always those of the store as read (the same as ``fairwatch
metrics``); this section states what binds them. No key is read or written here: the note is
public, and the report does not check its signature (verify-report does, with the key).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from fairwatch.audit.evidence_log import origin_of
from fairwatch.audit.window import Window
from fairwatch.contracts.records import format_timestamp
from fairwatch.contracts.signed_note import NoteError, parse_checkpoint
from fairwatch.core.layout import INTERSECTION_SEP
from fairwatch.store.clickhouse import Store
from fairwatch.store.evidence import checkpoints
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.sealed_evidence import sealed_tables

NOT_SEALED = "not sealed: the numbers are not bound to signed evidence"


def counted_intersections(metrics_doc: dict[str, Any]) -> list[list[str]]:
    """The intersections counted in the store for the window (the attribute sets of its groups
    with two or more attributes), which a recomputation from the evidence counts again."""
    return [attribute.split(INTERSECTION_SEP) for attribute in
            sorted({g["attribute"] for g in metrics_doc["groups"] if INTERSECTION_SEP in g["attribute"]})]


def _has_evidence_log(store: Store) -> bool:
    return bool(store.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'evidence_checkpoints'")[0][0])


def note_checkpoint(note: str):
    """The checkpoint a note's text states (its signature is not checked here)."""
    text, _, _ = note.partition("\n\n")
    return parse_checkpoint(text + "\n")


def newest_checkpoint(store: Store, origin: str) -> dict[str, Any] | None:
    """The largest checkpoint of ``origin`` in the store, as the report states it; None without one."""
    rows = checkpoints(store, origin)
    if not rows:
        return None
    _, size, root_hex, note, signed_at = max(rows, key=lambda r: int(r[1]))
    try:
        checkpoint = note_checkpoint(note)
        root = base64.b64encode(checkpoint.root_hash).decode()
    except NoteError:  # said as stored: verify-report will refuse the note
        root = base64.b64encode(bytes.fromhex(root_hex)).decode()
    return {"tree_size": int(size), "root_hash": root,
            "signed_at": format_timestamp(datetime.fromtimestamp(int(signed_at), timezone.utc)), "note": note}


def _not_sealed(store: Store, sizes: dict[str, int], window: Window, bucket_seconds: int,
                deployment: str | None, algorithm: str | None) -> tuple[int, int]:
    """Match events and labelled outcomes of the window (as stored) that no checkpoint covers: an
    event not sealed, an outcome whose event or counted verdict is not."""
    where, params = scope_filter(deployment, algorithm)
    params.update(start=window.start, end=window.end)
    events = labeled = ""
    if sizes:
        tables = sealed_tables(sizes, bucket_seconds)
        params.update(tables.params)
        events = f" AND event_id NOT IN (SELECT event_id FROM {tables.events})"
        labeled = (" AND concat(event_id, ' ', toString(revision)) NOT IN"
                   f" (SELECT concat(event_id, ' ', toString(revision)) FROM {tables.labeled})")
    (n_events,), = store.query("SELECT count() FROM match_events FINAL WHERE occurred_at >= %(start)s"
                               f" AND occurred_at < %(end)s{where}{events}", params)
    (n_labeled,), = store.query("SELECT count() FROM labeled_outcomes FINAL WHERE bucket >= %(start)s"
                                f" AND bucket < %(end)s{where}{labeled}", params)
    return int(n_events), int(n_labeled)


def evidence_section(store: Store, deployments: list[str], base: str, window: Window, deployment: str | None,
                     algorithm: str | None, bucket_seconds: int) -> dict[str, Any]:
    """The ``evidence`` object of a report of ``deployments`` (see the module docstring)."""
    has_log = _has_evidence_log(store)
    logs, sizes = [], {}
    for name in deployments:
        origin = origin_of(base, name)
        newest = newest_checkpoint(store, origin) if has_log else None
        if newest is None:
            why = ("the store holds no evidence log (migration 012 not applied)" if not has_log else
                   f"no signed checkpoint of {origin} is in the store")
            logs.append({"deployment": name, "origin": origin, "sealed": False, "statement": f"{NOT_SEALED} ({why})"})
        else:
            logs.append({"deployment": name, "origin": origin, "sealed": True, **newest})
            sizes[origin] = newest["tree_size"]
    events, labeled = _not_sealed(store, sizes, window, bucket_seconds, deployment, algorithm)
    if not sizes:
        statement = ("No deployment of this report has a signed checkpoint of its evidence log: the numbers are"
                     " not bound to signed evidence (seal with fairwatch audit seal, then report).")
    elif events or labeled or len(sizes) < len(deployments):
        statement = (f"{labeled} of the window's labelled outcomes and {events} of its match events are under no"
                     " checkpoint named here (stored after the last seal, or of a deployment not sealed): the"
                     " numbers include them, so they are not bound to the signed evidence, and fairwatch audit"
                     " verify-report will show the difference. Seal (fairwatch audit seal) just before reporting.")
    else:
        statement = ("Every match event and labelled outcome of the window is under the checkpoints named here:"
                     " fairwatch audit verify-report REPORT.json --store S --key KEY verifies each log up to its"
                     " checkpoint and recomputes the numbers from the rows sealed by then.")
    return {"base_origin": base, "logs": logs, "match_events_not_sealed": events, "labeled_outcomes_not_sealed": labeled,
            "statement": statement}
