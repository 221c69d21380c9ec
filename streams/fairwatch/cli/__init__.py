"""CLI: the one ``fairwatch`` command; every verb is registered in :mod:`fairwatch.cli.commands`."""

from fairwatch.cli.commands import app, main

__all__ = ["app", "main"]
