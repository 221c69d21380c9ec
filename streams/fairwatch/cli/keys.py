"""``fairwatch keys``: a site's signing key (generate it, print its public half) and the keyring check."""

from __future__ import annotations

import json
from pathlib import Path

from fairwatch.cli.boundary import error
from fairwatch.cli.help_texts import PlainUsageCommand, WrappedHelpGroup


def _print_public(verifier, as_json: bool, extra: dict | None = None) -> None:
    """The public verifier key, as a line or as JSON (never anything of the secret)."""
    if as_json:
        print(json.dumps({"key_id": verifier.key_id, "verifier_key": verifier.text(), **(extra or {})}))
    else:
        print(verifier.text())


def register(app) -> None:
    """Add ``fairwatch keys generate``, ``keys public`` and ``keys check`` to the CLI."""
    import typer

    group = typer.Typer(rich_markup_mode=None, cls=WrappedHelpGroup, no_args_is_help=True,
                        help="Ed25519 keys that sign input (docs/signed-input.md), and the keyring that trusts them.")

    @group.command("generate", cls=PlainUsageCommand)
    def generate_command(
        name: str = typer.Argument(..., help="Key name, e.g. gate-a-2026 (no '+', no spaces): signatures name it."),
        out: Path = typer.Option(..., "--out", help="Where the secret key goes, mode 0600 (never printed)."),
        force: bool = typer.Option(False, "--force", help="Replace --out if it exists (never through a symlink)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output (the public key only)."),
    ) -> None:
        """Make a new signing key: the secret goes to --out (0600), the public verifier key to stdout.

        Put the printed line in the keyring under the deployments this key signs for; give the --out
        file to the site's producer only: FairwatchProducer(signing_key=FILE, deployment=NAME)."""
        from fairwatch.contracts.keys import BadKey, generate_key, write_signing_key

        try:
            key = generate_key(name)
            write_signing_key(key, out, force=force)
        except BadKey as exc:
            error(str(exc))
            raise typer.Exit(2) from None
        _print_public(key.verifier, as_json, {"secret_key_file": str(out)})

    @group.command("public", cls=PlainUsageCommand)
    def public_command(
        file: Path = typer.Argument(..., help="A secret key file written by `fairwatch keys generate` (mode 0600)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Print the public verifier key of a secret key file (for the keyring)."""
        from fairwatch.contracts.keys import BadKey, read_signing_key

        try:
            key = read_signing_key(file)
        except BadKey as exc:
            error(str(exc))
            raise typer.Exit(2) from None
        _print_public(key.verifier, as_json)

    @group.command("check", cls=PlainUsageCommand)
    def check_command(
        keyring: Path = typer.Argument(..., help="Keyring file, YAML or JSON (schemas/keyring.schema.json)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Check a keyring file and list what it trusts: per deployment, its keys and their windows."""
        from fairwatch.contracts.keyring import KeyringError, load_keyring

        try:
            ring = load_keyring(keyring)
        except KeyringError as exc:
            error(str(exc))
            raise typer.Exit(2) from None

        def when(value) -> str | None:
            return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")

        document = {
            "keyring": str(keyring), "sha256": ring.digest, "require_signatures": ring.require_signatures,
            "outcomes_require_signatures": ring.outcomes_require_signatures,
            "deployments": {name: {"require_signatures": d.require_signatures,
                                   "keys": [{"key_id": g.verifier.key_id, "not_before": when(g.not_before),
                                             "not_after": when(g.not_after), "revoked_at": when(g.revoked_at)}
                                            for g in d.grants]}
                            for name, d in ring.deployments.items()},
        }
        if as_json:
            print(json.dumps(document))
            return
        print(f"keyring {keyring} (sha256 {ring.digest[:16]}...): unlisted deployments "
              f"{'must sign' if ring.require_signatures else 'may send unsigned input'}; verified outcomes "
              f"{'must be signed' if ring.outcomes_require_signatures else 'may be unsigned unless their event requires'}")
        for name, spec in document["deployments"].items():
            print(f"{name}: signatures {'required' if spec['require_signatures'] else 'checked when present'}, "
                  f"{len(spec['keys'])} keys")
            for k in spec["keys"]:
                window = f"from {k['not_before'] or '-'} to {k['not_after'] or '-'}"
                print(f"  {k['key_id']}  {window}" + (f"  revoked at {k['revoked_at']}" if k["revoked_at"] else ""))

    app.add_typer(group, name="keys")
