"""CLI: the one ``fairwatch`` command; every verb is registered in :mod:`fairwatch.cli.main`."""

from fairwatch.cli.main import app, main

__all__ = ["app", "main"]
