"""The click that typer runs on: recent typer releases vendor their own copy (``typer._click``),
whose classes and exceptions are not the installed ``click``'s, so isinstance checks and except
clauses must name these."""

import importlib

import typer

_ROOT = typer.BadParameter.__module__.rpartition(".")[0]  # "typer._click", or "click" for older typer
_exceptions = importlib.import_module(f"{_ROOT}.exceptions")

ClickException = _exceptions.ClickException
UsageError = _exceptions.UsageError
