"""A new user's first minutes: the README's commands are reachable as printed, `scripts/stack --help`
answers, and installing prints no build warnings."""

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _docs_generator():
    spec = importlib.util.spec_from_file_location("generate", REPO / "docs" / "hooks" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stack_help_exits_0_and_names_every_variable_the_configuration_page_lists():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "stack"), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    for name in _docs_generator().STACK_ENVIRONMENT:
        assert name in done.stdout, name
    wrong = subprocess.run([sys.executable, str(REPO / "scripts" / "stack"), "stat"], capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 2
    assert wrong.stderr.splitlines()[0] == "stack: error: unknown command stat; `scripts/stack --help` lists them"


def test_the_readme_says_how_to_reach_fairwatch_where_make_demo_leaves_its_reader():
    text = (REPO / "README.md").read_text()
    # the section that runs `make demo`: its reader's next step is a `fairwatch` command in a new shell
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in section and "source .venv/bin/activate" in section
    lines = text.splitlines()
    fences = [i for i, line in enumerate(lines) if line.startswith("```")]
    in_code = {i for start, end in zip(fences[::2], fences[1::2]) for i in range(start + 1, end)}
    first_command = min(i for i in in_code if re.match(r"\s*fairwatch \w", lines[i]))
    assert lines.index(next(line for line in lines if "source .venv/bin/activate" in line)) < first_command


def test_the_license_is_an_spdx_string_so_the_build_backend_does_not_warn():
    # setuptools >= 77 warns (BuildBackendWarning, three times per install) on a license table
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    requires = project["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in requires)
