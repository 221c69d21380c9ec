"""CLI verbs of the evidence log: ``fairwatch audit seal | verify | prove | check | witness``."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Optional

import typer

from fairwatch.cli.boundary import EXIT_FINDINGS, error, failed
from fairwatch.cli.help_texts import STORE_HELP, PlainUsageCommand
from fairwatch.cli.output_files import OutputError, write_output

ORIGIN_HELP = "The logs' origin prefix: <origin>/deployment/<name>, <origin>/dead-letters."
KEY_HELP = ("The operator's public verifier key (name+hash+base64), or a file holding one; repeat for rotated keys."
            " Also FAIRWATCH_EVIDENCE_VERIFIER.")


def _verifiers(keys: list[str]):

    texts = list(keys) or [k for k in os.environ.get("FAIRWATCH_EVIDENCE_VERIFIER", "").split(",") if k.strip()]
    if not texts:
        raise ValueError("no verifier key: give --key (the operator's public key) or FAIRWATCH_EVIDENCE_VERIFIER")
    return _keys(texts)


def _keys(texts: list[str]):
    """Verifier keys from their texts or from files holding them."""
    from fairwatch.contracts.keys import parse_verifier_key

    parsed = []
    for text in texts:
        path = Path(text)
        parsed.append(parse_verifier_key(path.read_text() if "+" not in text and path.is_file() else text))
    return parsed


def seal_command(
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="The operator's signer key file (mode 0600)."
                                            " Default: FAIRWATCH_EVIDENCE_KEY or FAIRWATCH_EVIDENCE_KEY_FILE."),
    origin: str = typer.Option("fairwatch", "--origin", envvar="FAIRWATCH_EVIDENCE_ORIGIN", help=ORIGIN_HELP),
    outside: Optional[Path] = typer.Option(None, "--checkpoints", envvar="FAIRWATCH_EVIDENCE_DIR",
                                           help="Also write each checkpoint and its consistency proof here."),
    every: float = typer.Option(0.0, "--every", min=0.0, help="Seal again every this many seconds (0: once)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output, one line per seal."),
) -> None:
    """Append new evidence rows to the Merkle logs and sign each grown log's checkpoint."""
    from fairwatch.audit.evidence_log import EvidenceError, seal
    from fairwatch.contracts.keys import BadKey, read_signing_key, signing_key_from
    from fairwatch.store.clickhouse import StoreError, open_store

    try:
        signer = read_signing_key(key_file) if key_file else signing_key_from(dict(os.environ), "FAIRWATCH_EVIDENCE_KEY")
        if signer is None:
            raise BadKey("no signer key: give --key-file or set FAIRWATCH_EVIDENCE_KEY_FILE")
        with closing(open_store(store, create=False)) as opened:
            while True:
                result = seal(opened, signer, base=origin, outside=outside)
                if as_json:
                    print(json.dumps({"leaves": result.leaves, "seconds": round(result.seconds, 3),
                                      "checkpoints": {o: c.size for o, c in result.checkpoints.items()}}), flush=True)
                else:
                    for name, checkpoint in sorted(result.checkpoints.items()):
                        print(f"{name}: +{result.appended[name]} leaves, signed size {checkpoint.size} "
                              f"root {checkpoint.root_hash.hex()}")
                    print(f"sealed {result.leaves} rows in {result.seconds:.2f}s", flush=True)
                if not every:
                    return
                time.sleep(every)
    except (BadKey, EvidenceError, StoreError) as exc:
        raise failed(exc) from None


