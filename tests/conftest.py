"""Fixtures shared by the tests. A test that uses the local stack (``stack``, or the server side
of ``store`` / ``migrated_store``) carries the ``services`` marker, so ``-m "not services"``
starts nothing."""

import os
import uuid

import pytest
from fairwatch.store.clickhouse import EmbeddedStore, ServerStore, open_store
from fairwatch.store.migrations import migrate
from fairwatch.testing.stack import ensure_stack, server_url

SERVER = pytest.param("server", marks=pytest.mark.services)


def pytest_collection_modifyitems(items):
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.services)


# ---- scheduling under `make test` (pytest -n auto --dist loadgroup) ---------------------------------------


class _XdistGroups:
    """On xdist workers under --dist loadgroup: restore the ``@group`` suffix xdist gives the node id
    of a test in an ``xdist_group``. pytest-xdist 3.8 sets ``item._nodeid``, which pytest 9.2 no
    longer reads (a node's id is ``item._id``): the suffix was lost, every test was a unit of its
    own, the live tests ran on both workers at once and the demo was run once per worker."""

    @pytest.hookimpl(trylast=True)  # after xdist's own hook: a suffix that took is left alone
    def pytest_collection_modifyitems(self, items):
        for item in items:
            groups = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                      for m in item.iter_markers("xdist_group")}
            if not groups or "@" in item.nodeid.rsplit("]", 1)[-1]:
                continue
            nodeid = f"{item.nodeid}@{'_'.join(sorted(groups))}"
            if hasattr(item, "_id"):  # pytest >= 9.2
                from _pytest.nodeid import NodeId

                item._id = NodeId.parse(nodeid)
            else:
                item._nodeid = nodeid


def pytest_configure(config):
    if hasattr(config, "workerinput") and config.getvalue("loadgroup"):
        config.pluginmanager.register(_XdistGroups(), "fairwatch-xdist-groups")


@pytest.hookimpl(optionalhook=True)  # an xdist hook: -p no:xdist still runs
def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup, with the tests of one module as one unit of work (a group's tests still
    form one unit, across modules): a module's fixtures (the report findings' demo replay, the
    simulator's calibration runs, the board recounts ...) are then built once, not once per worker
    that happens to take one of its tests. The groups go first (their tests run worker processes
    one after the other: the longest units), then the modules, largest first as loadgroup sends
    them, so that the run ends on small units."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleOrGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return scope if scope != nodeid else nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node) -> None:
            group = next((scope for scope in self.workqueue if "/" not in scope), None)  # modules are paths
            if group is not None:
                self.workqueue.move_to_end(group, last=False)
            super()._assign_work_unit(node)

    return ModuleOrGroupScheduling(config, log)


@pytest.fixture(autouse=True)
def embedded_stores_are_closed():
    """Every chDB store a test opens is closed by its end (chDB serves one directory per process
    at a time, so one left open breaks the next test on that worker, whatever the order). Stores
    of module-scoped fixtures, open before the test, are theirs to close."""
    before = set(EmbeddedStore.opened)
    yield
    leaked = [store for store in list(EmbeddedStore.opened) if store not in before]
    for store in leaked:
        store.close()
    assert [store.path for store in leaked] == [], "chDB stores left open"


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """Addresses of Kafka, ClickHouse and Alertmanager (FAIRWATCH_* names -> values).

    Uses external services when FAIRWATCH_KAFKA, FAIRWATCH_CLICKHOUSE and FAIRWATCH_ALERTMANAGER
    are set, else starts or reuses the local stack (`scripts/stack up`), which stays running.
    """
    return ensure_stack()


@pytest.fixture(params=[SERVER, "embedded"])
def store(request, tmp_path):
    """An unmigrated store of each kind: a database on the ClickHouse server (dropped after) and
    an embedded chDB directory."""
    if request.param == "server":
        stack = request.getfixturevalue("stack")
        database = f"fairwatch_test_{os.getpid()}"
        opened = open_store(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], database))
        assert isinstance(opened, ServerStore)
        yield opened
        opened.execute(f"DROP DATABASE IF EXISTS {database}")
    else:
        opened = open_store(f"chdb://{tmp_path}/chdb")
        assert isinstance(opened, EmbeddedStore)
        yield opened
    opened.close()


@pytest.fixture(params=[SERVER, "embedded"])
def migrated_store(request, tmp_path):
    """A migrated store of each kind: a fresh database on the ClickHouse server (dropped after),
    and an embedded chDB directory."""
    if request.param == "embedded":
        opened = open_store(f"chdb://{tmp_path}/chdb")
    else:
        url = request.getfixturevalue("stack")["FAIRWATCH_CLICKHOUSE_MIGRATOR"]
        opened = open_store(server_url(url, f"fw_test_{uuid.uuid4().hex[:10]}"))
    migrate(opened)
    yield opened
    if request.param == "server":
        opened.execute(f"DROP DATABASE IF EXISTS {opened.database}")
    opened.close()


# ---- no secret in any output of the run ----------------------------------------------------------------

_captured: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    """Keep what every test printed or logged (passed ones too; with xdist the controller sees them)."""
    for section, text in report.sections:
        _captured.append((f"{report.nodeid} ({section})", text))
    if report.failed and report.longrepr is not None:
        _captured.append((f"{report.nodeid} (failure)", str(report.longrepr)))


def pytest_sessionfinish(session, exitstatus):
    """The security issue: no secret of the local stack in any output of the run. The controller
    (not an xdist worker) scans what the tests captured and the files the run left readable by
    others: the tests' temporary directories and the stack's logs."""
    if hasattr(session.config, "workerinput"):
        return
    from fairwatch.testing.secrets_scan import find_leaks, stack_secrets
    from fairwatch.testing.stack import configured_stack_dir

    # the local stack's secrets, whether this run started it or its exports point at it (external
    # services' secrets are not ours to know: then there is nothing here to look for)
    directory = configured_stack_dir()
    roots = [directory / "logs"]
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        roots.append(factory.getbasetemp())
    leaks = find_leaks(stack_secrets(directory), roots, _captured)
    if leaks:
        session.config.get_terminal_writer().line("error: secrets in the run's output: " + "; ".join(leaks[:20]),
                                                  red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
