"""The package tree shows the data flow: a stage imports only from the stages before it.

Walks every module's imports (top level and inside functions) with ``ast``; the oracle is the
stage order written in the architecture: contracts -> core -> store -> detect -> audit -> stream
-> sim -> cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fairwatch

STAGES = ["contracts", "core", "store", "detect", "audit", "stream", "sim", "cli"]
PACKAGE = Path(fairwatch.__file__).parent
# outside the chain: the site SDK sits with the stream stage (it asks Kafka for the partition
# count); the test helpers may use anything, and nothing in the chain may use them
RANK = {**{s: i for i, s in enumerate(STAGES)}, "producer": STAGES.index("stream"), "testing": len(STAGES)}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in found if n.split(".")[0] == "fairwatch"}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_no_import_runs_back_up_the_flow():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    backwards = []
    for path in modules:
        me = _stage(_module_name(path))
        if me is None:
            continue
        for target in _imported(path):
            other = _stage(target)
            if other is not None and RANK[other] > RANK[me]:
                backwards.append(f"{_module_name(path)} imports {target}")
    assert backwards == []


def test_every_stage_is_a_package_with_a_public_face():
    for stage in STAGES + ["testing"]:
        init = PACKAGE / stage / "__init__.py"
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{stage}/__init__.py has no docstring"
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "producer.py"], flat


def test_the_walker_sees_a_backward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from fairwatch.cli.commands import app\n")
    assert "fairwatch.cli.commands" in _imported(bad)
    assert RANK[_stage("fairwatch.cli.commands")] > RANK[_stage("fairwatch.core.join")]


def test_one_module_reads_group_counts():
    """Python reads the counts table in one place; the boards' Grafana SQL and the demo's printed
    clickhouse-client hint are text for other programs, and the test helpers read it on their own
    on purpose (an oracle that shares the reader would share its bugs)."""
    allowed = {"store/group_counts.py", "audit/boards.py", "sim/demo.py", "testing/live.py"}
    readers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if "FROM group_counts" in p.read_text() and str(p.relative_to(PACKAGE)) not in allowed)
    assert readers == []
    assert "FROM group_counts" in (PACKAGE / "store" / "group_counts.py").read_text()


def test_every_public_name_of_a_stage_resolves():
    import importlib

    for stage in STAGES:
        package = importlib.import_module(f"fairwatch.{stage}")
        names = getattr(package, "__all__", [])
        assert names, f"fairwatch.{stage} has no __all__"
        missing = [n for n in names if getattr(package, n, None) is None]
        assert missing == [], f"fairwatch.{stage}: {missing}"
        # a public name never hides a submodule of the same name
        assert not {n for n in names if (PACKAGE / stage / f"{n}.py").exists()}, stage
