"""The documentation: the site builds with --strict and its generated pages are current; the
README stays a short front page whose commands exist.

The site build needs no service (mkdocstrings reads the sources statically), so it runs with
the service-free tests.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from fairwatch.cli import app
from fairwatch.stream.worker_settings import OTHER_ENVIRONMENT, WORKER_ENVIRONMENT

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PACKAGE = REPO / "streams" / "fairwatch"
MAX_README_LINES = 200


# --- the site ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out), "-f", str(REPO / "mkdocs.yml")],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return out


def documented_modules() -> list[str]:
    """Every module of the package but the test helpers and __main__, walked here independently of
    the docs hook."""
    names = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__" or "testing" in parts[1:2]:
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def test_site_builds_strict_with_a_page_per_module(site):
    modules = documented_modules()
    assert len(modules) > 40 and "fairwatch.core.join" in modules and "fairwatch.producer" in modules
    missing = []
    for name in modules:
        page = site.joinpath("api", *name.split(".")[1:], "index.html")
        if not page.is_file() or name not in page.read_text():
            missing.append(name)
    assert not missing, f"modules without an API page: {missing}"
    assert not (site / "api" / "testing").exists(), "the test helpers are not part of the API reference"
    # a page's content comes from the docstrings: the producer's own words are there
    assert "batch envelopes" in (site / "api" / "producer" / "index.html").read_text()


def test_configuration_page_has_every_setting_with_its_default(site):
    html = (site / "reference" / "configuration" / "index.html").read_text()
    for name, (default, meaning) in WORKER_ENVIRONMENT.items():
        row = re.search(rf"<tr>\s*<td><code>{name}</code></td>(.*?)</tr>", html, re.S)
        assert row, f"{name} is not on the configuration page"
        cells = row.group(1)
        assert ("required" if default is None else "(none)" if default == "" else f"<code>{default}</code>") in cells, name
    for name in OTHER_ENVIRONMENT:
        assert f"<code>{name}</code>" in html, name


def test_every_page_of_the_docs_folder_is_built(site):
    pages = [p.relative_to(REPO / "docs") for p in (REPO / "docs").rglob("*.md")]
    assert len(pages) >= 10
    for page in pages:
        built = site / ("index.html" if page.stem == "index" else page.with_suffix("") / "index.html")
        assert built.is_file(), f"{page} was not built"


# --- the README --------------------------------------------------------------------------------

def readme() -> str:
    return README.read_text()


def code_blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def shell_commands(text: str) -> list[list[str]]:
    """Every command of the README's shell code blocks (comments dropped, `&&` and `;` split),
    and every inline code span that is a `fairwatch ...` command."""
    commands = []
    for lang, body in code_blocks(text):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        for line in body.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True  # words as the shell splits them; `&&`, `;`, `|` apart
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in ("&&", "||", ";", "|", "&"):
                    if words:
                        commands.append(words)
                    words = []
                else:
                    words.append(token)
    for span in re.findall(r"(?<!`)`(fairwatch [^`]+)`", text):
        commands.append(shlex.split(span.replace("\n", " ")))
    return commands


def cli_problems(words: list[str]) -> str | None:
    """Why a `fairwatch ...` command line would not run as written (None when it parses): the verb,
    sub-verb and options must exist and the required ones be given. Only file arguments may be
    missing here (they are made by the commands before them)."""
    assert words[0] == "fairwatch"
    command = typer.main.get_command(app)
    info = command.context_class(command, info_name="fairwatch")
    args = words[1:]
    while hasattr(command, "commands"):  # a group: the next word is its verb
        if not args or args[0] not in command.commands:
            return f"no verb {args[0] if args else ''!r} in `fairwatch` (known: {sorted(command.commands)})"
        name, command = args[0], command.commands[args[0]]
        args = args[1:]
        info = command.context_class(command, info_name=name, parent=info)
    try:
        command.parse_args(info, list(args))
    except typer.BadParameter as exc:
        if "does not exist" not in exc.format_message():
            return exc.format_message()
    except typer.TyperException as exc:  # typer's own click: no such option, missing parameter, ...
        return exc.format_message()
    return None


def test_readme_is_a_short_front_page():
    lines = readme().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"
    text = readme()
    for needed in ("make demo", "make test", "make test-fast", "make docs", "make bench",
                   "FairwatchProducer", "fairwatch worker", "fairwatch metrics", "fairwatch report"):
        assert needed in text, f"the README does not show {needed}"


def test_every_fairwatch_command_in_the_readme_names_a_real_verb(monkeypatch):
    # settings the commands take from the environment (set by `scripts/stack up` in the README)
    for name in ("FAIRWATCH_KAFKA", "FAIRWATCH_CLICKHOUSE", "FAIRWATCH_ALERTMANAGER"):
        monkeypatch.setenv(name, "set-by-the-stack")
    commands = [c for c in shell_commands(readme()) if c[0] == "fairwatch"]
    verbs = {c[1] for c in commands}
    assert {"worker", "metrics", "report"} <= verbs, verbs
    problems = {shlex.join(c): p for c in commands if (p := cli_problems(c))}
    assert not problems, problems


def test_the_cli_check_catches_a_wrong_command(monkeypatch):
    monkeypatch.setenv("FAIRWATCH_CLICKHOUSE", "chdb:///x")
    assert "no verb 'frobnicate'" in cli_problems(["fairwatch", "frobnicate"])
    assert "no verb 'inspect'" in cli_problems(["fairwatch", "audit", "inspect"])
    assert "--since" in cli_problems(["fairwatch", "metrics", "--since", "1h"])
    assert cli_problems(["fairwatch", "metrics", "--window", "24h"]) is None
    assert cli_problems(["fairwatch", "report", "--format", "pdf"]) is not None  # --from and --to are required


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    used = {c[1] for c in shell_commands(readme()) if c[0] == "make" and len(c) > 1}
    assert {"demo", "test", "test-fast", "docs", "bench"} <= used, used
    assert used <= targets, f"make targets the README uses but the Makefile lacks: {sorted(used - targets)}"


def test_every_relative_link_in_the_readme_resolves():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme())
    assert links, "the README links into the docs"
    missing = [link for link in links if not (REPO / link).exists()]
    assert not missing, missing


def dotted_names(text: str) -> set[str]:
    """`fairwatch.x.y` names in code spans: modules, classes, functions the prose points at (topic
    names such as `fairwatch.alerts` are not code)."""
    from fairwatch.contracts.topics import DEFAULT_PREFIX, OUTPUT_TOPICS, PRODUCED_TOPICS

    topics = {DEFAULT_PREFIX + t for t in PRODUCED_TOPICS + OUTPUT_TOPICS}
    return {m for m in re.findall(r"`(fairwatch(?:\.[A-Za-z_]\w*)+)`", text) if m not in topics}


def resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_module_or_object_the_docs_name_exists():
    # the prose pages are written by hand: a rename must update them (the API pages follow by themselves)
    texts = {p: p.read_text() for p in [README, *(REPO / "docs").glob("*.md")]}
    names = {(p.relative_to(REPO), n) for p, t in texts.items() for n in dotted_names(t)}
    assert len(names) > 20
    stale = sorted(f"{page}: {name}" for page, name in names if not resolves(name))
    assert not stale, stale
    assert not resolves("fairwatch.core.no_such_module") and not resolves("fairwatch.core.join.NoSuchClass")