def verify_command(
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    key: list[str] = typer.Option([], "--key", help=KEY_HELP),
    outside: list[Path] = typer.Option([], "--checkpoints", help="A directory of checkpoints kept outside the store"
                                       " (repeatable); default FAIRWATCH_EVIDENCE_DIR when set."),
    origin: str = typer.Option("fairwatch", "--origin", envvar="FAIRWATCH_EVIDENCE_ORIGIN", help=ORIGIN_HELP),
    log: list[str] = typer.Option([], "--log", help="Only this log (an origin; repeatable)."),
    witness: list[str] = typer.Option([], "--witness", help="A witness's public verifier key, or a file holding one"
                                      " (repeatable): each log's newest checkpoint must carry its cosignature."),
    quorum: Optional[int] = typer.Option(None, "--quorum", min=1, help="How many of the --witness keys must have"
                                         " cosigned each log's newest checkpoint (default: all of them)."),
    keyring: Optional[Path] = typer.Option(None, "--keyring", dir_okay=False,
                                           help="Also re-check the sites' signatures on the stored input and the rows"
                                                " they back against this keyring (docs/signed-input.md)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Recompute every leaf from the stored rows and check the signed checkpoints (exit 1 on any finding)."""
    from fairwatch.audit.evidence_log import EvidenceError
    from fairwatch.audit.evidence_verify import verify
    from fairwatch.contracts.keyring import load_keyring
    from fairwatch.contracts.keys import BadKey
    from fairwatch.store.clickhouse import StoreError, open_store
    from fairwatch.store.signed_input import verify_signed_input

    directories = list(outside) or ([Path(os.environ["FAIRWATCH_EVIDENCE_DIR"])]
                                    if os.environ.get("FAIRWATCH_EVIDENCE_DIR") else [])
    try:
        verifiers = _verifiers(key)
        witnesses = _keys(witness)
        if witnesses and not directories:
            raise ValueError("--witness needs --checkpoints: the witnesses' cosignatures are in the checkpoint "
                             "directories")
        sites = load_keyring(keyring) if keyring else None
        with closing(open_store(store, create=False)) as opened:
            result = verify(opened, verifiers, base=origin, outside=directories, origins=log or None,
                            witnesses=witnesses, quorum=quorum)
            provenance = verify_signed_input(opened, sites) if sites is not None else None
    except EvidenceError as exc:
        raise failed(exc, EXIT_FINDINGS) from None
    except (BadKey, StoreError, ValueError, OSError) as exc:
        raise failed(exc) from None
    ok = result.ok and (provenance is None or provenance.ok)
    if not directories:  # said on stderr, whatever the format: the check is weaker than asked for
        print("warning: no --checkpoints: only the checkpoints in the store were checked, so a store rolled back "
              "or rewritten with its own checkpoints cannot be told apart", file=sys.stderr)
    if as_json:
        print(json.dumps({**result.to_dict(), "ok": ok,
                          "provenance": provenance.to_dict() if provenance is not None else None}))
    else:
        for state in result.logs:
            pending = f", {state.unsealed_rows} rows not sealed yet" if state.unsealed_rows else ""
            witnessed = f", cosigned by {state.witnesses} witnesses" if witnesses else ""
            print(f"{state.origin}: {state.leaves} leaves, {state.checkpoints} signed checkpoints up to size "
                  f"{state.signed_size}{witnessed}{pending}")
        for finding in result.findings:
            print(finding.text())
        rate = result.rows_checked / result.seconds if result.seconds else 0.0
        unwitnessed_only = {f.what for f in result.findings} == {"unwitnessed"}
        print(f"{result.rows_checked} rows checked in {result.seconds:.2f}s ({rate:,.0f} rows/s): "
              f"{'ok' if result.ok else 'UNWITNESSED' if unwitnessed_only else 'TAMPERED'}")
        if provenance is not None:
            for finding in provenance.findings:
                print(f"PROVENANCE {finding}")
            print(f"signed input: {provenance.verified} of {provenance.messages} stored messages verify with the "
                  f"keyring, {provenance.rows} rows checked against them: {'ok' if provenance.ok else 'FAILED'}")
    raise typer.Exit(0 if ok else EXIT_FINDINGS)


def prove_command(
    key: str = typer.Argument(..., help="The row's key: an event_id for a match event; see --kind."),
    kind: str = typer.Option("match_event", "--kind", help="match_event, verified_outcome ('EVENT REVISION'),"
                             " independent_review, dead_letter, audit_record or signed_input."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the bundle here (mode 0640); default stdout."),
    force: bool = typer.Option(False, "--force", help="Replace the --out file if it exists."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    origin: str = typer.Option("fairwatch", "--origin", envvar="FAIRWATCH_EVIDENCE_ORIGIN", help=ORIGIN_HELP),
    as_json: bool = typer.Option(False, "--json", help="With --out: say what was written as JSON on stdout."),
) -> None:
    """An offline bundle proving one row is in a signed log: checkpoint, leaf, inclusion proof."""
    from fairwatch.audit.evidence_log import EvidenceError
    from fairwatch.audit.evidence_proofs import prove
    from fairwatch.store.clickhouse import StoreError, open_store

    try:
        with closing(open_store(store, create=False)) as opened:
            bundle = prove(opened, kind, key, base=origin)
        data = (json.dumps(bundle, indent=1) + "\n").encode()
        if out is None:
            sys.stdout.buffer.write(data)
        else:
            write_output(out, data, force)
            if as_json:
                print(json.dumps({"out": str(out), "row": bundle["row"], "leaf_index": bundle["leaf_index"]}))
            else:
                print(f"wrote {out}: {bundle['row']} is leaf {bundle['leaf_index']}", file=sys.stderr)
    except (EvidenceError, StoreError, OutputError) as exc:
        raise failed(exc) from None


def check_command(
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False, help="A bundle from `fairwatch audit prove`."),
    key: list[str] = typer.Option([], "--key", help=KEY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check an inclusion bundle offline, without the store (exit 1 when it does not hold)."""
    from fairwatch.audit.evidence_log import EvidenceError
    from fairwatch.audit.evidence_proofs import check
    from fairwatch.contracts.keys import BadKey

    try:
        verifiers = _verifiers(key)
        document = json.loads(bundle.read_text())
    except (BadKey, ValueError, OSError) as exc:
        raise failed(exc) from None
    try:
        checked = check(document, verifiers)
    except EvidenceError as exc:
        if as_json:
            print(json.dumps({"ok": False, "reason": str(exc)}))
        error(str(exc))
        raise typer.Exit(EXIT_FINDINGS) from None
    if as_json:
        print(json.dumps({"ok": True, "row": checked.row, "leaf_index": checked.leaf_index, "origin": checked.origin,
                          "size": checked.size, "signers": list(checked.signers), "content": checked.content}))
        return
    print(f"ok: {checked.row} is leaf {checked.leaf_index} of {checked.origin}, signed at size {checked.size} by "
          f"{', '.join(checked.signers)}")
    print(f"content: {checked.content}")


def witness_command(
    outside: Path = typer.Option(..., "--checkpoints", envvar="FAIRWATCH_EVIDENCE_DIR",
                                 help="The checkpoint directory the sealer writes (one folder per log)."),
    key: list[str] = typer.Option([], "--key", help=KEY_HELP),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="The witness's own signer key file (mode 0600)."
                                            " Default: FAIRWATCH_WITNESS_KEY or FAIRWATCH_WITNESS_KEY_FILE."),
    state: Path = typer.Option(..., "--state", envvar="FAIRWATCH_WITNESS_STATE",
                               help="The witness's own directory: the last checkpoint it cosigned, per log."),
    every: float = typer.Option(0.0, "--every", min=0.0, help="Witness again every this many seconds (0: once)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output, one line per round."),
) -> None:
    """Cosign each log's newest checkpoint if it extends the last one this witness cosigned (exit 1 on a refusal)."""
    from fairwatch.audit.evidence_log import EvidenceError
    from fairwatch.audit.witness import KEY_ENV, witness
    from fairwatch.contracts.keys import BadKey, read_signing_key, signing_key_from

    try:
        verifiers = _verifiers(key)
        signer = read_signing_key(key_file) if key_file else signing_key_from(dict(os.environ), KEY_ENV)
        if signer is None:
            raise BadKey(f"no witness key: give --key-file or set {KEY_ENV}_FILE")
        while True:
            result = witness(outside, verifiers, signer, state)
            if as_json:
                print(json.dumps(result.to_dict()), flush=True)
            else:
                for witnessed in result.origins:
                    print(witnessed.text())
                print(f"witnessed {len(result.origins)} logs as {signer.key_id}: "
                      f"{'ok' if result.ok else 'REFUSED'}", flush=True)
            if not every:
                break
            time.sleep(every)
    except (BadKey, EvidenceError, ValueError, OSError) as exc:
        raise failed(exc) from None
    raise typer.Exit(0 if result.ok else EXIT_FINDINGS)


def register(audit_app: typer.Typer) -> None:
    audit_app.command("seal")(seal_command)
    audit_app.command("verify")(verify_command)
    audit_app.command("prove", cls=PlainUsageCommand)(prove_command)
    audit_app.command("check", cls=PlainUsageCommand)(check_command)
    audit_app.command("witness")(witness_command)
