"""docs/regulation.md: every row of its map names commands that exist and tests that exist, so that
each obligation it claims is exercised by a test (which asserts the numbers) or by the demo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from fairwatch.testing.cli_runs import invoke

REPO = Path(__file__).resolve().parents[1]


def rows() -> list[list[str]]:
    text = (REPO / "docs" / "regulation.md").read_text()
    table = text.split("## The map", 1)[1].split("\n\n", 2)[1]
    lines = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_every_row_names_existing_commands_and_tests():
    found = rows()
    assert len(found) >= 10
    tests_named = set()
    for obligation, field, measure, commands, exercised in found:
        assert obligation and field and measure, obligation
        named = re.findall(r"`(fairwatch [a-z -]+?)(?: --[a-z]+[^`]*)?`", commands)
        assert named, f"{obligation}: no command"
        for command in named:
            words = command.split()[1:]
            result = invoke(*words, "--help")
            assert result.exit_code == 0, (command, result.output)
        tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", exercised)
        assert tests, f"{obligation}: no test"
        for path, name in tests:
            module = ast.parse((REPO / path).read_text())
            defined = {n.name for n in module.body if isinstance(n, ast.FunctionDef)}
            assert name in defined, f"{path}::{name} does not exist"
            tests_named.add((path, name))
    assert len(tests_named) >= 10
